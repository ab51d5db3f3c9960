"""``Predictor``: one object over torch / ONNX Runtime / TensorRT.

    p = Predictor.load("model_dir", backend="ort")
    p.add_support(SupportSet.load("ship.support", p.fingerprint))
    pred = p.predict(images)          # (B, H, W, 3) or (H, W, 3) uint8 RGB, any H, W (or Rasters)

Per call: one preprocess + encoder pass for the images, one matcher pass per class; merged
into a label map (per-pixel argmax of the class foreground probabilities; background where
none reaches the threshold). Images and features stay in the backend's own memory between the
stages (see :mod:`icpd.runtime.backends.protocol`); each class's support tensors went to the
backend once, in ``add_support``.

Every public method checks its inputs with :mod:`icpd.runtime.validation`, the checks ``icpd
cache-support`` and ``icpd infer`` make, so Python and the CLI refuse the same things in the same words.

``predict`` is four stages, each a method that takes an optional timer (anything with a
``stage(name)`` context manager, e.g. ``icpd.benchmarks.timer.StageTimer``): :meth:`preprocess`
(``"preprocessing"``), :meth:`encode` (``"encoder"``), :meth:`match_classes` (``"matcher"``, once
per class) and :meth:`merge` (``"postprocessing"``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from icpd.artifacts.model_dir import ModelDir
from icpd.artifacts.support_cache import SupportCacheError, SupportSet, check_inputs
from icpd.config import Backend, RankPriorForm
from icpd.runtime.backends.protocol import Features, Images, RuntimeBackend, SupportHandle
from icpd.runtime.backends.registry import names as backend_names
from icpd.runtime.backends.registry import resolve as resolve_backend
from icpd.runtime.support_encoding import encode_support
from icpd.runtime.validation import (
    DuplicateClassError,
    InputError,
    check_class_name,
    check_shots,
    check_threads,
    check_threshold,
    image_groups,
)

BACKENDS = backend_names()  # kept name: ("torch", "ort", "trt"), from the registry
STAGES = ("preprocessing", "encoder", "matcher", "postprocessing")  # the stage names a timer sees


class StageTimer(Protocol):
    """What ``predict``'s stages time themselves with (``icpd.benchmarks.timer.StageTimer`` is one)."""

    def stage(self, name: str) -> AbstractContextManager[Any]: ...


def _stage(timer: StageTimer | None, name: str) -> AbstractContextManager[Any]:
    return nullcontext() if timer is None else timer.stage(name)


@dataclass
class Prediction:
    """probs (B, N, S, S) foreground probability per class; labels (B, S, S) uint8: 0 background,
    i + 1 for class_names[i]; priors (B, N, g, g) query priors when requested; outputs: matcher
    outputs asked for by name, each stacked over classes on axis 1 (B, N, ...)."""

    probs: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    priors: np.ndarray | None = None
    outputs: dict[str, np.ndarray] = field(default_factory=dict)


def softmax_foreground(logits: np.ndarray) -> np.ndarray:
    """(B, 2, H, W) logits -> (B, H, W) foreground probability (a stable two-class softmax)."""
    return 1.0 / (1.0 + np.exp(np.clip(logits[:, 0] - logits[:, 1], -80.0, 80.0)))


def merge_labels(probs: np.ndarray, threshold: float) -> np.ndarray:
    """(B, N, H, W) probabilities -> (B, H, W) labels: argmax + 1, 0 where the max < threshold (in [0, 1])."""
    threshold = check_threshold(threshold)
    if probs.shape[1] == 0:
        return np.zeros((probs.shape[0], *probs.shape[2:]), np.uint8)
    best = probs.argmax(axis=1)
    return np.where(probs.max(axis=1) >= threshold, best + 1, 0).astype(np.uint8)


class Predictor:
    """A model dir run by one backend, plus the session's support sets (one per class)."""

    def __init__(self, model_dir: ModelDir, backend: RuntimeBackend, name: str | None = None) -> None:
        self.model_dir = model_dir
        self.backend = backend
        self.backend_name = name or getattr(backend, "name", "backend")
        self.preset = model_dir.preset
        self.supports: list[SupportSet] = []
        self._handles: list[SupportHandle] = []  # backend.load_support(supports[i]), made once

    @property
    def fingerprint(self) -> str:
        return self.model_dir.fingerprint

    @classmethod
    def load(cls, model_dir: str | os.PathLike[str], backend: Backend | str = Backend.ORT, device: str = "cpu",
             threads: int | None = None, engine_dir: str | os.PathLike[str] | None = None,
             verify: bool = False) -> Predictor:
        """Open ``model_dir`` (``verify``: also check every file's sha256) and start ``backend``
        (torch, ort or trt) on ``device``; ``threads``: CPU threads of that backend (None: its default)."""
        kind = resolve_backend(backend)  # a name or an alias (onnxruntime, tensorrt); the registry's message
        threads = check_threads(threads)
        if not isinstance(model_dir, (str, os.PathLike)):  # os.fspath's own TypeError names no argument
            raise InputError(f"model_dir: got {type(model_dir).__name__} ({model_dir!r}); pass the path of a "
                             "model directory written by `icpd export`")
        md = ModelDir.open(model_dir, verify=verify)
        files = {role: md.file(role) for role in md.meta["files"]}
        from icpd.artifacts.signature import MatcherSignature

        impl: RuntimeBackend
        if kind is Backend.ORT:
            from icpd.runtime.backends.ort import OrtBackend

            impl = OrtBackend(files, device, threads, plugin=md.rank_prior is RankPriorForm.PLUGIN,
                              signature=MatcherSignature.for_preset(md.preset))
        elif kind is Backend.TORCH:
            from icpd.runtime.backends.torch import TorchBackend

            impl = TorchBackend(files, device, threads)
        else:
            from icpd.runtime.backends.trt import TrtBackend

            impl = TrtBackend(md, engine_dir, "cuda" if device == "cpu" else device)  # engines run on the GPU
        return cls(md, impl, kind.value)

    def fork(self) -> Predictor:
        """Another session on the same loaded backend, with no support sets (nothing is reloaded)."""
        return type(self)(self.model_dir, self.backend, self.backend_name)

    def select(self, names: Sequence[str]) -> Predictor:
        """Another session on the same backend with only the classes ``names`` (ignoring case), in that
        order: labels i + 1 for ``names[i]``, as if added in that order. Nothing is reloaded or uploaded.

        Raises:
            InputError: a name given twice, or one this Predictor does not have (the message lists them).
        """
        index = {s.class_name.casefold(): i for i, s in enumerate(self.supports)}
        keys = [str(n).casefold() for n in names]
        unknown = [n for n, k in zip(names, keys) if k not in index]
        if unknown or len(set(keys)) != len(keys):
            what = (f"unknown class(es) {', '.join(map(repr, unknown))}" if unknown
                    else f"classes {list(names)} repeat one")
            raise InputError(f"{what}; the loaded classes are {', '.join(self.class_names) or 'none'}")
        view = self.fork()
        view.supports = [self.supports[index[k]] for k in keys]
        view._handles = [self._handles[index[k]] for k in keys]
        return view

    # -- session state -------------------------------------------------------------------------
    def add_support(self, support: SupportSet | str | os.PathLike[str], *, replace: bool = False) -> SupportSet:
        """Add one class (a SupportSet or the path of a cache file); its tensors go to the backend's
        device here, once. Classes are labelled in the order added (``labels`` i + 1 for the i-th).

        Refused (ValueError): another model's cache, one whose shots the backend cannot take, and a
        class whose name (ignoring case) this Predictor already has (``DuplicateClassError``), unless
        ``replace=True``: then the new set takes the old one's place, keeping its label, as a dict
        assignment would (a new name is simply added).
        """
        if not isinstance(support, (SupportSet, str, os.PathLike)):
            raise InputError(f"support: got {type(support).__name__}; pass a SupportSet (Predictor.encode_support, "
                             "SupportSet.load) or the path of a .support file written by `icpd cache-support`")
        if not isinstance(support, SupportSet):
            support = SupportSet.load(support, self.fingerprint)
        self._check(support)
        key = support.class_name.casefold()
        same = [i for i, s in enumerate(self.supports) if s.class_name.casefold() == key]
        if same and not replace:
            old = self.supports[same[0]]
            raise DuplicateClassError(
                f"class {support.class_name!r} is given twice (already added as {old.class_name!r}, {old.shots} "
                f"shot(s), label {same[0] + 1}); give each class once")
        handle = self.backend.load_support(support)
        if same:
            self.supports[same[0]], self._handles[same[0]] = support, handle
        else:
            self.supports.append(support)
            self._handles.append(handle)
        return support

    def _check(self, support: SupportSet) -> None:
        if support.fingerprint != self.fingerprint:
            raise SupportCacheError(
                f"support set {support.class_name!r} was made with model {support.fingerprint[:12]}..., not "
                f"{self.fingerprint[:12]}...; recreate it with `icpd cache-support --model {self.model_dir.path}`"
            )
        check_class_name(support.class_name)  # a SupportSet made by hand: the rule encode_support applies
        check_inputs(support, self.backend.signature)
        check_shots(support.shots, self.backend, f"support set {support.class_name!r}")

    def reset(self) -> None:
        self.supports.clear()
        self._handles.clear()

    @property
    def class_names(self) -> list[str]:
        return [s.class_name for s in self.supports]

    # -- support sets ------------------------------------------------------------------------------
    def encode_support(self, pixels: Sequence[Any], masks: Sequence[Any], class_name: str,
                       class_embeddings: Any) -> SupportSet:
        """K support images + their masks -> the SupportSet of ``class_name`` for this model.

        The inputs are checked as ``icpd cache-support`` checks them, with the same messages
        (:mod:`icpd.runtime.validation`); nothing is added to this Predictor (``add_support`` does).

        Args:
            pixels: K uint8 RGB images, each (H, W, 3), or ``Raster``s from ``icpd.io.read_image``;
                sizes may differ (each is resized to the model's S x S input; a side below S / 4 is
                refused, a smaller one than S is upscaled and noted in ``notes``). K within the
                model's shots (1 to 32; a TensorRT engine's profile).
            masks: K arrays (H, W) of their images' sizes, integer or bool, holding only 0/1 or
                only 0/255 (``icpd.io.read_mask``'s rule); at least one not empty.
            class_name: the class to segment, a non-empty name. With a ``ClassEmbeddings`` it picks
                the target row (case-insensitive; a name not in it is refused, listing the names it has).
            class_embeddings: ``icpd.model.text.ClassEmbeddings`` with its class names, rows in
                file order (what ``load_class_embeddings`` returns), or a bare (15, D) array that
                already has the target class first (taken as it is).

        Returns:
            A SupportSet (per level features (K, C, N), norms (K, N), soft masks (K, N); class
            embeddings (15, D), target first; ``notes``: what was done to the supports). ``add_support``
            it, or ``save`` it as a cache file that ``icpd cache-support`` would have written.

        Example::

            emb = load_class_embeddings("isaid.safetensors", preset=p.preset)
            ship = p.encode_support([img1, img2], [mask1, mask2], "ship", emb)
            p.add_support(ship)
        """
        return encode_support(self.backend, self.preset, pixels, masks, class_name, class_embeddings,
                              self.fingerprint, self.backend_name)

    # -- prediction stages ---------------------------------------------------------------------------
    def preprocess(self, images: Any, timer: StageTimer | None = None) -> Images:
        """uint8 RGB images ((H, W, 3), (B, H, W, 3), or a list of (H, W, 3) of any sizes; a ``Raster``
        wherever an image goes) -> (B, 3, S, S) float32 in the backend's form (``to_host`` for an array)."""
        groups = image_groups(images)
        with _stage(timer, "preprocessing"):
            return self.backend.preprocess(groups)

    def encode(self, images: Images | np.ndarray, timer: StageTimer | None = None) -> Features:
        """(B, 3, S, S) images (``preprocess``'s, or a host float32 array) -> features in the backend's form."""
        if isinstance(images, np.ndarray):
            s = self.preset.image_size
            if images.ndim != 4 or images.shape[1:] != (3, s, s) or images.dtype != np.float32 or not len(images):
                raise ValueError(f"encode: images of shape {images.shape}, {images.dtype}; expected (B, 3, {s}, {s}) "
                                 "float32 normalised images (what preprocess() returns, to_host() for an array)")
        with _stage(timer, "encoder"):
            return self.backend.encode(images)

    def to_host(self, x: Images | Features) -> np.ndarray | list[np.ndarray]:
        """Images -> (B, 3, S, S) array; features -> one array per level (a copy to the host)."""
        return self.backend.to_host(x)

    def match(self, features: Features | Sequence[np.ndarray], support: SupportSet,
              outputs: Sequence[str]) -> list[np.ndarray]:
        """One class: features (backend form, or host arrays) x ``support`` -> the named matcher
        outputs. A support set not added to this Predictor is uploaded for this call only."""
        if isinstance(features, (list, tuple)) and features and isinstance(features[0], np.ndarray):
            features = self.backend.from_host(features)
        self._check_outputs(outputs)
        for s, h in zip(self.supports, self._handles):
            if s is support:
                return self.backend.match(features, h, outputs)
        self._check(support)
        return self.backend.match(features, self.backend.load_support(support), outputs)

    def match_classes(self, features: Features, outputs: Sequence[str],
                      timer: StageTimer | None = None) -> list[list[np.ndarray]]:
        """Every added class, one matcher pass each: per class, the named outputs on the host."""
        self._check_outputs(outputs)
        per_class = []
        for handle in self._handles:
            with _stage(timer, "matcher"):
                per_class.append(self.backend.match(features, handle, outputs))
        return per_class

    def merge(self, per_class: list[list[np.ndarray]], outputs: Sequence[str], threshold: float = 0.5,
              timer: StageTimer | None = None, keep: Sequence[str] = ()) -> Prediction:
        """``match_classes``' outputs (named ``outputs``, ``logits`` first) -> a Prediction; the
        outputs named in ``keep`` are stacked over classes into ``Prediction.outputs``."""
        if not outputs or outputs[0] != "logits":
            raise ValueError(f"merge: outputs {list(outputs)} must start with 'logits'")
        with _stage(timer, "postprocessing"):
            probs = np.stack([softmax_foreground(o[0]) for o in per_class], axis=1).astype(np.float32)
            stacked = {n: np.stack([o[i] for o in per_class], axis=1) for i, n in enumerate(outputs) if n in keep}
            return Prediction(probs, merge_labels(probs, threshold), self.class_names, stacked.get("query_prior"),
                              stacked)

    def _check_outputs(self, outputs: Sequence[str]) -> None:
        if isinstance(outputs, str):
            raise InputError(f"outputs {outputs!r}: give a sequence of names, e.g. ({outputs!r},)")
        unknown = [o for o in outputs if o not in self.backend.matcher_outputs]
        if unknown:
            raise ValueError(f"outputs {unknown}: the matcher has {', '.join(self.backend.matcher_outputs)}")

    def predict(self, images: Any, threshold: float = 0.5, priors: bool = False, *,
                outputs: Sequence[str] = (), timer: StageTimer | None = None) -> Prediction:
        """Label every pixel of ``images`` with the added classes.

        images: (B, H, W, 3) or (H, W, 3) uint8 RGB, or a list of (H, W, 3) of any sizes (a ``Raster``
        from ``icpd.io.read_image`` wherever an image goes).
        threshold: foreground probability in [0, 1] a class needs to win a pixel. priors: also return the
        query priors (B, N, g, g) as ``Prediction.priors``. outputs: matcher outputs to return by
        name in ``Prediction.outputs`` (B, N, ...): ``query_prior`` (B, N, g, g), ``pyramid_l4``,
        ``pyramid_l3``, ``pyramid_l2`` (the prior pyramid), ``logits`` (B, N, 2, S, S).
        timer: times the stages (module docstring).
        """
        threshold = check_threshold(threshold)  # every argument is checked before any work
        if not self.supports:
            raise ValueError("no support set: call add_support() before predict()")
        self._check_outputs(outputs)
        priors_out = ["query_prior"] if priors else []
        wanted = list(dict.fromkeys(["logits", *priors_out, *outputs]))
        features = self.encode(self.preprocess(images, timer), timer)
        pred = self.merge(self.match_classes(features, wanted, timer), wanted, threshold, timer,
                          keep=[*priors_out, *outputs])
        if not priors:
            pred.priors = None
        if "query_prior" not in outputs:
            pred.outputs.pop("query_prior", None)
        return pred

"""``Predictor``: one object over torch / ONNX Runtime / TensorRT.

    p = Predictor.load("model_dir", backend="ort")
    p.add_support(SupportSet.load("ship.support", p.fingerprint))
    pred = p.predict(images)          # (B, H, W, 3) uint8 RGB, any H, W

Per call: one preprocess + encoder pass for the images, one matcher pass per class; merged
into a label map (per-pixel argmax of the class foreground probabilities; background where
none reaches the threshold).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from icpd.export.model_dir import ModelDir
from icpd.export.wrappers import level_names
from icpd.runtime.support_cache import SupportCacheError, SupportSet

BACKENDS = ("torch", "ort", "trt")


@dataclass
class Prediction:
    """probs (B, N, S, S) foreground probability per class; labels (B, S, S) uint8: 0 background,
    i + 1 for class_names[i]; priors (B, N, g, g) query priors when requested."""

    probs: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    priors: np.ndarray | None = None


def softmax_foreground(logits: np.ndarray) -> np.ndarray:
    """(B, 2, H, W) logits -> (B, H, W) foreground probability (a stable two-class softmax)."""
    return 1.0 / (1.0 + np.exp(np.clip(logits[:, 0] - logits[:, 1], -80.0, 80.0)))


def merge_labels(probs: np.ndarray, threshold: float) -> np.ndarray:
    """(B, N, H, W) probabilities -> (B, H, W) labels: argmax + 1, 0 where the max < threshold."""
    if probs.shape[1] == 0:
        return np.zeros((probs.shape[0], *probs.shape[2:]), np.uint8)
    best = probs.argmax(axis=1)
    return np.where(probs.max(axis=1) >= threshold, best + 1, 0).astype(np.uint8)


class Predictor:
    def __init__(self, model_dir: ModelDir, backend: object, name: str) -> None:
        self.model_dir = model_dir
        self.backend = backend
        self.backend_name = name
        self.preset = model_dir.preset
        self.supports: list[SupportSet] = []

    @property
    def fingerprint(self) -> str:
        return self.model_dir.fingerprint

    @classmethod
    def load(cls, model_dir: str | os.PathLike[str], backend: str = "ort", device: str = "cpu",
             threads: int | None = None, engine_dir: str | os.PathLike[str] | None = None) -> Predictor:
        md = ModelDir.open(model_dir)
        files = {role: md.file(role) for role in md.meta["files"]}
        if backend == "ort":
            from icpd.runtime.backends.ort import OrtBackend

            impl: object = OrtBackend(files, device, threads, plugin=md.meta.get("rank_prior") == "plugin")
        elif backend == "torch":
            from icpd.runtime.backends.torch import TorchBackend

            impl = TorchBackend(md.path, files, device, threads)
        elif backend == "trt":
            from icpd.runtime.backends.trt import TrtBackend

            impl = TrtBackend(md, engine_dir, "cuda" if device == "cpu" else device)  # engines run on the GPU
        else:
            raise ValueError(f"--backend {backend!r}: choose one of {', '.join(BACKENDS)}")
        return cls(md, impl, backend)

    # -- session state -------------------------------------------------------------------------
    def add_support(self, support: SupportSet | str | os.PathLike[str]) -> SupportSet:
        """Add one class (a SupportSet or the path of a cache file); refuses other models' caches."""
        if not isinstance(support, SupportSet):
            support = SupportSet.load(support, self.fingerprint)
        elif support.fingerprint != self.fingerprint:
            raise SupportCacheError(
                f"support set {support.class_name!r} was made with model {support.fingerprint[:12]}..., not "
                f"{self.fingerprint[:12]}...; recreate it with `icpd cache-support --model {self.model_dir.path}`"
            )
        missing = [n for n in self._support_inputs() if n not in support.tensors]
        if missing:
            raise SupportCacheError(f"support set {support.class_name!r} lacks {missing[:4]}; recreate it")
        self.supports.append(support)
        return support

    def reset(self) -> None:
        self.supports.clear()

    @property
    def class_names(self) -> list[str]:
        return [s.class_name for s in self.supports]

    def _support_inputs(self) -> list[str]:
        return [n for n in self.backend.matcher_inputs if not n.startswith("query_")]

    # -- support sets ------------------------------------------------------------------------------
    def encode_support(self, pixels: list[np.ndarray], masks: list[np.ndarray], class_name: str,
                       class_embeddings: np.ndarray) -> SupportSet:
        """Support images ((H, W, 3) uint8 each) + masks ((H, W) {0,1}) + (15, D) class embeddings
        (target first) -> a SupportSet for this model."""
        import torch

        from icpd.io.labels import resize_label
        from icpd.model.icpd_net import Features, prepare_support_tensors

        p = self.preset
        if len(pixels) != len(masks) or not pixels:
            raise ValueError(f"support set {class_name!r}: {len(pixels)} images and {len(masks)} masks; give one mask per image")
        if all(int(m.sum()) == 0 for m in masks):
            raise ValueError(f"support set {class_name!r}: every mask is empty; mark the object in at least one mask")
        if class_embeddings.shape != (p.num_classes, p.embed_dim):
            raise ValueError(f"class embeddings: shape {class_embeddings.shape}; expected ({p.num_classes}, {p.embed_dim})")
        images = np.concatenate([self.backend.preprocess(px[None]) for px in pixels])
        feats = [torch.from_numpy(np.ascontiguousarray(f)) for f in self.backend.encode(images)]
        m = torch.from_numpy(np.stack([resize_label(mk.astype(np.uint8), p.image_size) for mk in masks]).astype(np.float32))
        prepared = prepare_support_tensors(Features.from_list(feats), m.unsqueeze(0))
        levels = level_names(p)
        tensors: dict[str, np.ndarray] = {}
        for name, f, n, mk in zip(levels, prepared.features, prepared.norms, prepared.masks):
            tensors[f"support_feat_{name}"] = f[0].numpy()
            tensors[f"support_norm_{name}"] = n[0].numpy()
            tensors[f"support_mask_{name}"] = mk[0].numpy()
        tensors["class_embeddings"] = np.asarray(class_embeddings, np.float32)
        if "support_masks" in self.backend.matcher_inputs:
            tensors["support_masks"] = m.numpy()
        return SupportSet(class_name, self.fingerprint, len(pixels), tensors, {"backend": self.backend_name})

    # -- prediction ----------------------------------------------------------------------------------
    def preprocess(self, images: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """uint8 RGB images (B, H, W, 3) or a list of (H, W, 3) of any sizes -> (B, 3, S, S) float32."""
        if isinstance(images, np.ndarray) and images.ndim == 4:
            batch = [images]
        else:
            batch = [np.asarray(im)[None] for im in images]
        for b in batch:
            if b.dtype != np.uint8 or b.ndim != 4 or b.shape[-1] != 3:
                raise ValueError(f"images: got {b.dtype} {b.shape[1:]}; expected uint8 RGB (H, W, 3) (icpd.io.read_image)")
        return np.concatenate([self.backend.preprocess(np.ascontiguousarray(b)) for b in batch])

    def encode(self, images: np.ndarray) -> list[np.ndarray]:
        return self.backend.encode(images)

    def match(self, features: list[np.ndarray], support: SupportSet, outputs: list[str]) -> list[np.ndarray]:
        feeds = {f"query_{n}": f for n, f in zip(level_names(self.preset), features)}
        feeds.update({n: support.tensors[n] for n in self._support_inputs()})
        return self.backend.match(feeds, outputs)

    def predict(self, images: np.ndarray | list[np.ndarray], threshold: float = 0.5, priors: bool = False) -> Prediction:
        if not self.supports:
            raise ValueError("no support set: call add_support() (CLI: --support CLASS.support) before predict()")
        features = self.encode(self.preprocess(images))
        outputs = ["logits", "query_prior"] if priors else ["logits"]
        probs, prior_maps = [], []
        for support in self.supports:
            out = self.match(features, support, outputs)
            probs.append(softmax_foreground(out[0]))
            if priors:
                prior_maps.append(out[1])
        p = np.stack(probs, axis=1).astype(np.float32)
        return Prediction(p, merge_labels(p, threshold), self.class_names, np.stack(prior_maps, 1) if priors else None)

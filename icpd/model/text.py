"""Class text embeddings: compute them with the CLIP text tower, read and write them.

File format (the authors' released files use it too): safetensors with one tensor
``embeddings`` (N, D) and metadata ``classes`` ("|"-separated names in row order), ``prompt``,
``normalized`` ("True"/"False") and ``model``.

Reading and writing need no torch (``safetensors.numpy``): a runtime-only install reads the class
embeddings ``icpd cache-support`` puts into a support cache. Only :func:`embed_text` (the CLIP text
tower) needs torch and open_clip.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from icpd.config import Preset, get_preset
from icpd.errors import ParamError, arg
from icpd.io.atomic import atomic_write


@dataclass(frozen=True)
class ClassEmbeddings:
    """embeddings (N, D), one row per class name in ``classes``: a float32 numpy array when read
    from a file (:func:`load_class_embeddings`); a torch tensor given here stays one, so
    :meth:`for_target` answers in the type it holds."""

    embeddings: Any
    classes: tuple[str, ...]
    normalized: bool = False
    model: str = ""

    def index(self, target: str | int) -> int:
        """Row of a class given by name (case-insensitive) or 0-based index."""
        if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
            i = int(target)
            if not 0 <= i < len(self.classes):
                raise ValueError(f"target class index {i} out of range 0..{len(self.classes) - 1}")
            return i
        names = [c.lower() for c in self.classes]
        if target.lower() not in names:
            raise ValueError(f"target class {target!r} is not in the class embeddings; "
                             f"known: {', '.join(self.classes)}")
        return names.index(target.lower())

    def for_target(self, target: str | int) -> Any:
        """(N, D) with the target class first and the others in file order (what the network expects)."""
        i = self.index(target)
        order = [i] + [j for j in range(len(self.classes)) if j != i]
        return self.embeddings[order]


def load_class_embeddings(path: str | os.PathLike[str],
                          preset: Preset | str | None = None) -> ClassEmbeddings:
    """Read a class-embedding safetensors file (numpy; no torch needed); with ``preset``, check
    count and dimension. Returns embeddings (N, D) float32."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "file not found"
        raise ValueError(f"class embeddings {path}: {what}; make one with `icpd embed-text`")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = dict(f.metadata() or {})
            if "embeddings" not in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                raise ValueError(f"class embeddings {path}: no 'embeddings' tensor (found {list(f.keys())})")
            emb = np.ascontiguousarray(f.get_tensor("embeddings"), dtype=np.float32)
    except SafetensorError as e:
        raise ValueError(f"class embeddings {path}: not a safetensors file ({e})") from e
    except TypeError as e:  # numpy has no bfloat16: such a file needs re-saving as float32
        raise ValueError(f"class embeddings {path}: {e}; save the embeddings as float32") from e
    classes = (tuple(meta["classes"].split("|")) if meta.get("classes")
               else tuple(str(i) for i in range(emb.shape[0])))
    if emb.ndim != 2 or emb.shape[0] != len(classes):
        raise ValueError(f"class embeddings {path}: shape {tuple(emb.shape)} does not match {len(classes)} "
                         "class names")
    if preset is not None:
        p = get_preset(preset)
        if tuple(emb.shape) != (p.num_classes, p.embed_dim):
            raise ValueError(
                f"class embeddings {path}: shape {tuple(emb.shape)}; preset {p.name!r} needs "
                f"({p.num_classes}, {p.embed_dim}): {p.num_classes} classes from the CLIP model of that "
                "preset"
            )
    if not bool(np.isfinite(emb).all()):
        raise ValueError(f"class embeddings {path}: contains NaN/inf")
    return ClassEmbeddings(emb, classes, meta.get("normalized", "False") == "True", meta.get("model", ""))


def save_class_embeddings(path: str | os.PathLike[str], emb: ClassEmbeddings,
                          prompt: str = "bare class name") -> Path:
    from safetensors.numpy import save_file

    from icpd.io.safetensors_order import sort_metadata

    path = Path(path)
    bad = [c for c in emb.classes if "|" in c]
    if bad:
        raise ValueError(f"class names may not contain '|': {bad}")
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"classes": "|".join(emb.classes), "prompt": prompt, "normalized": str(emb.normalized),
            "model": emb.model}
    with atomic_write(path) as tmp:
        save_file({"embeddings": _as_float32(emb.embeddings)}, str(tmp), metadata=meta)
        sort_metadata(tmp)  # same embeddings, same bytes (save_file's metadata order varies per process)
    return path


def embed_text(
    clip_weights: str | os.PathLike[str],
    classes: list[str],
    preset: Preset | str = "paper",
    normalize: bool = False,
) -> ClassEmbeddings:
    """Class names (bare, as the authors did) -> CLIP text embeddings (N, D).

    ``clip_weights``: a full open_clip CLIP state dict (.pt via weights_only, or .safetensors),
    e.g. RemoteCLIP-ViT-L-14.pt. ``normalize`` L2-normalises each row (the authors' iSAID file
    is normalised, their DLRSD file is not).
    """
    import open_clip
    import torch

    from icpd.model.checkpoint import CheckpointError, _read_state_dict

    p = get_preset(preset)
    cfg = p.clip_config()
    classes = [c.strip() for c in classes if c.strip()]
    if not classes:
        raise ParamError(f"{arg('classes')}: no class names given; name at least one class, e.g. ship or "
                         "storage tank")
    model = open_clip.CLIP(**cfg)
    state, _ = _read_state_dict(Path(clip_weights))
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys:
        raise CheckpointError(
            f"CLIP weights {clip_weights}: missing {result.missing_keys[:6]} for the CLIP model of preset "
            f"{p.name!r}"
        )
    model.eval()
    name = p.clip_model if isinstance(p.clip_model, str) else None
    tokenizer = open_clip.get_tokenizer(name) if name else open_clip.tokenize
    with torch.no_grad():
        emb = model.encode_text(tokenizer(classes)).float()
    if normalize:
        emb = emb / emb.norm(dim=-1, keepdim=True)
    origin = f"{Path(clip_weights).name} ({name or 'custom config'})"
    return ClassEmbeddings(emb, tuple(classes), normalize, origin)


def embed_text_to_file(
    clip_weights: str | os.PathLike[str],
    classes: list[str],
    out: str | os.PathLike[str],
    preset: Preset | str = "paper",
    normalize: bool = False,
) -> ClassEmbeddings:
    """:func:`embed_text`, written to ``out`` (:func:`save_class_embeddings`): what ``icpd embed-text`` does.

    ``out`` is claimed before the CLIP weights are read (:func:`icpd.io.outputs.claim_output`): a
    file that cannot be written fails at once, and a second run writing the same file is refused at
    once (its message names the first run's pid) instead of both writing it, the last one winning.

    Raises:
        OutputPathError: (an OSError) ``out`` cannot be written; LockHeldError: (a ValueError) another
            run is writing ``out``; CheckpointError / ValueError: see :func:`embed_text`.
    """
    from icpd.io.outputs import claim_output

    with claim_output(out, "embed-text"):
        emb = embed_text(clip_weights, classes, preset=preset, normalize=normalize)
        save_class_embeddings(out, emb)
    return emb


def _as_float32(x: Any) -> np.ndarray:
    """A numpy array or a (CPU or device) torch tensor -> a contiguous float32 numpy array."""
    if hasattr(x, "detach"):  # a torch tensor: through the CPU, without importing torch here
        x = x.detach().float().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)

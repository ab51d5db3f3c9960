"""Input validation with messages for people: the argument, what was found, what is expected."""

from __future__ import annotations

import torch

from icpd.config import Preset


def _fail(name: str, found: str, expected: str) -> None:
    raise ValueError(f"{name}: got {found}; expected {expected}")


def check_tensor(name: str, x: object, ndim: int, shape_hint: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        _fail(name, f"a {type(x).__name__}", f"a torch.Tensor of shape {shape_hint}")
    if x.ndim != ndim:
        _fail(name, f"shape {tuple(x.shape)} ({x.ndim} dims)", f"{ndim} dims {shape_hint}")
    return x


def check_finite_float(name: str, x: torch.Tensor) -> None:
    if not x.is_floating_point():
        _fail(name, f"dtype {x.dtype}", "a floating-point tensor (normalise uint8 images first: icpd.data.transforms)")
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        _fail(name, f"{bad} NaN/inf values", "finite values")


def check_images(name: str, x: object, preset: Preset, batch_dims: int = 1) -> torch.Tensor:
    """Images of shape (*batch, 3, S, S) with S = preset.image_size."""
    hint = "(" + ", ".join(["B", "K"][:batch_dims]) + ", 3, H, W)"
    x = check_tensor(name, x, batch_dims + 3, hint)
    s = preset.image_size
    if x.shape[-3] != 3:
        _fail(name, f"{x.shape[-3]} channels in shape {tuple(x.shape)}", f"3 (RGB) channels {hint}")
    if tuple(x.shape[-2:]) != (s, s):
        _fail(
            name,
            f"image size {tuple(x.shape[-2:])}",
            f"{s}x{s} for preset {preset.name!r} (resize, or tile large scenes: `icpd infer` does)",
        )
    check_finite_float(name, x)
    return x


def check_masks(name: str, m: object, batch: int, shots: int | None, size: tuple[int, int]) -> torch.Tensor:
    m = check_tensor(name, m, 4, "(B, K, H, W)")
    if m.shape[0] != batch or (shots is not None and m.shape[1] != shots) or tuple(m.shape[-2:]) != size:
        k = "K" if shots is None else shots
        _fail(name, f"shape {tuple(m.shape)}", f"({batch}, {k}, {size[0]}, {size[1]}) matching the images")
    if not bool(((m == 0) | (m == 1)).all()):
        vals = torch.unique(m)[:8].tolist()
        _fail(name, f"values {vals}", "binary masks with values in {0, 1}")
    return m


def check_class_embeddings(name: str, e: object, batch: int, preset: Preset) -> torch.Tensor:
    e = check_tensor(name, e, 3, f"(B, {preset.num_classes}, {preset.embed_dim})")
    want = (batch, preset.num_classes, preset.embed_dim)
    if tuple(e.shape) != want:
        _fail(
            name,
            f"shape {tuple(e.shape)}",
            f"{want}: {preset.num_classes} class embeddings (target class first) of the CLIP "
            f"embedding dim {preset.embed_dim} for preset {preset.name!r}",
        )
    check_finite_float(name, e)
    return e

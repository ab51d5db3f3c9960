"""What ``Predictor`` and ``icpd cache-support`` accept: one set of checks, one set of messages.

Every public input of :class:`~icpd.runtime.predictor.Predictor` (images, support images and
masks, class names, shots, thresholds, thread counts) goes through these functions, and the
commands call the same ones (prefixing their option's name), so the CLI and Python refuse the same
things in the same words. The messages name the value and the fix, never a command-line flag.

Masks follow :func:`icpd.io.masks.check_mask` (the rule ``read_mask`` applies to files: integer or
bool, only 0/1 or only 0/255, the size of its image). Support images must be at least
:func:`min_support_side` pixels a side; smaller ones than the model input are upscaled, and the
support set's ``notes`` say so.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from icpd.errors import ParamError, arg
from icpd.io.masks import check_mask
from icpd.io.raster import Raster, describe_array

if TYPE_CHECKING:
    from icpd.runtime.backends.protocol import RuntimeBackend

# the shots axis the export declares: icpd.export.onnx.MAX_SHOTS, not imported (it needs torch); tested equal
MAX_SHOTS = 32
MIN_SUPPORT_DIVISOR = 4  # a support side below S / 4 is upsampled more than 4x (as tiles: tiling.MIN_TILE_DIVISOR)
IMAGE_FORM = "a uint8 RGB array (H, W, 3) or an icpd.io.Raster (icpd.io.read_image reads files into that form)"


class InputError(ParamError, TypeError):
    """An input the Predictor refuses: a ``ValueError`` (what the commands report as a user error) and,
    for a value of the wrong type, a ``TypeError`` too, so either ``except`` catches it. A
    :class:`~icpd.errors.ParamError`: ``param`` names the parameter where one is at fault."""


class DuplicateClassError(InputError):
    """A class added to a ``Predictor`` that already has a class of that name."""


def check_threshold(threshold: Any) -> float:
    """A foreground-probability threshold from 0 to 1 -> float; anything else (2, -0.1, NaN, "0.5") is
    refused in the words ``--threshold`` is refused in on the command line (the CLI puts ``--`` in front)."""
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise InputError(f"{arg('threshold')}: not a number (got {threshold!r}); pass a number from 0 to 1")
    if not 0.0 <= float(threshold) <= 1.0:
        raise InputError(f"{arg('threshold')}: must be from 0 to 1 (got {threshold}); pass a value from 0 "
                         "to 1")
    return float(threshold)


def check_threads(threads: Any) -> int | None:
    """CPU threads of a backend: None (its own choice) or an int >= 1, refused in ``--threads``' words."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral):
        raise InputError(f"{arg('threads')}: not a whole number (got {threads!r}); pass an integer >= 1 "
                         "(None: the backend's own choice)")
    if threads < 1:
        raise InputError(f"{arg('threads')}: must be >= 1 (got {threads}); pass a value >= 1")
    cpus, limit = max_threads()
    if threads > limit:  # ONNX Runtime starts every thread up front: 10,000 of them stalled for minutes
        raise InputError(f"{arg('threads')}: must be from 1 to {limit} (got {threads}; this machine has "
                         f"{cpus} CPUs, and more than {THREADS_PER_CPU} threads a CPU only add overhead); "
                         f"pass a value from 1 to {limit}")
    return int(threads)


THREADS_PER_CPU = 4


def max_threads() -> tuple[int, int]:
    """(CPUs here, the most threads a backend may be given: ``THREADS_PER_CPU`` per CPU, at least 16)."""
    cpus = os.cpu_count() or 1
    return cpus, max(16, THREADS_PER_CPU * cpus)


def check_class_name(name: Any) -> str:
    """A class name: a non-empty string without control characters (it labels tables, files and JSON lines)."""
    if not isinstance(name, str):
        raise InputError(f"class name {name!r}: must be a string (it labels the outputs), not {type(name).__name__}")
    if not name.strip():
        raise InputError(f"class name {name!r}: empty; name the class (it labels the outputs), e.g. 'ship'")
    if any(not c.isprintable() for c in name):
        raise InputError(f"class name {name!r}: holds a control character (a newline, a tab, ...); use a plain name")
    return name


def check_counts(n_images: int, n_masks: int, noun: str = "mask") -> None:
    """One mask per support image, at least one image."""
    if n_images == 0 and n_masks == 0:
        raise InputError(f"no support image given; give at least one image and its {noun}")
    if n_images != n_masks:
        raise InputError(f"{n_images} image(s) but {n_masks} {noun}(s); give one {noun} per image, in the same order")


def rgb_pixels(image: Any, source: str) -> np.ndarray:
    """An image as the model takes it: (H, W, 3) uint8 RGB. A ``Raster`` (``read_image``'s) gives its pixels."""
    if isinstance(image, Raster):
        image = image.pixels
    if isinstance(image, (str, os.PathLike)):
        raise InputError(f"{source}: got the path {os.fspath(image)!r}; expected {IMAGE_FORM}, "
                         "e.g. read_image(path)")
    if not isinstance(image, np.ndarray):
        raise InputError(f"{source}: got {type(image).__name__}; expected {IMAGE_FORM}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        got = describe_array(image) if image.ndim in (2, 3) else f"shape {image.shape}, {image.dtype}"
        raise InputError(f"{source}: {got}; expected {IMAGE_FORM}")
    return image


def shot_range(backend: RuntimeBackend) -> tuple[int, int, str]:
    """(min, max) shots the backend's matcher takes and where that limit comes from: a TensorRT
    engine's optimization profile (its ``sidecar``), else the shots axis the export declares."""
    sidecar = getattr(backend, "sidecar", None)
    if sidecar is not None:
        lo, _, hi = sidecar.shots
        return int(lo), int(hi), "the TensorRT engines' shots profile (`icpd build` sets it)"
    return 1, MAX_SHOTS, "the shots the exported model declares"


def check_shots(shots: int, backend: RuntimeBackend, what: str) -> None:
    """Refuse a support set of ``shots`` images that the backend's matcher cannot take."""
    lo, hi, why = shot_range(backend)
    if not lo <= shots <= hi:
        raise InputError(f"{what}: {shots} shot(s); this model takes {lo} to {hi} ({why}); "
                         f"give between {lo} and {hi} support images")


def min_support_side(image_size: int) -> int:
    """The smallest support side a model of input ``image_size`` accepts (S / 4: upsampled more is blur)."""
    return max(1, image_size // MIN_SUPPORT_DIVISOR)


def check_supports(images: Sequence[Any], masks: Sequence[Any], class_name: str,
                   image_size: int) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """K support images + masks -> ((H, W, 3) uint8 pixels, (H, W) uint8 {0, 1} masks, notes).

    Refuses: a count mismatch, an image not in the model's form (:func:`rgb_pixels`), a mask
    off the binary rule or of another size than its image (:func:`icpd.io.masks.check_mask`),
    a support smaller than :func:`min_support_side` on a side (a 1 px support carries nothing),
    and masks that are all empty. ``notes``: one line per support upscaled to the model input.
    """
    what = f"support set {class_name!r}"
    if isinstance(images, (np.ndarray, Raster)) or isinstance(masks, np.ndarray):
        raise InputError(f"{what}: give the images and the masks as lists (one entry per shot), e.g. [img], [mask]")
    try:
        check_counts(len(images), len(masks))
    except InputError as e:
        raise InputError(f"{what}: {e}") from None
    k, low = len(images), min_support_side(image_size)
    pixels, binary, notes = [], [], []
    for i, (image, mask) in enumerate(zip(images, masks)):
        path = image.path if isinstance(image, Raster) else None
        name = f"image {path}" if path is not None else f"image {i + 1} of {k}"
        px = rgb_pixels(image, f"{what}: {name}")
        binary.append(check_mask(mask, f"{what}: mask {i + 1} of {k}", px.shape[:2], "" if path is None else str(path)))
        h, w = px.shape[:2]
        if min(h, w) < low:
            raise InputError(
                f"{what}: {name} is {h}x{w} px (HxW), too small to be a support: each support is resized to the "
                f"model input ({image_size}x{image_size} px), so a side below {low} px is upsampled more than "
                f"{MIN_SUPPORT_DIVISOR}x (blur, not detail); give a window of at least {low}x{low} px around the object"
            )
        if min(h, w) < image_size:
            notes.append(f"{name}: {h}x{w} px (HxW) upscaled to the model input {image_size}x{image_size} "
                         f"(x{image_size / min(h, w):.2g}); supports of at least {image_size} px a side keep "
                         "their detail")
        pixels.append(px)
    if not any(m.any() for m in binary):
        raise InputError(f"{what}: every mask is empty; mark the object in at least one mask")
    return pixels, binary, notes


def image_groups(images: Any) -> list[np.ndarray]:
    """(H, W, 3), (B, H, W, 3) or a list of (H, W, 3) uint8 RGB images (a ``Raster`` from
    ``icpd.io.read_image`` wherever an image goes) -> batches of equal size, in order
    (consecutive images of one size share a batch). Anything else is refused naming the image."""
    if isinstance(images, Raster) or (isinstance(images, np.ndarray) and images.ndim == 3):
        items = [rgb_pixels(images, "image")[None]]  # (H, W, 3): a batch of one
    elif isinstance(images, np.ndarray) and images.ndim == 4:
        if not len(images):
            raise InputError("images: an empty batch (0, H, W, 3); give at least one image")
        rgb_pixels(images[0], "images (a batch)")  # the batch's dtype and image shape are its first image's
        items = [images]
    elif isinstance(images, np.ndarray) or not isinstance(images, Sequence) or isinstance(images, str):
        got = f"shape {images.shape}, {images.dtype}" if isinstance(images, np.ndarray) else type(images).__name__
        raise InputError(f"images: got {got}; expected {IMAGE_FORM}, a (B, H, W, 3) batch, or a list of them")
    elif not images:
        raise InputError("images: an empty list; give at least one image")
    else:
        items = [rgb_pixels(im, f"image {i + 1} of {len(images)}")[None] for i, im in enumerate(images)]
    groups: list[np.ndarray] = []
    run: list[np.ndarray] = []
    for b in items:
        if run and b.shape[1:] != run[-1].shape[1:]:
            groups.append(run[0] if len(run) == 1 else np.concatenate(run))
            run = []
        run.append(b)
    if run:
        groups.append(run[0] if len(run) == 1 else np.concatenate(run))
    return [np.ascontiguousarray(g) for g in groups]

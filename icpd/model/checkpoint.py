"""Build ICPD-Net and load weights: the authors' .pt state dicts, our safetensors format, and
encoder parts (CLIP, torchvision ImageNet) from local files. Nothing here downloads.

Every load is ``weights_only=True`` or safetensors; loads are strict and a mismatch names the
missing / unexpected / misshapen keys and the likely cause.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import icpd
from icpd.artifacts.formats import ArtifactFormat, check_format
from icpd.config import Preset, get_preset
from icpd.errors import ParamMessage, arg
from icpd.io.atomic import atomic_write, write_text_atomic
from icpd.model.icpd_net import ICPDNet

CHECKPOINT_FORMAT = "icpd-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1
_FORMAT = ArtifactFormat(CHECKPOINT_FORMAT, CHECKPOINT_FORMAT_VERSION, "checkpoint",
                         "convert the original checkpoint again (`icpd convert-checkpoint`)", required=("preset",))
# safetensors: an 8-byte little-endian header length, then a JSON header starting with "{".
_SAFETENSORS_MAX_HEADER = 100_000_000  # the limit the safetensors library itself enforces
# Keys the released checkpoints carry that ICPD-Net never uses (classifier heads).
UNUSED_PREFIXES = ("backbone.fc.", "backbone.classifier.")


class CheckpointError(ParamMessage, ValueError):
    """A checkpoint file that cannot be loaded into the requested preset."""


def build_model(preset: Preset | str = "paper", device: torch.device | str | None = None) -> ICPDNet:
    """A randomly initialised network (no files, no network access), in eval mode."""
    with torch.device(device or "cpu"):
        return ICPDNet(preset)


def seeded_model(preset: Preset | str, seed: int = 0) -> ICPDNet:
    """A network with deterministic random weights (for tests, demos and latency-only benchmarks).

    The layers' initialisers draw from the global CPU generator, so it is seeded inside a forked
    RNG state: the caller's random stream is the same before and after.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(preset)


@dataclass(frozen=True)
class CheckpointInfo:
    """Where a loaded network's weights came from (returned by :func:`load_checkpoint_with_info`)."""

    path: str
    shot: int | None  # the shot count it was trained for, when recorded (the network does not depend on it)
    meta: dict[str, str]  # the safetensors header metadata (empty for .pt files)


def fingerprint(state_dict: dict[str, torch.Tensor], preset: Preset) -> str:
    """sha256 over the preset (JSON) and every tensor's name, dtype, shape and bytes, in key order."""
    h = hashlib.sha256(preset.to_json().encode())
    for key in sorted(state_dict):
        t = state_dict[key].detach().to("cpu").contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def model_fingerprint(model: ICPDNet) -> str:
    return fingerprint(model.state_dict(), model.preset)


def is_safetensors(path: Path) -> bool:
    """Whether ``path`` starts like a safetensors file: a header length that fits the file, then ``{``.

    Decided by the bytes, not the suffix: torch's zip format starts with ``PK``, its legacy
    (``_use_new_zipfile_serialization=False``) format with a pickle opcode (0x80).
    """
    with path.open("rb") as fh:
        head = fh.read(9)
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= min(_SAFETENSORS_MAX_HEADER, path.stat().st_size - 8) and head[8:9] == b"{"


def _read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A flat state dict and the safetensors metadata (empty for .pt files)."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: file not found; pass the path of a .pt or .safetensors file")
    safetensors = is_safetensors(path)
    if path.suffix == ".safetensors" and not safetensors:
        raise CheckpointError(f"checkpoint {path}: not a safetensors file (no safetensors header; truncated, "
                              "or another format under this name); re-export it, or rename a torch.save file to .pt")
    if safetensors:
        from safetensors import SafetensorError
        from safetensors.torch import load_file, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
            return load_file(str(path)), meta
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"checkpoint {path}: not a readable safetensors file ({e}); re-export it") from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(
            f"checkpoint {path}: cannot be read with torch.load(weights_only=True) ({type(e).__name__}: {e}). "
            "icpd never unpickles arbitrary objects; save a plain state dict (torch.save(model.state_dict()))"
        ) from e
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"checkpoint {path}: expected a state dict of tensors, got {type(obj).__name__}")
    if obj and all(k.startswith("module.") for k in obj):  # saved from DataParallel / DDP
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj, {}


def _likely_cause(missing: list[str], unexpected: list[str], misshapen: list[str], preset: Preset) -> str:
    keys = missing + unexpected + misshapen
    if any(k.startswith("backbone.features.") for k in unexpected) and preset.backbone != "vgg16":
        return f"the checkpoint has a VGG-16 backbone: use {arg('preset', 'paper-vgg16')}"
    if any(k.startswith("backbone.layer") for k in unexpected) and preset.backbone == "vgg16":
        return f"the checkpoint has a ResNet backbone: use {arg('preset', 'paper')}"
    if any(k.startswith("cross_modal_visual_backbone.") for k in misshapen + unexpected):
        clip = preset.clip_model if isinstance(preset.clip_model, str) else "custom config"
        return (f"the CLIP vision tower differs from preset {preset.name!r} ({clip}): "
                "choose the preset of that CLIP model")
    if any(k.startswith("backbone.") for k in misshapen):
        return f"the backbone widths differ from preset {preset.name!r}: choose the matching preset"
    if keys and all(k.startswith(("visual.", "transformer.", "token_embedding")) for k in unexpected):
        return f"this is a CLIP checkpoint, not an ICPD-Net one: pass it as {arg('clip_weights')}"
    return f"the file was not saved from ICPD-Net with preset {preset.name!r}"


def load_state_dict_strict(model: ICPDNet, state: dict[str, torch.Tensor], source: str) -> None:
    """Strict load; drops the unused classifier keys; a mismatch raises CheckpointError listing keys."""
    state = {k: v for k, v in state.items() if not k.startswith(UNUSED_PREFIXES)}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    misshapen = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or misshapen:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:6]) + (f" ... (+{len(keys) - 6})" if len(keys) > 6 else "")

        detail = "; ".join(
            f"{name} ({len(keys)}): {show(keys)}"
            for name, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("misshapen", [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in misshapen]),
            )
            if keys
        )
        raise CheckpointError(
            f"checkpoint {source} does not match preset {model.preset.name!r}: {detail}. "
            f"Likely cause: {_likely_cause(missing, unexpected, misshapen, model.preset)}"
        )
    state = {k: v.to(own[k].dtype) if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)


def load_checkpoint(
    path: str | os.PathLike[str], preset: Preset | str | None = None, shot: int | None = None
) -> ICPDNet:
    """Load an ICPD-Net checkpoint: the authors' layout (``.pt`` state dict) or icpd's safetensors.

    ``preset`` defaults to the one recorded in an icpd checkpoint, else "paper". ``shot`` is
    recorded only (the network itself does not depend on it; the authors train one per shot):
    :func:`load_checkpoint_with_info` returns it with the rest of the provenance.
    """
    return load_checkpoint_with_info(path, preset, shot)[0]


def load_checkpoint_with_info(
    path: str | os.PathLike[str], preset: Preset | str | None = None, shot: int | None = None
) -> tuple[ICPDNet, CheckpointInfo]:
    """:func:`load_checkpoint`, plus where the weights came from (path, shot, header metadata)."""
    path = Path(path)
    state, meta = _read_state_dict(path)
    # plain safetensors files carry their own "format" (e.g. "pt"): only icpd's are checked as such
    if meta.get("format") == CHECKPOINT_FORMAT:
        check_format(meta, _FORMAT, f"checkpoint {path}", CheckpointError)
        stored = Preset.from_dict(json.loads(meta["preset"]))
        if preset is not None and get_preset(preset).to_dict() != stored.to_dict():
            raise CheckpointError(
                f"checkpoint {path} was saved for preset {stored.name!r}, not {get_preset(preset).name!r}; "
                f"drop {arg('preset')} or pass the matching one"
            )
        preset = stored
    p = get_preset(preset or "paper")
    with torch.device("meta"):
        model = ICPDNet(p)
    load_state_dict_strict(model, state, str(path))
    model.eval()
    if meta.get("fingerprint") and meta["fingerprint"] != model_fingerprint(model):
        raise CheckpointError(
            f"checkpoint {path}: weights do not match the fingerprint in its header (file altered or corrupt); "
            "convert the original checkpoint again"
        )
    recorded = meta.get("shot")
    info = CheckpointInfo(str(path), shot if shot is not None else (int(recorded) if recorded else None), meta)
    return model, info


def save_checkpoint(model: ICPDNet, path: str | os.PathLike[str], extra: dict[str, Any] | None = None,
                    sidecar: bool = True) -> dict[str, str]:
    """Write our safetensors format (header metadata + a ``.json`` sidecar unless ``sidecar=False``);
    returns the metadata.

    Each file is written to a temporary name and renamed, so a crash leaves no half-written file.
    """
    from safetensors.torch import save_file

    path = Path(path)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    meta = {
        **{k: str(v) for k, v in _FORMAT.header().items()},  # safetensors metadata holds strings only
        "preset": model.preset.to_json(),
        "fingerprint": fingerprint(state, model.preset),
        "icpd_version": icpd.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    meta.update({k: str(v) for k, v in (extra or {}).items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    if sidecar:
        write_text_atomic(path.with_suffix(".json"),
                          json.dumps({**meta, "preset": json.loads(meta["preset"])}, indent=2))
    return meta


def convert_checkpoint(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], preset: Preset | str = "paper", shot: int | None = None
) -> dict[str, str]:
    """Authors' .pt -> icpd safetensors (+ JSON sidecar with the fingerprint).

    ``dst`` is claimed before the checkpoint is read (:func:`icpd.io.outputs.claim_output`).

    Raises:
        OutputPathError: (an OSError) ``dst`` cannot be written; LockHeldError: (a ValueError) another
            run is writing ``dst`` (its pid is in the message); CheckpointError: ``src`` does not fit.
    """
    from icpd.io.outputs import claim_output

    with claim_output(dst, "convert-checkpoint"):
        model = load_checkpoint(src, preset=preset, shot=shot)
        extra = {"source": Path(src).name}
        if shot is not None:
            extra["shot"] = str(shot)
        return save_checkpoint(model, dst, extra)


# -- encoder parts from local files ---------------------------------------------------------------
def _load_part(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str, what: str) -> None:
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{what} weights {source}: missing {result.missing_keys[:6]}, unexpected {result.unexpected_keys[:6]}; "
            f"is it the {what} matching this preset?"
        )


def load_clip_weights(model: ICPDNet, path: str | os.PathLike[str]) -> None:
    """Full open_clip / RemoteCLIP checkpoint (``visual.*`` keys) into the vision tower."""
    state, _ = _read_state_dict(Path(path))
    visual = {k[len("visual.") :]: v for k, v in state.items() if k.startswith("visual.")}
    if not visual:
        raise CheckpointError(f"CLIP weights {path}: no 'visual.*' keys; pass a full open_clip CLIP state dict")
    _load_part(model.cross_modal_visual_backbone, visual, str(path), "CLIP vision tower")


def load_backbone_weights(model: ICPDNet, path: str | os.PathLike[str]) -> None:
    """torchvision ImageNet ResNet-50 / VGG-16 state dict into the backbone (classifier dropped)."""
    state, _ = _read_state_dict(Path(path))
    state = {k: v for k, v in state.items() if not k.startswith(("fc.", "classifier."))}
    if model.preset.backbone == "vgg16":
        state = {k: v for k, v in state.items() if int(k.split(".")[1]) <= 30} if all(
            k.startswith("features.") for k in state
        ) else state
    _load_part(model.backbone, state, str(path), "backbone")

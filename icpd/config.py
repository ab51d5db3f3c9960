"""Model presets: frozen dataclasses and a small registry.

A preset says everything needed to *build* a network (no weights): backbone, CLIP tower,
input sizes and the preprocessing statistics that travel with the weights.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from icpd.errors import ParamError, arg


class Backend(str, Enum):
    """Where a Predictor runs the exported model (``--backend``)."""

    TORCH = "torch"  # PyTorch eager on the model dir's weights (CPU or CUDA)
    ORT = "ort"  # ONNX Runtime on the exported graphs (CPU, or CUDA with onnxruntime-gpu)
    TRT = "trt"  # TensorRT engines from `icpd build` (NVIDIA GPUs)


class Precision(str, Enum):
    """Numeric precision of an exported model dir or engine (``--precision``)."""

    FP32 = "fp32"
    FP16 = "fp16"
    # ONNX Runtime on the CPU: the encoder's MatMuls in INT8, the matcher FP32 (icpd.export.quantize)
    INT8 = "int8"


class RankPriorForm(str, Enum):
    """How the rank (NDCG) prior is written into the matcher graph (``--rank-prior``).

    Code inside icpd passes members; text from outside (an option, a model.json, a caller's
    string) goes through :meth:`parse`, the one place that knows the old names.
    """

    TOPK = "topk"  # standard ONNX, partial sort with a data-dependent k: fastest on ONNX Runtime CPU
    SORT = "sort"  # standard ONNX with static shapes only (full sort): TensorRT without a plugin
    PLUGIN = "plugin"  # one NdcgPrior node per level: the CUDA kernel inside TensorRT

    @classmethod
    def parse(cls, value: object, param: str = "rank_prior") -> RankPriorForm:
        """``value`` as a form: a member, its value, or an old name in :data:`RANK_PRIOR_OLD_NAMES`
        (exact spelling, as model.json files and ``--rank-prior`` carry them).

        Raises:
            ParamError: anything else, about ``param``; the message lists every valid name
                (``rank_prior='scan': choose one of topk, sort, plugin (onnx is the old name of topk)``).
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            if value in RANK_PRIOR_OLD_NAMES:
                return RANK_PRIOR_OLD_NAMES[value]
            if value in cls._value2member_map_:
                return cls(value)
        raise ParamError(f"{arg(param, repr(value))}: choose one of {cls.choices()}")

    @classmethod
    def choices(cls) -> str:
        """``"topk, sort, plugin (onnx is the old name of topk)"``: the valid names, for messages."""
        old = ", ".join(f"{name} is the old name of {form.value}"
                        for name, form in RANK_PRIOR_OLD_NAMES.items())
        return ", ".join(f.value for f in cls) + (f" ({old})" if old else "")

    @classmethod
    def spellings(cls) -> tuple[str, ...]:
        """Every string :meth:`parse` accepts: the values, then the old names."""
        return (*(f.value for f in cls), *RANK_PRIOR_OLD_NAMES)


# Old names of rank-prior forms, read from files and scripts written before the rename: model.json
# files exported by icpd before the rename say "rank_prior": "onnx" (tests/trt/test_build_checks.py
# keeps one building), and users' scripts pass `--rank-prior onnx`.
RANK_PRIOR_OLD_NAMES: dict[str, RankPriorForm] = {"onnx": RankPriorForm.TOPK}


# Per-channel statistics of the remote-sensing training imagery the authors normalise with.
PAPER_MEAN = (0.432, 0.626, 0.270)
PAPER_STD = (0.277, 0.255, 0.187)

TINY_CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 112, "layers": 2, "width": 64, "patch_size": 14, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@dataclass(frozen=True)
class Preset:
    """Everything needed to build an ICPD-Net (not its weights)."""

    name: str  # registry key, e.g. "paper"
    backbone: str  # "resnet" (torchvision Bottleneck ResNet) or "vgg16"
    image_size: int  # network input side in pixels (square)
    clip_model: str | dict[str, Any] = field(hash=False)  # open_clip model name or config dict
    clip_image_size: int  # CLIP tower input side; images are resized to it (bilinear, antialias)
    clip_grid: int  # CLIP token grid side; equals the layer-3 grid
    embed_dim: int  # CLIP embedding dim == class-embedding dim
    num_classes: int = 15  # class embeddings per episode (target first)
    resnet_layers: tuple[int, ...] = (3, 4, 6, 3)  # bottlenecks per ResNet stage
    resnet_width: int = 64  # ResNet base width; 64 = torchvision ResNet-50
    mean: tuple[float, float, float] = PAPER_MEAN  # normalisation mean (RGB, 0..1 scale)
    std: tuple[float, float, float] = PAPER_STD  # normalisation std (RGB, 0..1 scale)
    fusion_weight: float = 0.0  # RFFM blend of query prototypes into support features; 0 = released code
    fusion_threshold: float = 0.7  # reliable-pixel threshold on the min-max normalised prior
    description: str = ""  # one line for `icpd info`

    def __post_init__(self) -> None:
        if self.backbone not in ("resnet", "vgg16"):
            raise ValueError(f"preset {self.name!r}: backbone must be 'resnet' or 'vgg16', "
                             f"got {self.backbone!r}")
        if self.image_size % 32:
            raise ValueError(f"preset {self.name!r}: image_size must be a multiple of 32, "
                             f"got {self.image_size}")
        if self.image_size // 16 != self.clip_grid:
            raise ValueError(
                f"preset {self.name!r}: CLIP token grid {self.clip_grid} must equal the layer-3 grid "
                f"{self.image_size // 16} (image_size / 16)"
            )
        if isinstance(self.clip_model, dict):
            self.check_clip(self.clip_model)  # named models are checked when built (keeps imports light)
        if not 0.0 <= self.fusion_weight <= 1.0:
            raise ValueError(f"preset {self.name!r}: fusion_weight must be in [0, 1], "
                             f"got {self.fusion_weight}")

    def check_clip(self, cfg: dict[str, Any]) -> None:
        """The invariants tying the CLIP config to this preset (grid, input size, embedding dim)."""
        patch = cfg["vision_cfg"]["patch_size"]
        if self.clip_image_size != self.clip_grid * patch:
            raise ValueError(
                f"preset {self.name!r}: clip_image_size {self.clip_image_size} != "
                f"grid {self.clip_grid} x patch {patch}"
            )
        if cfg["embed_dim"] != self.embed_dim:
            raise ValueError(
                f"preset {self.name!r}: embed_dim {self.embed_dim} != CLIP embedding dim {cfg['embed_dim']}"
            )

    # -- derived -------------------------------------------------------------------------------
    def clip_config(self) -> dict[str, Any]:
        """The open_clip model config (a copy), resolved from a name through open_clip's registry."""
        if isinstance(self.clip_model, dict):
            return copy.deepcopy(self.clip_model)
        import open_clip  # local: keeps `import icpd` light

        cfg = open_clip.get_model_config(self.clip_model)
        if cfg is None:
            raise ValueError(
                f"preset {self.name!r}: open_clip has no model config {self.clip_model!r}; "
                "pass a config dict or one of open_clip.list_models()"
            )
        return copy.deepcopy(cfg)

    @property
    def stack_sizes(self) -> tuple[int, int, int]:
        """Backbone layers in the decoder stacks (L4, L3, L2)."""
        if self.backbone == "vgg16":
            return (1, 3, 3)
        return (self.resnet_layers[3], self.resnet_layers[2], self.resnet_layers[1])

    @property
    def num_layers(self) -> int:
        """Backbone feature maps the priors use (13 for ResNet-50)."""
        return sum(self.stack_sizes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["clip_model"] = copy.deepcopy(self.clip_model)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preset:
        d = dict(d)
        for key in ("resnet_layers", "mean", "std"):
            if key in d:
                d[key] = tuple(d[key])
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown preset fields {sorted(unknown)}; this icpd knows {sorted(known)}")
        return cls(**d)


def cache_root() -> Path:
    """Where icpd keeps what it builds (weights fetched with --download, kernels, bench exports):
    ``$ICPD_CACHE_DIR``, else ``$XDG_CACHE_HOME/icpd``, else ``~/.cache/icpd``."""
    if os.environ.get("ICPD_CACHE_DIR"):
        return Path(os.environ["ICPD_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "icpd"


_REGISTRY: dict[str, Preset] = {}


def register_preset(preset: Preset) -> Preset:
    """Add a preset to the registry (explicit call; nothing registers at run time by itself)."""
    if preset.name in _REGISTRY:
        raise ValueError(f"preset {preset.name!r} is already registered")
    _REGISTRY[preset.name] = preset
    return preset


def list_presets() -> list[str]:
    return sorted(_REGISTRY)


def get_preset(name: str | Preset) -> Preset:
    if isinstance(name, Preset):
        return name
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {list_presets()}") from None


register_preset(Preset(
    name="paper",
    backbone="resnet",
    image_size=256,
    clip_model="ViT-L-14",
    clip_image_size=224,
    clip_grid=16,
    embed_dim=768,
    description="ICPD-Net as published: ResNet-50 + CLIP ViT-L/14 (RemoteCLIP), 256 px",
))
register_preset(Preset(
    name="paper-vgg16",
    backbone="vgg16",
    image_size=256,
    clip_model="ViT-L-14",
    clip_image_size=224,
    clip_grid=16,
    embed_dim=768,
    description="the authors' VGG-16 variant + CLIP ViT-L/14, 256 px",
))
register_preset(Preset(
    name="tiny",
    backbone="resnet",
    image_size=128,
    clip_model=TINY_CLIP_CONFIG,
    clip_image_size=112,
    clip_grid=8,
    embed_dim=32,
    resnet_width=8,
    description="same topology, small widths and 128 px: tests, CI and demos (fast on a CPU)",
))

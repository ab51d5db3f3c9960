"""The JSON sidecar written beside TensorRT engines, and the check that refuses stale engines.

A serialized engine only runs with the TensorRT version that built it, on the GPU model it was
tuned for, with the plugin code it embeds, for the weights it was built from. ``engines.json``
in the engine dir records all of that; :func:`check_sidecar` compares it with the running
environment before anything is deserialised and raises :class:`EngineMismatchError` saying
which field differs and the command that rebuilds the engines.

```
ENGINE_DIR/
  engines.json     this sidecar
  encoder.engine   images (B,3,S,S) -> feat_*
  matcher.engine   query_* (B,..) + support_* (K,..) + class_embeddings -> logits, ...
```

An engine dir is built at one of :data:`PRECISIONS` (``fp32`` or ``fp16``; an INT8 model dir runs
on ONNX Runtime's CPU kernels only, never as an engine) from a matcher written in one of the three
rank-prior forms of :class:`~icpd.config.RankPriorForm`: ``topk`` or ``sort`` (standard ONNX) or
``plugin`` (the ``icpd::NdcgPrior`` plugin, whose source hash the sidecar then checks). Sidecars
written before the forms were renamed say ``onnx`` for ``topk``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from icpd.artifacts.formats import ArtifactFormat, check_format
from icpd.config import Precision, RankPriorForm
from icpd.errors import ParamError
from icpd.io.atomic import write_text_atomic

SIDECAR_NAME = "engines.json"
SIDECAR_FORMAT = "icpd-engines"
SIDECAR_VERSION = 1
PRECISIONS = tuple(p.value for p in Precision if p is not Precision.INT8)  # INT8 is ONNX Runtime (CPU) only
_FORMAT = ArtifactFormat(SIDECAR_FORMAT, SIDECAR_VERSION, "engine sidecar",
                         "rebuild the engines with `icpd build`",
                         required=("env", "precision", "rank_prior", "batch", "shots", "model_fingerprint"))
_KERNELS = Path(__file__).resolve().parents[1] / "kernels"
# Everything that decides the plugin's behaviour inside an engine (the PTX is built from these).
PLUGIN_SOURCES = ("ndcg_prior.cu", "plugin/ndcg_prior.h", "launch.py", "trt_plugin.py", "build.py")


class EngineMismatchError(RuntimeError):
    """Engines built for another TensorRT, GPU, plugin or model: they must be rebuilt."""


@dataclass(frozen=True)
class EngineEnv:
    """What an engine is tied to, read from the running process
    (:func:`icpd.runtime.environment.current_env`: it needs TensorRT and a GPU, so it lives above
    the formats)."""

    tensorrt_version: str  # tensorrt.__version__
    gpu_name: str  # torch.cuda.get_device_name()
    compute_capability: str  # "8.7"
    plugin_hash: str  # :func:`plugin_hash` of the installed kernel sources


@dataclass(frozen=True)
class Sidecar:
    """Contents of ``engines.json``."""

    env: EngineEnv
    precision: str  # one of PRECISIONS: "fp32" or "fp16"
    # the matcher's form: TOPK, SORT (standard ONNX) or PLUGIN (NdcgPrior). Text given here (the file's
    # "topk", an older sidecar's "onnx") is parsed once, in __post_init__; the code compares members.
    rank_prior: RankPriorForm
    batch: tuple[int, int, int]  # optimization profile (min, opt, max) of the query batch
    shots: tuple[int, int, int]  # optimization profile (min, opt, max) of the support shots
    model_fingerprint: str  # model.json "fingerprint" of the weights the engines were built from
    engines: dict[str, dict[str, Any]] = field(default_factory=dict)  # role -> {"name", "sha256", "bytes"}
    strongly_typed: bool = False  # a strongly typed network (every build now; older sidecars may say false)
    model_dir: str = ""  # where the model dir was when the engines were built (informational)
    build_seconds: float = 0.0
    icpd_version: str = ""
    # "" (no plugin), "aot" (PTX in the engine) or "library:/path/libicpd_ndcg_prior_plugin.so"
    plugin: str = ""
    opt_level: int | None = None  # builder optimisation level (None: TensorRT's default, 3)

    def __post_init__(self) -> None:
        # ParamError (a ValueError) for an unknown form; from_dict turns it into a stale-sidecar refusal
        object.__setattr__(self, "rank_prior", RankPriorForm.parse(self.rank_prior, "rank_prior"))

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update({**_FORMAT.header(), "rank_prior": self.rank_prior.value, "batch": list(self.batch),
                  "shots": list(self.shots)})
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str | os.PathLike[str] = SIDECAR_NAME) -> Sidecar:
        """Parse a sidecar read from ``source`` (named in errors); raises :class:`EngineMismatchError`."""
        check_format(d, _FORMAT, source, EngineMismatchError)
        try:
            return cls(
                env=EngineEnv(**d["env"]), precision=d["precision"], rank_prior=d["rank_prior"],
                batch=tuple(d["batch"]), shots=tuple(d["shots"]), model_fingerprint=d["model_fingerprint"],
                engines=d.get("engines", {}), strongly_typed=bool(d.get("strongly_typed", False)),
                model_dir=d.get("model_dir", ""), build_seconds=float(d.get("build_seconds", 0.0)),
                icpd_version=d.get("icpd_version", ""), plugin=d.get("plugin", ""),
                opt_level=d.get("opt_level"),
            )
        except (KeyError, TypeError) as err:
            raise EngineMismatchError(f"{source}: engine sidecar is incomplete ({err!r}); "
                                      f"{_FORMAT.fix}") from err
        except ParamError as err:  # a form this icpd does not know: the plugin check could not be decided
            raise EngineMismatchError(f"{source}: engine sidecar has {err}; {_FORMAT.fix}") from err


def plugin_hash(kernel_dir: Path = _KERNELS) -> str:
    """sha256 over the rank-prior kernel and plugin sources (name + bytes of each, in a fixed order)."""
    h = hashlib.sha256()
    for name in PLUGIN_SOURCES:
        h.update(name.encode() + b"\0" + (kernel_dir / name).read_bytes() + b"\0")
    return h.hexdigest()


def write_sidecar(engine_dir: str | os.PathLike[str], sidecar: Sidecar) -> Path:
    return write_text_atomic(Path(engine_dir) / SIDECAR_NAME, json.dumps(sidecar.as_dict(), indent=2))


def read_sidecar(engine_dir: str | os.PathLike[str]) -> Sidecar:
    path = Path(engine_dir) / SIDECAR_NAME
    if not path.is_file():
        raise EngineMismatchError(f"engine dir {engine_dir}: {SIDECAR_NAME} is missing; build the engines "
                                  f"with `icpd build --model MODEL_DIR --out {engine_dir}`")
    try:
        return Sidecar.from_dict(json.loads(path.read_text()), path)
    except json.JSONDecodeError as err:
        raise EngineMismatchError(f"{path}: not valid JSON ({err}); {_FORMAT.fix}") from err


def check_sidecar(sidecar: Sidecar, current: EngineEnv, model_fingerprint: str,
                  rebuild_hint: str = "") -> None:
    """Raise :class:`EngineMismatchError` unless the engines fit ``current`` and the model.

    Every mismatching field is listed (TensorRT version, GPU name, compute capability, plugin
    hash for plugin-form engines, model fingerprint) with both values, then how to rebuild.
    """
    env = sidecar.env
    problems = []
    if env.tensorrt_version != current.tensorrt_version:
        problems.append(f"built with TensorRT {env.tensorrt_version}, running TensorRT "
                        f"{current.tensorrt_version}")
    if env.compute_capability != current.compute_capability:
        problems.append(f"built for compute capability {env.compute_capability}, "
                        f"this GPU is {current.compute_capability}")
    if env.gpu_name != current.gpu_name:
        problems.append(f"built on {env.gpu_name!r}, running on {current.gpu_name!r} (engines are tuned per "
                        "GPU model)")
    if sidecar.rank_prior is RankPriorForm.PLUGIN and env.plugin_hash != current.plugin_hash:
        problems.append(f"built with rank-prior plugin sources {env.plugin_hash[:12]}..., installed sources "
                        f"are {current.plugin_hash[:12]}...")
    if sidecar.model_fingerprint != model_fingerprint:
        problems.append(f"built from model {sidecar.model_fingerprint[:12]}..., "
                        f"the model dir holds {model_fingerprint[:12]}...")
    if problems:
        hint = rebuild_hint or "icpd build --model MODEL_DIR --out ENGINE_DIR"
        raise EngineMismatchError("the TensorRT engines do not match: " + "; ".join(problems)
                                  + f". Rebuild them: `{hint}`")


def check_profile(sidecar: Sidecar, batch: int, shots: int) -> None:
    """Raise ``ValueError`` when a batch or shot count is outside the engines' optimization profiles."""
    for what, value, (lo, _, hi) in (("batch", batch, sidecar.batch), ("shots", shots, sidecar.shots)):
        if not lo <= value <= hi:
            raise ValueError(f"{what} {value} is outside the engines' profile {lo}..{hi}; split the input or "
                             f"rebuild with `icpd build --{what} MIN,OPT,MAX`")

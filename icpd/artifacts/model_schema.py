"""The schema of ``model.json``: every key, its type and range, nested preset fields included.

:func:`check_model_meta` runs on every :meth:`ModelDir.open`. An edited or corrupt document is
refused with one line naming the key path, the value, what it must be and the fix, e.g.
``model.json: preset.image_size = "128" is not an integer >= 32 (altered or corrupt); re-run
`icpd export --out M```, instead of a ``TypeError`` deep inside the runtime. A bool is not an
integer, ``18.0`` is not an integer, and a key this icpd does not write is refused (a typo, or a
newer icpd's dir). Objects written by third parties or as free-form reports stay open: the
open_clip config under ``preset.clip_model`` (only the keys icpd reads are checked) and the
self-check reports (``validation``, ``fp16``, ``int8``).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from icpd.artifacts.formats import (
    BOOL,
    FILE_NAME,
    NON_EMPTY_STR,
    NUMBER,
    SHA256,
    STR,
    ListOf,
    MapOf,
    Obj,
    Rule,
    check_schema,
    either,
    is_int,
    one_of,
)
from icpd.config import Preset, RankPriorForm

POSITIVE: Rule = (lambda v: NUMBER[0](v) and v > 0), "a number > 0"
DIM: Rule = either(is_int(0), NON_EMPTY_STR)  # a size, or a dynamic axis's name ("batch", "shots")
# a tensor: its dimensions, then its dtype ("batch", 3, 128, 128, "float32")
TENSOR: Rule = ((lambda v: isinstance(v, list) and bool(v) and isinstance(v[-1], str)
                 and all(DIM[0](d) for d in v[:-1])),
                ('a JSON list of dimensions (integers or axis names) ending with a dtype, '
                 'e.g. ["batch", 3, 128, 128, "float32"]'))

_FILE = Obj({"name": FILE_NAME, "bytes": is_int(0), "sha256": SHA256, "sample_sha256": SHA256},
            optional=frozenset({"sample_sha256"}))
FILE_ENTRY = Obj({**_FILE.fields, "external_data": ListOf(_FILE)},
                 optional=frozenset({"sample_sha256", "external_data"}))

# Preset fields: the same names as icpd.config.Preset (a test keeps them equal); the ones with a
# default may be absent, as Preset.from_dict fills them in.
PRESET_FIELDS: dict[str, Any] = {
    "name": NON_EMPTY_STR,
    "backbone": one_of("resnet", "vgg16"),
    "image_size": is_int(32),
    # an open_clip model name, or its config: only what icpd reads is checked, the rest is open_clip's
    "clip_model": either(NON_EMPTY_STR, (lambda v: isinstance(v, dict), "an open_clip config object")),
    "clip_image_size": is_int(1),
    "clip_grid": is_int(1),
    "embed_dim": is_int(1),
    "num_classes": is_int(1),
    "resnet_layers": ListOf(is_int(1), 4),
    "resnet_width": is_int(1),
    "mean": ListOf(NUMBER, 3),
    "std": ListOf(POSITIVE, 3),
    "fusion_weight": NUMBER,
    "fusion_threshold": NUMBER,
    "description": STR,
}
CLIP_CONFIG = Obj({"embed_dim": is_int(1), "vision_cfg": Obj({"patch_size": is_int(1)}, open=True)}, open=True)

_IO = Obj({"inputs": MapOf(TENSOR), "outputs": MapOf(TENSOR)})

MODEL_SCHEMA = Obj(
    {
        "format": STR,
        "format_version": is_int(1),
        "icpd_version": STR,
        "preset": Obj(PRESET_FIELDS, optional=frozenset(
            f.name for f in dataclasses.fields(Preset) if f.default is not dataclasses.MISSING)),
        "fingerprint": SHA256,
        "normalization": Obj({"mean": ListOf(NUMBER, 3), "std": ListOf(POSITIVE, 3), "scale": STR}),
        "image_size": is_int(32),
        "opset": is_int(1),
        "graph_version": is_int(1),
        "rank_prior": one_of(*RankPriorForm.spellings()),  # the forms and their old names (onnx)
        "precision": one_of("fp32", "fp16", "int8"),
        "source": STR,
        "preprocess": _IO,
        "encoder": _IO,
        "matcher": Obj({"inputs": MapOf(TENSOR), "outputs": ListOf(NON_EMPTY_STR), "shots_axis": STR}),
        "files": Obj({role: FILE_ENTRY for role in ("preprocess", "encoder", "matcher", "weights")},
                     optional=frozenset({"weights"})),  # weights: absent from a runtime-only dir (checked below)
        "runtime_only": BOOL,  # exported with --runtime-only: no PyTorch weights
        "weights_fingerprint": SHA256,  # INT8: the FP32 weights' fingerprint
        # reports written by the export's self-checks: free-form
        "validation": Obj({}, open=True),
        "fp16": Obj({}, open=True),
        "int8": Obj({}, open=True),
    },
    optional=frozenset({"runtime_only", "weights_fingerprint", "validation", "fp16", "int8"}),
)


def check_model_meta(meta: dict[str, Any], source: str | os.PathLike[str], error: type[Exception], fix: str) -> None:
    """Check a parsed ``model.json`` against :data:`MODEL_SCHEMA`, then what ties its keys together.

    Raises:
        error: the first key path that is missing, of the wrong type, out of range or unknown; the
            files not matching ``runtime_only``; a preset icpd cannot build (its own rule), or
            ``image_size`` differing from the preset's.
    """
    check_schema(meta, MODEL_SCHEMA, source, error, fix)
    preset = meta["preset"]
    if isinstance(preset["clip_model"], dict):
        check_schema(preset["clip_model"], CLIP_CONFIG, source, error, fix, "preset.clip_model")
    try:
        Preset.from_dict(preset)
    except ValueError as err:
        raise error(f"{source}: preset: {err} (altered or corrupt); {fix}") from None
    if meta["image_size"] != preset["image_size"]:
        raise error(f"{source}: image_size = {meta['image_size']} differs from preset.image_size = "
                    f"{preset['image_size']} (altered or corrupt); {fix}")
    runtime_only = meta.get("runtime_only", False)
    if runtime_only == ("weights" in meta["files"]):
        state = "lists" if runtime_only else "lacks"
        raise error(f"{source}: files {state} weights (model.safetensors) but runtime_only is "
                    f"{str(runtime_only).lower()} (altered or corrupt); {fix}")

"""model.json is checked against its whole schema on every open (issue 20, section 3): a wrong type
anywhere (a string for a number, a bool or a float for an integer), a missing or an unknown key is
one line naming the key path, the value, what it must be and the fix; the CLI prints that line and
exits 2 (no TypeError traceback)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
from typer.testing import CliRunner

from icpd.artifacts.model_dir import ModelDir, ModelDirError
from icpd.artifacts.model_schema import PRESET_FIELDS
from icpd.cli import app
from icpd.config import Preset


def _set(path: str, value):
    def change(meta):
        *parents, last = path.split(".")
        for key in parents:
            meta = meta[key]
        meta[last] = value
    return change


def _drop(path: str):
    def change(meta):
        *parents, last = path.split(".")
        for key in parents:
            meta = meta[key]
        del meta[last]
    return change


def _resnet_layer(meta):
    meta["preset"]["resnet_layers"][1] = 4.0


FIX = "re-run `icpd export --out "
CASES = {
    "string for an int": (_set("preset.image_size", "128"), 'preset.image_size = "128" is not an integer >= 32'),
    "unknown top-level key": (_set("colour_map", "viridis"), 'unknown key colour_map = "viridis"'),
    "float opset": (_set("opset", 18.0), "opset = 18.0 is not an integer >= 1"),
    "missing key": (_drop("opset"), "opset is missing"),
    "nested unknown key": (_set("preset.colour", 1), "unknown key preset.colour = 1"),
    "bool for an int": (_set("preset.num_classes", True), "preset.num_classes = true is not an integer >= 1"),
    "float in a list of ints": (_resnet_layer, "preset.resnet_layers[1] = 4.0 is not an integer >= 1"),
    "string for a size": (_set("files.encoder.bytes", "421431"),
                          'files.encoder.bytes = "421431" is not an integer >= 0'),
    "float format_version": (_set("format_version", 2.0), "format_version = 2.0 is not an integer >= 1"),
    "tensor spec": (_set("encoder.outputs.feat_clip", [1, 2]),
                    "encoder.outputs.feat_clip = [1, 2] is not a JSON list of dimensions"),
    "runtime_only not a bool": (_set("runtime_only", "yes"), 'runtime_only = "yes" is not true or false'),
    "runtime_only with weights": (_set("runtime_only", True),
                                  "files lists weights (model.safetensors) but runtime_only is true"),
    "clip config key": (_drop("preset.clip_model.vision_cfg.patch_size"),
                        "preset.clip_model.vision_cfg.patch_size is missing"),
    "preset rule": (_set("preset.fusion_weight", 2), "preset: preset 'tiny': fusion_weight must be in [0, 1], got 2"),
    "two sizes disagree": (_set("image_size", 256), "image_size = 256 differs from preset.image_size = 128"),
}


def _tamper(src, dst, change):
    shutil.copytree(src, dst)
    meta = json.loads((dst / "model.json").read_text())
    change(meta)
    (dst / "model.json").write_text(json.dumps(meta))
    return dst


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_the_preset_schema_names_every_preset_field():
    """A field added to Preset without a schema entry would be refused as unknown in every model.json."""
    assert set(PRESET_FIELDS) == {f.name for f in dataclasses.fields(Preset)}


def test_an_exported_model_json_passes(tiny_model_dir):
    assert ModelDir.open(tiny_model_dir).meta["opset"] == 18


@pytest.mark.parametrize("case", list(CASES))
def test_tampered_model_json_is_one_line_naming_the_key(tiny_model_dir, tmp_path, case):
    change, phrase = CASES[case]
    d = _tamper(tiny_model_dir, tmp_path / "m", change)
    with pytest.raises(ModelDirError) as err:
        ModelDir.open(d)
    msg = str(err.value)
    assert msg.startswith(f"{d / 'model.json'}: ") and phrase in msg and f"{FIX}{d}`" in msg and "\n" not in msg


@pytest.fixture(scope="module")
def support_files(tiny_model_dir, tmp_path_factory):
    import cv2
    import numpy as np

    from icpd.model.text import ClassEmbeddings, save_class_embeddings
    from tests.runtime.supports import make_supports

    d = tmp_path_factory.mktemp("schema")
    emb = np.random.default_rng(1).standard_normal((15, 32)).astype(np.float32)
    save_class_embeddings(d / "e.safetensors", ClassEmbeddings(emb, tuple(f"c{i}" for i in range(15))))
    rgb = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    cv2.imwrite(str(d / "s.png"), rgb)
    mask = np.zeros((128, 128), np.uint8)
    mask[20:60, 30:70] = 255
    cv2.imwrite(str(d / "m.png"), mask)
    (support,) = make_supports(tiny_model_dir, d, ("ship",))[:1]
    return d, support


@pytest.mark.parametrize("case", ["string for an int", "unknown top-level key", "float opset", "missing key",
                                  "nested unknown key"])
def test_cli_prints_one_error_line_and_exits_2(tiny_model_dir, support_files, tmp_path, case):
    """Guards issue 20 section 3: preset.image_size "128" was a TypeError traceback in `icpd infer`."""
    change, phrase = CASES[case]
    d = _tamper(tiny_model_dir, tmp_path / "m", change)
    files, support = support_files
    runs = {
        "infer": ["infer", "--model", str(d), "--support", str(support), str(files / "s.png"),
                  "--out", str(tmp_path / "o"), "-q"],
        "cache-support": ["cache-support", "--model", str(d), "--class-name", "c3", "--class-embeddings",
                          str(files / "e.safetensors"), "--image", str(files / "s.png"), "--mask", str(files / "m.png"),
                          "--out", str(tmp_path / "c.support"), "-q"],
    }
    for command, args in runs.items():
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 2, (command, res.output)
        assert res.exception is None or isinstance(res.exception, SystemExit), (command, res.exception)
        text = _flat(res.output)
        assert text.startswith("error: ") and text.count("error:") == 1 and phrase in text, (command, res.output)
        assert "Traceback" not in res.output

"""The tiny model exported in the plugin form once per session (the standard form is the root
``tiny_model_dir`` fixture). Its self-check is skipped: the tests here compare it themselves."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_plugin_dir(tmp_path_factory, tiny_model):
    from icpd.export.onnx import export_model

    return export_model(tiny_model, tmp_path_factory.mktemp("export-plugin") / "tiny", rank_prior="plugin",
                        validate=False).path


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Undo the root conftest's skip of every test in this folder.

    The root hook tests ``"trt" in item.keywords``, and keywords include the names of the
    package folders, so all of ``tests/trt`` looks marked ``trt``. Only tests that carry the
    ``trt`` (or ``gpu``) *marker* should be skipped; the fix belongs in the root conftest
    (``item.get_closest_marker("trt")``), after which this hook changes nothing.
    """
    import importlib.util

    import torch

    has = {"trt": importlib.util.find_spec("tensorrt") is not None, "gpu": torch.cuda.is_available()}
    for item in items:
        if "tests/trt/" not in item.nodeid.replace("\\", "/"):
            continue
        skips = [m for m in item.own_markers if m.name == "skip"]
        if not skips:
            continue
        needed = [name for name in ("trt", "gpu") if item.get_closest_marker(name) is not None and not has[name]]
        if not needed:
            item.own_markers[:] = [m for m in item.own_markers if m.name != "skip"]


@pytest.fixture(scope="session")
def tiny_sort_dir(tmp_path_factory, tiny_model):
    """The tiny model exported in the sort form (static shapes: TensorRT without a plugin)."""
    from icpd.export.onnx import export_model

    return export_model(tiny_model, tmp_path_factory.mktemp("export-sort") / "tiny", rank_prior="sort",
                        validate=False).path

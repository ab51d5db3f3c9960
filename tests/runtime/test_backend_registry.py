"""One registry of backends (icpd.runtime.backends.registry): names, aliases, requirements, devices.

Every place that names or probes a backend asks the registry: Predictor.load, the commands'
--backend, benchmarks' backend list, evaluation and validation. A missing library is simulated by
making importlib.util.find_spec miss it (the registry itself is never patched).
"""

from __future__ import annotations

import importlib.util
import sys

import pytest
import typer
from typer.testing import CliRunner

from icpd.commands.common import BackendOpt
from icpd.commands.console import cli_text
from icpd.config import Backend
from icpd.errors import ParamError
from icpd.runtime.backends import registry

SPELLINGS = {"torch": Backend.TORCH, "ort": Backend.ORT, "trt": Backend.TRT,
             "onnxruntime": Backend.ORT, "tensorrt": Backend.TRT}
UNKNOWN = "backend='tpu': choose one of torch, ort, trt (onnxruntime is ort, tensorrt is trt)"


def without(monkeypatch, *modules: str) -> None:
    """importlib.util.find_spec finds nothing for ``modules`` (as if not installed)."""
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name in modules else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_names_aliases_and_one_message():
    assert registry.names() == tuple(b.value for b in Backend) == ("torch", "ort", "trt")
    for text, backend in SPELLINGS.items():
        assert registry.resolve(text) is backend
        assert registry.info(text).backend is backend
    for backend in Backend:
        assert registry.resolve(backend) is backend
    for bad in ("tpu",):
        with pytest.raises(ValueError) as err:
            registry.resolve(bad)
        assert str(err.value) == UNKNOWN
    with pytest.raises(ValueError, match=r"^backend='ORT': choose one of torch, ort, trt"):
        registry.resolve("ORT")
    with pytest.raises(ParamError) as err:
        registry.resolve("tpu")
    assert err.value.param == "backend"  # the CLI prints it as --backend (icpd.errors)
    assert cli_text(err.value) == f"--backend {UNKNOWN.removeprefix('backend=')}"


def test_requirements_devices_and_versions_are_declared():
    modules = {b.name: [r.module for r in b.requires] for b in registry.BACKENDS.values()}
    assert modules == {"torch": ["torch", "torchvision", "open_clip"], "ort": ["onnxruntime"],
                       "trt": ["tensorrt", "torch"]}
    assert {b.name: b.devices for b in registry.BACKENDS.values()} == {
        "torch": ("cpu", "cuda"), "ort": ("cpu", "cuda"), "trt": ("cuda",)}
    import onnxruntime
    import torch

    assert registry.versions("ort")["onnxruntime"] == onnxruntime.__version__
    assert torch.__version__.split("+")[0] == registry.versions("torch")["torch"]  # metadata omits "+cu130"
    assert "tensorrt" not in registry.versions("trt") or importlib.util.find_spec("tensorrt") is not None


@pytest.mark.parametrize("name", registry.names())
def test_installed_follows_find_spec_for_each_requirement(name, monkeypatch):
    record = registry.info(name)
    expected = all(importlib.util.find_spec(r.module) is not None for r in record.requires)
    assert registry.installed(name) is expected
    for req in record.requires:
        with monkeypatch.context() as m:
            without(m, req.module)
            assert registry.installed(name) is False
            assert req in registry.missing(name)
            assert registry.usable_devices(name) == ()


def test_asking_imports_neither_torch_nor_tensorrt():
    import subprocess

    code = ("import sys; from icpd.runtime.backends import registry as r; "
            "[(r.installed(n), r.missing(n), r.versions(n)) for n in r.names()]; "
            "print(sorted(m for m in ('torch', 'tensorrt', 'onnxruntime') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         check=True)
    assert res.stdout.strip() == "[]"


def test_usable_devices_here():
    import onnxruntime
    import torch

    assert registry.usable_devices("ort") == (
        ("cpu", "cuda") if "CUDAExecutionProvider" in onnxruntime.get_available_providers() else ("cpu",))
    assert registry.usable_devices("torch") == (("cpu", "cuda") if torch.cuda.is_available() else ("cpu",))
    trt_here = importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()
    assert registry.usable_devices("trt") == (("cuda",) if trt_here else ())


# -- every entry point resolves the same spellings ---------------------------------------------------
def test_cli_backend_option_takes_the_aliases():
    app = typer.Typer()

    @app.command()
    def show(backend: BackendOpt = Backend.ORT) -> None:
        typer.echo(f"parsed {backend!r}")

    for text, backend in SPELLINGS.items():
        res = CliRunner().invoke(app, ["--backend", text])
        assert res.exit_code == 0 and f"parsed {backend!r}" in res.output, res.output
    from icpd.cli import app as icpd_app

    res = CliRunner().invoke(icpd_app, ["infer", "x.png", "--model", "m", "--support", "s", "--out", "o",
                                        "--backend", "tpu"])
    assert res.exit_code == 2
    assert ("error: --backend: not one of the choices (got tpu); choose one of torch, ort, trt (onnxruntime "
            "is ort, tensorrt is trt)") in res.output


@pytest.mark.parametrize("text", ["ort", "onnxruntime"])
def test_predictor_load_takes_the_aliases(text, tiny_model_dir):
    from icpd.runtime.predictor import Predictor

    assert Predictor.load(tiny_model_dir, backend=text).backend_name == "ort"


def test_predictor_load_refuses_an_unknown_backend_in_the_registrys_words(tmp_path):
    from icpd.runtime.predictor import Predictor

    with pytest.raises(ValueError) as err:
        Predictor.load(tmp_path, backend="tpu")
    assert str(err.value) == UNKNOWN


def test_benchmarks_list_comes_from_the_registry(monkeypatch):
    from icpd.benchmarks import subjects

    labels = {name: (spec.backend, spec.device) for name, spec in subjects.BACKENDS.items()}
    expected = {(b.name if len(b.devices) == 1 else f"{b.name}-{d}"): (b.name, d)
                for b in registry.BACKENDS.values() for d in b.devices}
    assert labels == expected
    for text, backend in SPELLINGS.items():
        (spec,) = subjects.parse_backends(text)
        assert spec.backend == backend.value
    with pytest.raises(ValueError, match="^backends: unknown backend 'tpu'"):
        subjects.parse_backends("tpu")
    here = subjects.available_backends()
    assert ("ort-cpu" in here) is ("cpu" in registry.usable_devices("ort"))
    without(monkeypatch, "onnxruntime")
    assert [n for n in subjects.available_backends() if n.startswith("ort")] == []
    assert "torch-cpu" in subjects.available_backends()


def test_evaluation_and_validation_take_the_registrys_names():
    from icpd.apps.validate import BACKEND_NAMES
    from icpd.training.evaluate import BACKENDS, build_predictor

    assert BACKENDS == BACKEND_NAMES == registry.names()
    with pytest.raises(ValueError) as err:
        build_predictor("tpu", None)
    assert UNKNOWN in str(err.value)
    with pytest.raises(ValueError, match="evaluates an exported model"):
        build_predictor("onnxruntime", None)  # the alias is ort: it needs a model dir, like ort


def test_selftest_and_bench_environment_read_the_registry(monkeypatch):
    from icpd.benchmarks.env import PACKAGES
    from icpd.selftest.environment import environment

    for module in ("torch", "onnxruntime", "tensorrt"):
        assert PACKAGES[module] == registry.requirement(module).distributions
    env: dict = {}
    environment("cpu", env)
    assert env["backends"] == {name: list(registry.usable_devices(name)) for name in registry.names()}
    without(monkeypatch, "tensorrt")
    env = {}
    environment("cpu", env)
    assert env["tensorrt"] == "not installed" and env["backends"]["trt"] == []


def test_infer_asks_for_engines_under_the_trt_alias_too(tmp_path):
    """open_predictor's "trt needs engines" check resolved the name itself: "tensorrt" slipped past it."""
    from icpd.apps.infer.local import open_predictor

    (tmp_path / "c.support").write_bytes(b"x")
    for name in ("trt", "tensorrt"):
        with pytest.raises(ValueError, match="ENGINE_DIR"):
            open_predictor(tmp_path, [tmp_path / "c.support"], backend=name)


def test_trt_check_reads_tensorrt_versions_from_the_registrys_distributions(monkeypatch):
    import importlib.metadata

    from icpd.trt.check import installed_trt_version

    real = importlib.metadata.version
    only = registry.requirement("tensorrt").distributions[-1]  # e.g. tensorrt-cu12-bindings alone

    def version(dist):
        if dist == only:
            return "11.1.0.7"
        if dist.startswith("tensorrt"):
            raise importlib.metadata.PackageNotFoundError(dist)
        return real(dist)

    monkeypatch.setattr(importlib.metadata, "version", version)
    assert installed_trt_version() == "11"  # the default, without TensorRT, is 10.3
    assert registry.versions("trt").get(only) == "11.1.0.7"


def test_serve_settings_take_the_registrys_names_and_message():
    from icpd.apps.serve.settings import ServeSettings

    for text, backend in SPELLINGS.items():
        assert ServeSettings(model="m", backend=text).backend == backend.value
    with pytest.raises(ParamError) as err:
        ServeSettings(model="m", backend="tpu")
    assert str(err.value) == UNKNOWN

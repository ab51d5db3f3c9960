"""collect_environment() never raises and always has the same keys."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from icpd.benchmarks import env
from icpd.benchmarks.env import ENV_VARS, PACKAGES, collect_environment

KEYS = {
    "cpu_model", "cpu_int8_flags", "cpu_cores", "cpu_cores_usable", "cpu_governor", "ram_bytes", "os", "python",
    "packages", "gpus", "jetson_power_mode", "env",
}  # fmt: skip


def test_expected_keys_and_json_serialisable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    info = collect_environment()
    assert set(info) == KEYS
    assert set(info["packages"]) == set(PACKAGES) and set(info["env"]) == set(ENV_VARS)
    assert info["env"]["OMP_NUM_THREADS"] == "3"
    assert info["packages"]["numpy"] is not None  # installed here
    assert isinstance(info["cpu_cores"], int) and info["python"].count(".") == 2
    json.dumps(info)


def test_int8_flags_are_read_from_cpuinfo() -> None:
    """Two "AMD EPYC" machines differ in what decides INT8 speed: the flags say which."""
    x86 = "processor : 0\nmodel name : AMD EPYC\nflags : fpu sse avx2 avx512f avx512_vnni\n"
    assert env._cpu_int8_flags(x86) == ["avx2", "avx512_vnni"]
    assert env._cpu_int8_flags("processor : 0\nFeatures : fp asimd asimddp\n") == ["asimddp"]  # ARM (Jetson Orin)
    assert env._cpu_int8_flags("processor : 0\nflags : fpu sse\n") == []  # known: none of them
    assert env._cpu_int8_flags("processor : 0\n") is None  # unknown
    real = Path("/proc/cpuinfo")
    if real.exists() and "flags" in real.read_text():  # this machine (x86 Linux): a list in the environment
        assert isinstance(collect_environment()["cpu_int8_flags"], list)


def test_failures_become_null(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_args: object, **_kwargs: object) -> None:
        raise OSError("simulated")

    def hang(*_args: object, **_kwargs: object) -> None:
        raise subprocess.TimeoutExpired("nvidia-smi", env.SUBPROCESS_TIMEOUT_S)

    monkeypatch.setattr(env.shutil, "which", lambda name: f"/usr/bin/{name}")  # pretend tools exist
    monkeypatch.setattr(env.subprocess, "run", hang)
    monkeypatch.setattr(env.Path, "read_text", boom)
    monkeypatch.setattr(env.platform, "platform", boom)
    monkeypatch.setattr(env.os, "cpu_count", boom)
    info = collect_environment()
    assert set(info) == KEYS
    assert info["gpus"] is None and info["jetson_power_mode"] is None
    assert info["os"] is None and info["cpu_cores"] is None


def test_nvidia_smi_and_nvpmodel_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    outputs = {
        "nvidia-smi": "NVIDIA GeForce RTX 4090, 550.54.15\nNVIDIA A100-SXM4-80GB, 550.54.15\n",
        "nvpmodel": "NV Power Mode: MAXN\n0\n",
    }

    def fake_run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        assert kwargs["timeout"] <= 10  # never hang a benchmark on a wedged driver
        return subprocess.CompletedProcess(cmd, 0, stdout=outputs[cmd[0]], stderr="")

    monkeypatch.setattr(env.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(env.subprocess, "run", fake_run)
    info = collect_environment()
    assert info["gpus"] == [
        {"name": "NVIDIA GeForce RTX 4090", "driver": "550.54.15"},
        {"name": "NVIDIA A100-SXM4-80GB", "driver": "550.54.15"},
    ]
    assert info["jetson_power_mode"] == "MAXN"


def test_nvpmodel_conf_default_when_tool_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    conf = tmp_path / "nvpmodel.conf"
    conf.write_text("< POWER_MODEL ID=0 NAME=MAXN >\n< PM_CONFIG DEFAULT=2 >\n")
    real_path = env.Path
    monkeypatch.setattr(env.shutil, "which", lambda name: None)
    monkeypatch.setattr(env, "Path", lambda p: conf if p == "/etc/nvpmodel.conf" else real_path(p))
    assert env._jetson_power_mode() == f"default mode 2 (from {conf}; current mode unknown)"

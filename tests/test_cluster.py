"""`icpd.cluster.start_ray`: the one Ray start-up of `icpd infer --ray` and `icpd serve --ray`.

A stand-in for the `ray` module records what `ray.init` was asked (the part under test is what
start_ray asks of Ray, not Ray); the serve test goes through `run_ray_serve` with the real module's
`init` refusing, as test_ray_runner.py does for `icpd infer --ray`."""

from __future__ import annotations

import logging
import os

import pytest

from icpd.cluster import start_ray
from icpd.commands.console import cli_text
from icpd.errors import ParamError

QUIET = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": True}


class FakeRay:
    """Records ray.init's keyword arguments; refuses an address like a cluster that is not there."""

    def __init__(self, running: bool = False):
        self.running, self.calls = running, []

    def is_initialized(self) -> bool:
        return self.running

    def init(self, **kwargs):
        self.calls.append(kwargs)
        if "address" in kwargs:
            raise ConnectionError(f"Failed to connect to Ray cluster at {kwargs['address']}")
        self.running = True


@pytest.mark.parametrize("address", [None, "local"])
def test_a_local_ray_gets_a_cpu_per_worker_plus_one_and_the_callers_priority(address, monkeypatch):
    monkeypatch.delenv("RAY_worker_niceness", raising=False)
    ray = FakeRay()
    workers = (os.cpu_count() or 1) + 3  # more than the machine: the count wins over the cores
    assert start_ray(ray, address, workers, command="icpd infer") is True
    assert ray.calls == [{"num_cpus": workers + 1, **QUIET}]
    assert os.environ["RAY_worker_niceness"] == "0"
    assert start_ray(FakeRay(), None, 1, command="icpd infer") is True
    monkeypatch.setenv("RAY_worker_niceness", "7")  # the user's own setting is kept
    start_ray(FakeRay(), None, 1, command="icpd serve")
    assert os.environ["RAY_worker_niceness"] == "7"


def test_a_running_ray_is_used_and_not_started_again():
    ray = FakeRay(running=True)
    assert start_ray(ray, "auto", 2, command="icpd serve") is False  # False: the caller does not shut it down
    assert ray.calls == []


@pytest.mark.parametrize("command", ["icpd infer", "icpd serve"])
def test_an_address_where_no_cluster_answers_names_the_command_typed(command):
    ray = FakeRay()
    with pytest.raises(ParamError) as err:
        start_ray(ray, "ray://10.0.0.9:10001", 2, command=command)
    assert ray.calls == [{"address": "ray://10.0.0.9:10001", **QUIET}]
    assert str(err.value) == (
        "address=ray://10.0.0.9:10001: could not join a Ray cluster there (Failed to connect to Ray cluster "
        "at ray://10.0.0.9:10001). Check the address `ray start --head` printed (`auto`: one running on this "
        "machine); a cluster with token authentication needs its token here too (RAY_AUTH_TOKEN; "
        "`ray get-auth-token` on the head prints it); "
        f"no address (`{command} --ray` alone) starts a local Ray")


def test_icpd_serve_ray_at_an_address_with_no_cluster_is_one_error_naming_icpd_serve(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray", reason="ray (the icpd[ray] extra) is not installed")
    pytest.importorskip("ray.serve", reason="Ray Serve (ray[serve], the dev extra) is not installed")
    from icpd.apps.serve.ray_serve import run_ray_serve
    from icpd.apps.serve.settings import ServeSettings

    def refuse(**kwargs):
        raise ConnectionError(f"Failed to connect to Ray cluster at {kwargs['address']}")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(ParamError) as err:
        run_ray_serve(ServeSettings(model=tmp_path), "10.0.0.9:6379", 1)
    assert cli_text(err.value).startswith("--ray 10.0.0.9:6379: could not join a Ray cluster there (Failed")
    assert str(err.value).endswith("no address (`icpd serve --ray` alone) starts a local Ray")

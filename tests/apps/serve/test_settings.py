"""``ServeSettings``: frozen, picklable (Ray Serve sends it to each replica), the token kept out of its
repr, and each bad field refused in Python's words (the command line shows its flags instead)."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import pytest

from icpd.apps.serve.settings import ServeSettings, is_loopback


def test_frozen_picklable_and_the_token_not_in_the_repr():
    s = ServeSettings(model="m", supports=["a.support"], token="s3cret", workers=2, tile=256)
    assert s.model == Path("m") and s.supports == (Path("a.support"),)
    assert pickle.loads(pickle.dumps(s)) == s
    assert "s3cret" not in repr(s)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.workers = 3  # type: ignore[misc]
    assert s.max_body_bytes == 64 << 20


@pytest.mark.parametrize(("fields", "message"), [
    ({"workers": 0}, "workers=0: must be from 1 to 64"),
    ({"workers": 2, "backend": "trt"}, "workers=2: only backend=ort segments requests at once"),
    ({"queue": -1}, "queue=-1: must be from 0 to 100000"),
    ({"deadline": float("inf")}, "deadline=inf: must be a finite number above 0"),
    ({"max_body_mb": 0}, "max_body_mb=0: must be a finite number above 0"),
    ({"tile": 64, "overlap": 64}, "overlap=64: must be below the tile (tile=64); e.g. overlap=16"),
    ({"backend": "tensorflow"}, "backend='tensorflow': choose one of torch, ort, trt"),
    ({"token": "two words"}, "token: must be non-empty, without spaces or control characters"),
    ({"workers": True}, "workers=True: must be a whole number"),
])
def test_bad_fields_are_refused_naming_them(fields, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        ServeSettings(model="m", **fields)


def test_loopback_hosts():
    assert all(map(is_loopback, ["127.0.0.1", "127.0.1.1", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.2", "example.org"]))

"""exclusive_lock: one run per output; a second is refused at once with the holder's pid, a lock
left by a dead process on this host is taken over, another host's is kept."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from icpd.io.locks import LockHeldError, exclusive_lock, lock_path


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_lock(target, **fields) -> None:
    doc = {"pid": os.getpid(), "host": socket.gethostname(), "command": "icpd export",
           "started": "2026-01-01T00:00:00Z"}
    lock_path(target).write_text(json.dumps({**doc, **fields}))


def test_lock_file_sits_beside_the_target_and_goes_at_the_end(tmp_path):
    out = tmp_path / "model"
    with exclusive_lock(out, "export") as lock:
        assert lock == tmp_path / "model.lock"
        doc = json.loads(lock.read_text())
        assert doc["pid"] == os.getpid() and doc["host"] == socket.gethostname() and doc["command"] == "icpd export"
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no lock, no temporaries


def test_lock_is_released_when_the_body_fails(tmp_path):
    with pytest.raises(KeyboardInterrupt), exclusive_lock(tmp_path / "m", "export"):
        raise KeyboardInterrupt
    assert not lock_path(tmp_path / "m").exists()


def test_second_holder_is_refused_with_target_pid_and_fix(tmp_path):
    out = tmp_path / "model"
    with exclusive_lock(out, "export"):
        with pytest.raises(LockHeldError) as err, exclusive_lock(out, "cache-support"):
            pass
        assert lock_path(out).exists()  # the refused run leaves the holder's lock alone
    msg = str(err.value)
    assert isinstance(err.value, ValueError)
    assert msg.startswith(f"{out} is being written by another `icpd export` run (pid {os.getpid()} on ")
    assert "wait for it to finish or choose another output" in msg and f"delete {tmp_path / 'model.lock'}" in msg


def test_lock_of_a_dead_process_on_this_host_is_taken_over(tmp_path):
    out = tmp_path / "model"
    _write_lock(out, pid=_dead_pid())
    with exclusive_lock(out, "export") as lock:
        assert json.loads(lock.read_text())["pid"] == os.getpid()


def test_a_reused_pid_does_not_keep_a_lock_alive(tmp_path):
    """A lock naming a running process that does not hold it (the pid was reused after a kill)."""
    out = tmp_path / "model"
    _write_lock(out, pid=os.getppid(), started="2020-01-01T00:00:00Z")
    with exclusive_lock(out, "export") as lock:
        assert json.loads(lock.read_text())["pid"] == os.getpid()


def test_a_torn_lock_is_taken_over(tmp_path):
    out = tmp_path / "model"
    lock_path(out).write_text('{"pid": 12')
    with exclusive_lock(out, "export"):
        pass
    assert not lock_path(out).exists()


def test_another_hosts_lock_is_kept(tmp_path):
    out = tmp_path / "model"
    _write_lock(out, pid=_dead_pid(), host="ground-station-2")
    msg = r"pid \d+ on ground-station-2, started 2026-01-01T00:00:00Z"
    with pytest.raises(LockHeldError, match=msg), exclusive_lock(out, "export"):
        pass
    assert json.loads(lock_path(out).read_text())["host"] == "ground-station-2"


def test_a_lock_taken_over_is_not_removed_by_its_former_holder(tmp_path):
    out = tmp_path / "model"
    with exclusive_lock(out, "export") as lock:
        lock.unlink()
        _write_lock(out, pid=os.getppid(), token="someone-else")
    assert json.loads(lock_path(out).read_text())["token"] == "someone-else"


RACER = """
import sys, time
from icpd.io.locks import LockHeldError, exclusive_lock
start = float(sys.argv[2])
while time.monotonic() < start:
    time.sleep(0.001)
try:
    with exclusive_lock(sys.argv[1], "export"):
        print("won", flush=True)
        time.sleep(1.5)
except LockHeldError:
    print("refused", flush=True)
"""


@pytest.mark.parametrize("stale", [False, True])
def test_racing_processes_get_exactly_one_lock(tmp_path, stale):
    """Four processes start at the same instant (on a free or on a stale lock): one wins, three are refused."""
    out = tmp_path / "model"
    if stale:
        _write_lock(out, pid=_dead_pid())
    start = time.monotonic() + 2.0  # CLOCK_MONOTONIC: one clock for every process of this machine
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(out), str(start)], stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    results = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert results == ["refused", "refused", "refused", "won"]
    assert not lock_path(out).exists()

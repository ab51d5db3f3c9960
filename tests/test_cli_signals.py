"""The console script's process guard (icpd.cli.main): SIGTERM is handled like Ctrl-C (cleanup
runs, exit 143) and an OSError on a path is one line with the fix (exit 2), for every command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from icpd.commands.common import SIGTERM_EXIT, process_guard


def test_os_error_with_a_path_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as done, process_guard():
        raise PermissionError(13, "Permission denied", "/data/out/summary.json")
    err = capsys.readouterr().err
    assert done.value.code == 2 and "Traceback" not in err
    assert err.strip() == ("error: /data/out/summary.json: Permission denied; check the permissions of the folder "
                           "(or choose another output location)")


def test_os_error_without_a_path_keeps_its_traceback():
    with pytest.raises(OSError, match="internal"), process_guard():
        raise OSError("internal")


@pytest.mark.slow  # a real export process: ~40 s on a loaded 2-core machine
def test_sigterm_during_export_removes_the_temporary_folder_and_exits_143(tmp_path):
    """Guards issue 12: SIGTERM during `icpd export` left a hidden partial `.NAME.xxxx/` folder."""
    code = "import sys; from icpd.cli import main; sys.argv = ['icpd', *sys.argv[1:]]; main()"
    args = [sys.executable, "-X", "faulthandler", "-c", code, "export", "--random-weights", "--preset", "tiny",
            "--out", str(tmp_path / "m"), "--no-validate", "-q"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not any(p.name.startswith(".m.") for p in tmp_path.iterdir()):  # the export is under way
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "export did not start within 240 s"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == SIGTERM_EXIT, err
    assert list(tmp_path.iterdir()) == [], os.listdir(tmp_path)  # nothing left: no partial folder, no --out

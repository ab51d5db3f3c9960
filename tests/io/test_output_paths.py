"""ensure_writable / describe_os_error: an unwritable output location fails up front with one
line naming the path and the fix."""

from __future__ import annotations

import errno

import pytest

from icpd.io import OutputPathError, describe_os_error, ensure_writable
from tests.io.readonly import read_only_dir


def test_ensure_writable_accepts_a_writable_parent_and_leaves_nothing(tmp_path):
    assert ensure_writable(tmp_path / "cache.support") == tmp_path / "cache.support"
    assert ensure_writable(tmp_path / "out", folder=True) == tmp_path / "out"
    assert list(tmp_path.iterdir()) == []  # the probe file is gone, the folder not created


def test_ensure_writable_refuses_a_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    with read_only_dir(ro):
        for kwargs, target in (({}, ro / "a.support"), ({"folder": True}, ro),
                               ({"folder": True}, ro / "new" / "deeper")):
            with pytest.raises(OutputPathError) as info:
                ensure_writable(target, **kwargs)
            assert info.value.filename == str(ro) and info.value.errno in (errno.EACCES, errno.EPERM)
            msg = str(info.value)
            assert msg.startswith(f"{ro}: ") and "permission" in msg.lower() and "\n" not in msg
        assert list(ro.iterdir()) == []


def test_ensure_writable_missing_parent_and_file_in_the_way(tmp_path):
    with pytest.raises(OutputPathError, match="does not exist") as info:
        ensure_writable(tmp_path / "missing" / "a.support")
    assert info.value.filename == str(tmp_path / "missing")
    assert ensure_writable(tmp_path / "made" / "a.support", create=True) and (tmp_path / "made").is_dir()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputPathError, match="not a folder"):
        ensure_writable(blocker, folder=True)
    with pytest.raises(OutputPathError) as info:
        ensure_writable(blocker / "sub" / "x.png", create=True)
    assert info.value.errno == errno.ENOTDIR


def test_describe_os_error_names_path_reason_and_fix():
    err = OSError(errno.EROFS, "Read-only file system", "/mnt/out/summary.json")
    assert describe_os_error(err) == ("/mnt/out/summary.json: Read-only file system; that file system is read-only; "
                                      "choose an output location on a writable one")
    cross = OSError(errno.EXDEV, "Invalid cross-device link", "/a", None, "/b")
    assert describe_os_error(cross).startswith("/a -> /b: ")

"""Writing files and folders so that readers never see a half-written one."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` only if the body succeeds.

    The temporary file (``.<name>.<random>.tmp``, hidden and without an image suffix so
    :func:`list_inputs` never picks it up) lives in the same folder, so ``os.replace`` is
    atomic: readers see the old file or the new one, never a half-written one. If the body
    raises, the temporary file is deleted and an existing ``path`` is left untouched.
    The file is created with the usual umask-derived permissions.
    """
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {parent} does not exist. Create it first.")
    while True:
        tmp = parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        break
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_write(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())




def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], *, replace: bool = False) -> Iterator[Path]:
    """Yield a new temporary folder next to ``path``; it becomes ``path`` only if the body succeeds.

    The folder (``.<name>.<random>``, hidden) is in the same parent, so the final ``os.replace``
    is atomic: ``path`` is the old folder or the complete new one, never a half-written one.
    With ``replace=True`` an existing ``path`` is removed just before the rename (the caller
    decides whether that folder may be replaced); without it, an existing non-empty ``path`` is
    an error. If the body raises (Ctrl-C included), the temporary folder is deleted. The folder
    gets the umask's permissions (``mkdtemp`` alone would make it 0700).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        os.chmod(work, 0o777 & ~_umask())
        yield work
        if path.exists():
            if not replace and (not path.is_dir() or any(path.iterdir())):
                raise FileExistsError(f"{path} exists and is not empty; choose another folder or replace it explicitly")
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        os.replace(work, path)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise

"""Is the installed torchvision built for the installed torch?

A torchvision wheel carries C++ operators compiled against one torch release. Installed beside
another torch (CPU torch from one index, torchvision from another, or an upgrade of one of the
two), ``import torchvision`` fails with ``RuntimeError: operator torchvision::nms does not
exist``, deep inside a 50-line traceback. :func:`check_torchvision` and :func:`exit_if_mismatch`
turn that into one line that says which torchvision to install, and from which index.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from typing import NoReturn

__all__ = ["check_torchvision", "exit_if_mismatch", "is_mismatch", "matching_torchvision", "mismatch_message"]

WHEEL_INDEX = "https://download.pytorch.org/whl"  # + "/cpu", "/cu130", ...: PyTorch's own wheel indexes


def matching_torchvision(torch_version: str) -> str | None:
    """The torchvision release built for a torch release: 2.X.Y -> 0.(X+15).Y (2.14.1 -> 0.29.1,
    2.5.1 -> 0.20.1, 2.0.0 -> 0.15.0, PyTorch's pairing since 2.0); None for another form."""
    match = re.match(r"2\.(\d+)\.(\d+)", torch_version)
    return f"0.{int(match[1]) + 15}.{match[2]}" if match else None


def is_mismatch(exc: BaseException) -> bool:
    """Whether ``exc`` is what importing a torchvision built for another torch raises."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and "torchvision::" in text and "does not exist" in text


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def mismatch_message(exc: BaseException) -> str:
    """One line: what failed, the torchvision that fits the installed torch, the pip command from
    torch's own index (its local version: +cpu, +cu130; PyPI when it has none), and the CPU one."""
    torch_version = _version("torch") or "?"
    release, _, local = torch_version.partition("+")
    want = matching_torchvision(release)
    pin = f"'torchvision=={want}'" if want else "the torchvision listed for it at https://pytorch.org/get-started/previous-versions/"
    same_index = f" --index-url {WHEEL_INDEX}/{local}" if local else ""
    return (
        f"torchvision {_version('torchvision') or '?'} does not fit torch {torch_version} "
        f"(importing it failed: {exc}); "
        f"it was built for another torch, e.g. installed from another index. Install the one built for this torch: "
        f"pip install {pin}{same_index}; on a machine without an NVIDIA GPU, both from the CPU index: "
        f"pip install 'torch=={release}' {pin if want else 'torchvision'} --index-url {WHEEL_INDEX}/cpu"
    )


def check_torchvision() -> str | None:
    """Import torchvision (and so torch) where both are installed; the one-line message of
    :func:`mismatch_message` when it does not fit torch, else None. Other errors propagate."""
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("torchvision") is None:
        return None
    try:
        import torchvision  # noqa: F401
    except RuntimeError as exc:
        if is_mismatch(exc):
            return mismatch_message(exc)
        raise
    return None


def exit_if_mismatch(exc: RuntimeError) -> NoReturn:
    """``icpd``'s last resort (``icpd.cli.main``): a mismatch from any command becomes one
    ``error:`` line and exit 2; any other ``RuntimeError`` is raised again, traceback and all."""
    if not is_mismatch(exc):
        raise exc
    from icpd.commands.common import print_error

    print_error(mismatch_message(exc))
    raise SystemExit(2)

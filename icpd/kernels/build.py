"""Compile ``ndcg_prior.cu`` with nvcc: a shared library (C ABI + cubins) and pinned PTX.

* :func:`compile_kernel` runs one nvcc invocation with a ``-gencode`` per cubin arch in
  :data:`CUBIN_ARCHS` (T4 sm_75, A100 sm_80, RTX 30 sm_86, Jetson Orin sm_87, RTX 40/L4 sm_89,
  H100/H200 sm_90, B200 sm_100, Jetson Thor sm_110, RTX 50 sm_120; those this nvcc offers) plus
  PTX for the lowest arch the nvcc offers, so a future GPU can JIT it.
  Output: ``libicpd_ndcg_prior.so`` (the ``extern "C"`` launchers of ``plugin/ndcg_prior.h``,
  CUDA runtime linked statically) and the fatbin embedded in it.
* :func:`ptx_for` returns PTX text for one virtual arch with its ``.version`` pinned to
  :data:`PTX_ISA`; the TensorRT AOT plugin hands that to TensorRT.

Why pin the PTX ISA: nvcc stamps its own PTX ISA on what it emits (13.0 writes ``.version 9.0``)
and a driver refuses PTX newer than itself, even when every instruction in it is old. So
:func:`ptx_for` lowers ``.version`` to :data:`PTX_ISA` (7.4 = CUDA 11.4, the oldest driver on any
target here: JetPack 5) or to the minimum the target arch needs (sm_89/sm_90: 7.8), and then has
ptxas assemble the result: ptxas rejects any instruction the lowered ISA or target lacks.

Arch support depends on the nvcc: CUDA 13 dropped sm_72 (and compute_72), so asking nvcc >= 13 for
sm_72 is refused with :data:`XAVIER_ADVICE` (build for Xavier with JetPack 5's own nvcc, via
``plugin/CMakeLists.txt``), and the PTX target becomes compute_75. Other archs an older nvcc
lacks (sm_100+ before CUDA 12.8) are skipped and recorded in :attr:`KernelBuild.skipped`.

Outputs go under the caller's ``cache_dir`` in a folder named by a hash of the sources, flags
and nvcc version; nothing is written next to the sources.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

SOURCE = Path(__file__).with_name("ndcg_prior.cu")
HEADER = Path(__file__).parent / "plugin" / "ndcg_prior.h"
LIBRARY_NAME = "libicpd_ndcg_prior.so"

# Turing .. Blackwell; sm_87 = Jetson Orin, sm_110 = Jetson Thor. Not sm_72 (Xavier): see XAVIER_ADVICE.
CUBIN_ARCHS = ("sm_75", "sm_80", "sm_86", "sm_87", "sm_89", "sm_90", "sm_100", "sm_110", "sm_120")
XAVIER_ADVICE = (
    "sm_72 (Jetson Xavier) needs JetPack 5's nvcc (CUDA 11.4, <= 12): CUDA 13 dropped sm_72. Build the plugin "
    "on the Xavier with icpd/kernels/plugin/CMakeLists.txt (-DCMAKE_CUDA_ARCHITECTURES=72)"
)
PTX_ARCH_CANDIDATES = ("compute_72", "compute_75")  # lowest first: the portable PTX target
PTX_ISA = "7.4"  # CUDA 11.4 (JetPack 5); raised per arch by _MIN_PTX_ISA

# Lowest PTX ISA that can name each target (PTX ISA release notes).
_MIN_PTX_ISA = {72: "6.1", 75: "6.3", 80: "7.0", 86: "7.1", 87: "7.4", 89: "7.8", 90: "7.8", 100: "8.6", 110: "9.0",
                120: "8.7"}

NVCC_FLAGS = (
    "-std=c++17",
    "-O3",
    "-Werror",
    "all-warnings",
    "-Wno-deprecated-gpu-targets",  # nvcc 12 warns about sm_72; that warning is not about our code
    "-Xcompiler",
    "-Wall,-Wextra,-Werror,-fPIC",
)

# Warnings stay errors unless ICPD_NVCC_WERROR=0: a host compiler newer than the one CI uses (the
# lent GPU machine's, say) may warn inside CUDA's own headers. Read per build, part of the cache key.
WERROR_ENV = "ICPD_NVCC_WERROR"

_DEFAULT_CUDA_HOMES = ("/usr/local/cuda",)


def nvcc_flags(werror: bool | None = None) -> tuple[str, ...]:
    """:data:`NVCC_FLAGS`, without ``-Werror`` (device and host) when ``werror`` is False; ``None``
    reads ``$ICPD_NVCC_WERROR`` (``0`` drops it)."""
    if werror is None:
        werror = os.environ.get(WERROR_ENV, "1").strip() not in ("0", "false", "no")
    if werror:
        return NVCC_FLAGS
    flags = [f for f in NVCC_FLAGS if f not in ("-Werror", "all-warnings")]
    return tuple(f.replace(",-Werror", "") for f in flags)


class NvccNotFoundError(RuntimeError):
    """No nvcc on PATH, in $CUDA_HOME/bin or $CUDA_PATH/bin."""


class KernelBuildError(RuntimeError):
    """nvcc or ptxas failed; the message holds the command and its output."""


@dataclass(frozen=True)
class KernelBuild:
    """Result of :func:`compile_kernel`."""

    library: Path  # shared library with the extern "C" launchers and the fatbin below
    fatbin: Path  # the fatbin embedded in the library (cubins + PTX), for cupy/cuModuleLoad
    cubin_archs: tuple[str, ...]  # sm_XX cubins that were built
    ptx_arch: str  # compute_XX PTX embedded for JIT on newer GPUs
    skipped: dict[str, str] = field(default_factory=dict)  # arch -> why it was not built
    command: tuple[str, ...] = ()  # the nvcc command line
    nvcc_version: tuple[int, int] = (0, 0)  # (major, minor) of the nvcc used


def find_nvcc() -> Path:
    """Locate nvcc: ``PATH``, then ``$CUDA_HOME/bin``, ``$CUDA_PATH/bin``, ``/usr/local/cuda/bin``.

    Raises:
        NvccNotFoundError: with the places searched and what to do.
    """
    found = shutil.which("nvcc")
    if found:
        return Path(found)
    homes = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), *_DEFAULT_CUDA_HOMES]
    candidates = [Path(h) / "bin" / "nvcc" for h in homes if h]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    searched = ", ".join(str(c) for c in candidates) or "(no CUDA_HOME/CUDA_PATH set)"
    raise NvccNotFoundError(
        "nvcc (the CUDA compiler) was not found on PATH nor at " + searched + ". Install the CUDA "
        "toolkit and put its bin/ on PATH or set CUDA_HOME; the rank-prior kernel cannot be built "
        "without it (the PyTorch path icpd.model.priors.rank_prior needs no compiler)."
    )


def _run(cmd: Sequence[str], what: str) -> subprocess.CompletedProcess:
    result = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise KernelBuildError(
            f"{what} failed (exit {result.returncode}):\n  {' '.join(cmd)}\n{result.stdout}{result.stderr}"
        )
    return result


def nvcc_version(nvcc: Path | None = None) -> tuple[int, int]:
    """``(major, minor)`` of the CUDA release nvcc reports."""
    out = _run([str(nvcc or find_nvcc()), "--version"], "nvcc --version").stdout
    match = re.search(r"release (\d+)\.(\d+)", out)
    if not match:
        raise KernelBuildError(f"Could not read the CUDA release from nvcc --version:\n{out}")
    return int(match.group(1)), int(match.group(2))


def supported_codes(nvcc: Path | None = None) -> frozenset[str]:
    """The ``sm_XX`` and ``compute_XX`` names this nvcc accepts."""
    nvcc = nvcc or find_nvcc()
    codes = _run([str(nvcc), "--list-gpu-code"], "nvcc --list-gpu-code").stdout.split()
    virtual = _run([str(nvcc), "--list-gpu-arch"], "nvcc --list-gpu-arch").stdout.split()
    return frozenset(codes) | frozenset(virtual)


def default_ptx_arch(nvcc: Path | None = None) -> str:
    """The lowest of :data:`PTX_ARCH_CANDIDATES` this nvcc can emit."""
    codes = supported_codes(nvcc)
    for arch in PTX_ARCH_CANDIDATES:
        if arch in codes:
            return arch
    raise KernelBuildError(f"nvcc offers none of {PTX_ARCH_CANDIDATES} (it offers {sorted(codes)}).")


def _arch_number(arch: str | int) -> int:
    match = re.fullmatch(r"(?:sm_|compute_)?(\d+)", str(arch))
    if not match:
        raise ValueError(f"Architecture must look like 'sm_87', 'compute_87' or 87, got {arch!r}.")
    return int(match.group(1))


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def compile_kernel(
    cache_dir: str | os.PathLike,
    archs: Sequence[str] = CUBIN_ARCHS,
    *,
    strict: bool = False,
    source: Path = SOURCE,
    nvcc: Path | None = None,
) -> KernelBuild:
    """Build the shared library (one nvcc call), or reuse an identical earlier build.

    Args:
        cache_dir: folder for the outputs (created if missing).
        archs: ``sm_XX`` cubin targets.
        strict: raise instead of skipping archs this nvcc cannot target.
        source: the .cu file (tests pass a modified copy); it must sit next to ``plugin/``.
        nvcc: compiler to use; default :func:`find_nvcc`.

    Raises:
        NvccNotFoundError, KernelBuildError.
    """
    nvcc = nvcc or find_nvcc()
    version = nvcc_version(nvcc)
    if version >= (13, 0) and any(_arch_number(a) == 72 for a in archs):
        raise KernelBuildError(f"nvcc {version[0]}.{version[1]} cannot build for {XAVIER_ADVICE}.")
    codes = supported_codes(nvcc)
    skipped = {
        a: f"nvcc {version[0]}.{version[1]} cannot target {a}; build with a CUDA toolkit that can"
        for a in archs
        if a not in codes
    }
    if skipped and strict:
        raise KernelBuildError("; ".join(skipped.values()))
    built = tuple(a for a in archs if a in codes)
    ptx_arch = default_ptx_arch(nvcc)
    gencode = [f"-gencode=arch=compute_{_arch_number(a)},code={a}" for a in built]
    gencode.append(f"-gencode=arch={ptx_arch},code={ptx_arch}")

    flags = nvcc_flags()
    key = _digest(source.read_bytes(), HEADER.read_bytes(), *flags, *gencode, str(version))
    out_dir = Path(cache_dir) / f"ndcg_prior-{key}"
    library = out_dir / LIBRARY_NAME
    fatbin = out_dir / "keep" / f"{source.stem}.fatbin"
    cmd = (str(nvcc), *flags, *gencode, "-shared", "--keep", "--keep-dir")
    if not (library.is_file() and fatbin.is_file()):
        from icpd.io.outputs import claim_output

        # one nvcc per key: a concurrent build of the same kernel (another process or thread) is waited for
        with claim_output(out_dir, "kernel build", folder=True, renamed=True, wait=True):
            if not (library.is_file() and fatbin.is_file()):  # not built by the run waited for
                _nvcc_into(out_dir, cmd, source, fatbin.name)
    return KernelBuild(
        library=library,
        fatbin=fatbin,
        cubin_archs=built,
        ptx_arch=ptx_arch,
        skipped=skipped,
        command=(*cmd, "<keep-dir>", str(source), "-o", str(library)),
        nvcc_version=version,
    )


def _nvcc_into(out_dir: Path, cmd: Sequence[str], source: Path, fatbin_name: str) -> None:
    """Run nvcc into a temporary folder beside ``out_dir`` and rename it into place (never half-built)."""
    tmp = Path(tempfile.mkdtemp(prefix="ndcg_prior-", dir=out_dir.parent))
    try:
        (tmp / "keep").mkdir()
        _run([*cmd, str(tmp / "keep"), str(source), "-o", str(tmp / LIBRARY_NAME)], "nvcc")
        if not (tmp / "keep" / fatbin_name).is_file():
            raise KernelBuildError(f"nvcc --keep left no {fatbin_name} in {tmp / 'keep'}.")
        if out_dir.is_dir():  # an incomplete folder (made by hand, or by an older icpd): replaced
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _pin_ptx_isa(ptx: str, isa: str) -> str:
    match = re.search(r"^\.version (\d+)\.(\d+)\s*$", ptx, flags=re.MULTILINE)
    if not match:
        raise KernelBuildError("nvcc's PTX has no .version directive.")
    current = (int(match.group(1)), int(match.group(2)))
    wanted = tuple(int(x) for x in isa.split("."))
    if wanted >= current:
        return ptx
    return ptx[: match.start()] + f".version {isa}" + ptx[match.end() :]


def ptx_for(
    arch: str | int,
    cache_dir: str | os.PathLike,
    *,
    isa: str = PTX_ISA,
    source: Path = SOURCE,
    nvcc: Path | None = None,
) -> str:
    """PTX text of the kernel for virtual arch ``arch`` with a pinned ``.version``.

    The ISA written is ``max(isa, minimum for arch)`` (never above what nvcc emitted); ptxas
    then assembles the file for that arch, so PTX the lowered ISA cannot express is an error
    here and not on the target. The result holds both entries, ``icpd_ndcg_prior_kernel_f32``
    and ``icpd_ndcg_prior_kernel_f16``.

    Args:
        arch: ``"compute_75"``, ``"sm_75"`` or ``75``.
        cache_dir: folder for the .ptx file (created if missing).
        isa: lowest PTX ISA to write, ``"major.minor"``.

    Raises:
        NvccNotFoundError, KernelBuildError (including an arch this nvcc cannot target).
    """
    nvcc = nvcc or find_nvcc()
    number = _arch_number(arch)
    virtual = f"compute_{number}"
    if virtual not in supported_codes(nvcc):
        major, minor = nvcc_version(nvcc)
        raise KernelBuildError(
            f"nvcc {major}.{minor} cannot emit PTX for {virtual}. CUDA 13 dropped sm_72 and older: "
            f"use {default_ptx_arch(nvcc)} (runs on every newer GPU) or a CUDA <= 12 toolkit."
        )
    floor = _MIN_PTX_ISA.get(number, isa)
    target_isa = max(isa, floor, key=lambda v: tuple(int(x) for x in v.split(".")))
    version = nvcc_version(nvcc)
    flags = nvcc_flags()
    key = _digest(source.read_bytes(), HEADER.read_bytes(), *flags, virtual, target_isa, str(version))
    out = Path(cache_dir) / f"ndcg_prior-{virtual}-isa{target_isa}-{key}.ptx"
    if out.is_file():
        return out.read_text()
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        raw = Path(tmp) / "raw.ptx"
        _run([str(nvcc), *flags, f"-arch={virtual}", "-ptx", str(source), "-o", str(raw)], "nvcc -ptx")
        ptx = _pin_ptx_isa(raw.read_text(), target_isa)
        pinned = Path(tmp) / "pinned.ptx"
        pinned.write_text(ptx)
        ptxas = nvcc.with_name("ptxas")
        _run([str(ptxas), f"-arch=sm_{number}", str(pinned), "-o", str(Path(tmp) / "check.cubin")], "ptxas")
        pinned.replace(out)
    return ptx


def fatbin_entries(fatbin: bytes) -> list[tuple[str, int]]:
    """List ``(kind, arch)`` of a CUDA fatbin's entries: kind ``"elf"`` (cubin) or ``"ptx"``.

    Reads the container layout nvcc writes (magic 0xBA55ED50; per entry: u16 kind, u16, u32
    header size, u64 payload size, ..., u32 arch at byte 28); used to check which archs a build
    holds without cuobjdump.
    """
    magic, _, header_size, total = struct.unpack_from("<IHHQ", fatbin, 0)
    if magic != 0xBA55ED50:
        raise ValueError(f"Not a CUDA fatbin (magic {magic:#x}).")
    entries = []
    offset, end = header_size, header_size + total
    while offset < end:
        kind, _, entry_header, size = struct.unpack_from("<HHIQ", fatbin, offset)
        (arch,) = struct.unpack_from("<I", fatbin, offset + 28)
        entries.append(({1: "ptx", 2: "elf"}.get(kind, f"kind{kind}"), arch))
        offset += entry_header + size
    return entries

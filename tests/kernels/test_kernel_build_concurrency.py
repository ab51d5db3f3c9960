"""Concurrent builds of the same kernel into one cache (issue 20, the class of item 1): one nvcc runs, the
other build waits for it and returns the same library; a failed build leaves no temporary folder.

nvcc is a stand-in script (these tests are about the cache, not the compiler): it answers the
version and arch queries like CUDA 12.4, and a compile sleeps, counts itself and writes the library
and the kept fatbin.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from icpd.io.locks import lock_path
from icpd.kernels import build

FAKE_NVCC = r"""#!/bin/sh
case "$1" in
  --version) echo "Cuda compilation tools, release 12.4, V12.4.131"; exit 0;;
  --list-gpu-code) echo "sm_75 sm_80 sm_86 sm_87 sm_89 sm_90"; exit 0;;
  --list-gpu-arch) echo "compute_75 compute_80 compute_86 compute_87 compute_89 compute_90"; exit 0;;
esac
[ -n "$FAIL" ] && { echo "error: the compile failed" >&2; exit 1; }
echo x >> "$COUNT"
sleep 1
keep=""; out=""; prev=""
for a in "$@"; do
  [ "$prev" = "--keep-dir" ] && keep="$a"
  [ "$prev" = "-o" ] && out="$a"
  prev="$a"
done
printf 'lib' > "$out"
printf 'fatbin' > "$keep/ndcg_prior.fatbin"
"""


@pytest.fixture
def fake_nvcc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    nvcc = tmp_path / "bin" / "nvcc"
    nvcc.parent.mkdir()
    nvcc.write_text(FAKE_NVCC)
    nvcc.chmod(0o755)
    monkeypatch.setenv("COUNT", str(tmp_path / "count"))
    return nvcc


def test_two_concurrent_builds_of_one_kernel_run_nvcc_once(fake_nvcc, tmp_path):
    """Guards issue 20: both builds ran nvcc into the cache and the loser's rename failure was swallowed."""
    cache = tmp_path / "cache"
    results: list[build.KernelBuild] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            results.append(build.compile_kernel(cache, archs=("sm_80",), nvcc=fake_nvcc))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert (tmp_path / "count").read_text() == "x\n"  # one compile; the other build waited and reused it
    assert len(results) == 2 and results[0].library == results[1].library
    assert results[0].library.read_bytes() == b"lib" and results[0].fatbin.read_bytes() == b"fatbin"
    assert sorted(p.name for p in cache.iterdir()) == [results[0].library.parent.name]  # no temporary or lock left
    assert not lock_path(results[0].library.parent).exists()


def test_a_failed_build_leaves_no_temporary_folder(fake_nvcc, tmp_path, monkeypatch):
    monkeypatch.setenv("FAIL", "1")
    cache = tmp_path / "cache"
    with pytest.raises(build.KernelBuildError, match="the compile failed"):
        build.compile_kernel(cache, archs=("sm_80",), nvcc=fake_nvcc)
    assert list(cache.iterdir()) == []

"""The bench export cache is shared by design (issue 20, the class of item 1): a run that finds another
run exporting the same model into it waits for that run (one note naming its pid) and then reuses its
export, instead of exporting a second time into the same folder (or failing on its lock)."""

from __future__ import annotations

import shutil
import subprocess
import sys

from icpd.benchmarks.latency import prepare_model
from icpd.io.locks import lock_path
from icpd.model.checkpoint import model_fingerprint, seeded_model

# the other run: holds the cache entry's lock while "exporting" (an export made beforehand, renamed into
# place after a while, as atomic_dir does at the end of a real export)
HOLDER = """
import os, sys, time
from icpd.io.locks import exclusive_lock
with exclusive_lock(sys.argv[1], "bench"):
    print("held", flush=True)
    time.sleep(1.5)
    os.rename(sys.argv[2], sys.argv[1])
"""


def test_a_second_bench_waits_for_the_export_in_progress_and_reuses_it(tmp_path, tiny_model_dir):
    cache = tmp_path / "bench"
    path = cache / f"tiny-{model_fingerprint(seeded_model('tiny', 0))[:12]}"
    staged = tmp_path / "staged"
    shutil.copytree(tiny_model_dir, staged)  # the same weights (seeded tiny), exported by this icpd
    first = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), str(staged)], stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "held"
        notes: list[str] = []
        info = prepare_model("tiny", cache_dir=cache, on_step=notes.append)
    finally:
        first.wait(timeout=300)
    assert first.returncode == 0
    waits = [n for n in notes if "waiting for it to finish" in n]
    assert len(waits) == 1 and waits[0].startswith(
        f"{path} is being written by another `icpd bench` run (pid {first.pid}, started "), notes
    assert not any(n.startswith("exporting to") for n in notes), notes  # reused, not exported again
    assert info.path == path and info.exported_s is None
    assert not lock_path(path).exists()
    assert sorted(p.name for p in cache.iterdir()) == [path.name]

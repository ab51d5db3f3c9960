"""`icpd cache-support`: class-id label maps (--label/--class-id), --bands, --force, an output
checked before any work, and conversion notes on the terminal (issue 12)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from icpd.artifacts.support_cache import SupportSet
from icpd.cli import app
from icpd.model.text import ClassEmbeddings, save_class_embeddings
from tests.io.readonly import read_only_dir


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cs")
    emb = np.random.default_rng(1).standard_normal((15, 32)).astype(np.float32)
    save_class_embeddings(d / "e.safetensors", ClassEmbeddings(emb, tuple(f"c{i}" for i in range(15))))
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    cv2.imwrite(str(d / "s.png"), rgb[:, :, ::-1])
    labels = np.zeros((128, 128), np.uint8)
    labels[20:60, 30:70] = 3
    labels[80:100, 80:120] = 5
    cv2.imwrite(str(d / "labels.png"), labels)
    cv2.imwrite(str(d / "m3.png"), (labels == 3).astype(np.uint8) * 255)
    rgbn = np.concatenate([rgb, rng.integers(0, 256, (128, 128, 1), dtype=np.uint8)], axis=-1)
    cv2.imwrite(str(d / "rgbn.tif"), rgbn[:, :, [2, 1, 0, 3]])  # file order R, G, B, NIR
    cv2.imwrite(str(d / "gray.png"), rgb[:, :, 0])
    return d


def _run(tiny_model_dir, files, out, *extra):
    args = ["cache-support", "--model", str(tiny_model_dir), "--class-name", "c3",
            "--class-embeddings", str(files / "e.safetensors"), "--out", str(out), "-q", *extra]
    return CliRunner().invoke(app, args)


def test_label_map_with_class_id_equals_the_binary_mask(tiny_model_dir, files, tmp_path):
    """Guards issue 12 (section 5): a class-id label map needed a conversion script."""
    res = _run(tiny_model_dir, files, tmp_path / "m.support", "--image", str(files / "s.png"),
               "--mask", str(files / "m3.png"))
    assert res.exit_code == 0, res.output
    res = _run(tiny_model_dir, files, tmp_path / "l.support", "--image", str(files / "s.png"),
               "--label", str(files / "labels.png"), "--class-id", "3")
    assert res.exit_code == 0, res.output
    by_mask, by_label = SupportSet.load(tmp_path / "m.support"), SupportSet.load(tmp_path / "l.support")
    assert by_mask.tensors.keys() == by_label.tensors.keys()
    for k in by_mask.tensors:
        np.testing.assert_array_equal(by_mask.tensors[k], by_label.tensors[k])
    assert by_label.meta["class_id"] == 3
    res = _run(tiny_model_dir, files, tmp_path / "x.support", "--image", str(files / "s.png"),
               "--label", str(files / "labels.png"), "--class-id", "7")
    assert res.exit_code == 2 and "class id 7 does not occur; the ids present are {0, 3, 5}" in _flat(res.output)
    res = _run(tiny_model_dir, files, tmp_path / "x.support", "--image", str(files / "s.png"),
               "--label", str(files / "labels.png"))
    assert res.exit_code == 2 and "--label needs --class-id" in res.output
    assert not (tmp_path / "x.support").exists()


def test_existing_cache_is_kept_without_force(tiny_model_dir, files, tmp_path):
    """Guards issue 12: cache-support silently overwrote an existing cache (of another class)."""
    out = tmp_path / "c.support"
    args = ("--image", str(files / "s.png"), "--mask", str(files / "m3.png"))
    assert _run(tiny_model_dir, files, out, *args).exit_code == 0
    before = out.read_bytes()
    res = _run(tiny_model_dir, files, out, *args)
    assert res.exit_code == 2 and "exists (a support cache of class 'c3'); pass --force" in _flat(res.output)
    assert out.read_bytes() == before
    assert _run(tiny_model_dir, files, out, *args, "--force").exit_code == 0


def test_unwritable_output_is_refused_before_any_work(files, tmp_path):
    """Guards issue 12: a read-only folder gave two chained tracebacks after the encoding.
    The model dir is empty (unloadable): the writability error comes first, so no work ran."""
    (tmp_path / "ro").mkdir()
    (tmp_path / "empty_model").mkdir()
    with read_only_dir(tmp_path / "ro"):
        res = _run(tmp_path / "empty_model", files, tmp_path / "ro" / "c.support",
                   "--image", str(files / "s.png"), "--mask", str(files / "m3.png"))
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert _flat(res.output).startswith(f"error: {tmp_path / 'ro'}: ") and "permission" in res.output.lower()


def test_bands_and_conversion_notes(tiny_model_dir, files, tmp_path):
    """Guards issue 12: 4-band TIFFs were refused with "Pass bands=(R, G, B)", which no command accepted,
    and conversion notes reached only summary.json."""
    args = ("--mask", str(files / "m3.png"), "--image")
    res = _run(tiny_model_dir, files, tmp_path / "a.support", *args, str(files / "rgbn.tif"))
    assert res.exit_code == 2 and "--bands R,G,B" in _flat(res.output)
    res = _run(tiny_model_dir, files, tmp_path / "a.support", *args, str(files / "rgbn.tif"), "--bands", "1,2,3")
    assert res.exit_code == 0, res.output
    assert "note: " in res.output and "used bands (1, 2, 3) of 4" in _flat(res.output)
    res = _run(tiny_model_dir, files, tmp_path / "b.support", *args, str(files / "s.png"))
    ref = SupportSet.load(tmp_path / "b.support")
    for k, v in SupportSet.load(tmp_path / "a.support").tensors.items():
        np.testing.assert_array_equal(v, ref.tensors[k])  # bands 1,2,3 of the RGBN file are the RGB image
    res = _run(tiny_model_dir, files, tmp_path / "g.support", *args, str(files / "gray.png"))
    assert res.exit_code == 0 and "note: " in res.output and "grayscale: replicated" in _flat(res.output)


# ------------------------------------------------------------------------ one run per --out (issue 20)


def test_concurrent_runs_to_one_file_exactly_one_writes(tiny_model_dir, files, tmp_path):
    """Guards issue 20: three concurrent runs to one --out without --force all printed "wrote" (the
    last writer won). Real processes, as a user starts them: one writes, the others exit 2 with one
    line (the lock's holder, or, if one starts after the writer finished, the existing file)."""
    import subprocess
    import sys

    out = tmp_path / "c.support"
    args = [sys.executable, "-m", "icpd.cli", "cache-support", "--model", str(tiny_model_dir), "--class-name", "c3",
            "--class-embeddings", str(files / "e.safetensors"), "--out", str(out), "--image", str(files / "s.png"),
            "--mask", str(files / "m3.png"), "-q"]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    wrote = [r for r in results if r[0] == 0]
    assert len(wrote) == 1 and wrote[0][1].startswith(f"wrote {out}"), results
    for code, stdout, stderr in results:
        if code == 0:
            continue
        line = _flat(stderr)
        assert code == 2 and stdout == "" and "Traceback" not in stderr and line.startswith("error: "), stderr
        assert (f"{out} is being written by another `icpd cache-support` run (pid " in line
                or f"--out {out} exists (a support cache of class 'c3'); pass --force" in line), line
    assert SupportSet.load(out).class_name == "c3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.support"]  # no lock, no temporaries left


@pytest.mark.parametrize("force", [False, True])
def test_a_run_in_progress_refuses_the_next_at_once(files, tmp_path, force):
    """A second run, --force or not, is refused before any work: the model dir here cannot be loaded,
    so the lock's message (naming the holder's pid) shows nothing else ran."""
    import os

    from icpd.io.locks import exclusive_lock

    (tmp_path / "empty_model").mkdir()
    out = tmp_path / "c.support"
    with exclusive_lock(out, "cache-support"):
        res = _run(tmp_path / "empty_model", files, out, "--image", str(files / "s.png"),
                   "--mask", str(files / "m3.png"), *(["--force"] if force else []))
    assert res.exit_code == 2, res.output
    assert _flat(res.output).startswith(f"error: {out} is being written by another `icpd cache-support` run "
                                        f"(pid {os.getpid()} on ")
    assert not out.exists()


def test_a_file_made_meanwhile_is_not_replaced_without_force(tiny_model_dir, files, tmp_path, monkeypatch):
    """Without --force the finished cache is linked into place: a file another program created at
    --out while the supports were encoded is kept, and the run says so (exit 2)."""
    import safetensors.numpy

    out = tmp_path / "c.support"
    real = safetensors.numpy.save_file

    def save_while_another_writes(tensors, filename, metadata=None):
        real(tensors, filename, metadata=metadata)
        out.write_bytes(b"made by someone else")  # between the temporary file and its placement

    monkeypatch.setattr(safetensors.numpy, "save_file", save_while_another_writes)
    res = _run(tiny_model_dir, files, out, "--image", str(files / "s.png"), "--mask", str(files / "m3.png"))
    assert res.exit_code == 2 and "wrote" not in res.output
    assert _flat(res.output).startswith(f"error: --out {out}: created by another program while the supports were "
                                        "encoded; it was left as it is")
    assert out.read_bytes() == b"made by someone else"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.support"]  # no lock, no temporaries left
    monkeypatch.setattr(safetensors.numpy, "save_file", real)
    res = _run(tiny_model_dir, files, out, "--image", str(files / "s.png"), "--mask", str(files / "m3.png"), "--force")
    assert res.exit_code == 0 and SupportSet.load(out).class_name == "c3"

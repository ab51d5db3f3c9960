"""What ``icpd bench`` will cost, said before it starts: time, peak memory, and the disk its
export takes (and where), from runs measured with the default options.

The paper network with no arguments took 11 min, peaked at 5.1 GiB RSS and wrote 2.5 GB to
``~/.cache/icpd/bench`` on a loaded 2-core machine without a word (issue 20). :func:`plan_run`
looks at the cache and the free disk there without building anything; :meth:`Plan.lines` are
what the command prints on stderr, :meth:`Plan.refusal` the one line when the disk is too small.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from icpd.errors import ParamError, arg

__all__ = ["MEASURED", "Figures", "Plan", "Run", "human_bytes", "plan_run"]

GIB = 1024**3


@dataclass(frozen=True)
class Run:
    """One measured wall time of ``icpd bench`` and the conditions it was measured under."""

    wall_s: float  # seconds, from the command's start to its last line
    conditions: str  # machine, load, whether the export was included, where the figure comes from


@dataclass(frozen=True)
class Figures:
    """Measured costs of ``icpd bench`` (default options) for one preset."""

    export_bytes: int  # the exported model dir written into the cache, once (reused afterwards)
    peak_rss_bytes: int  # peak resident memory of the whole run, the export included
    runs: tuple[Run, ...]  # wall times, each with its conditions
    options: str  # the command the figures are for


# key: (preset, quick). Sizes and memory barely depend on the machine; the times do, a lot.
MEASURED: dict[tuple[str, bool], Figures] = {
    ("paper", False): Figures(
        # encoder.onnx.data 1.31 GB + model.safetensors 1.32 GB (issue 20; `du -sh` says 2.5G, i.e. GiB)
        export_bytes=2_630_000_000,
        peak_rss_bytes=int(5.1 * GIB),  # issue 20, loaded 2-core VM: the torch backend and the export
        runs=(
            Run(210.0, "a quiet 2-core x86 VM (the README's figure, 2026-11; export reuse not recorded)"),
            Run(660.0, "a 2-core x86 VM loaded by other jobs, first run, export included (issue 20, 2026-12)"),
        ),
        options="icpd bench (ort-cpu and torch-cpu, 5 rounds)",
    ),
    ("tiny", True): Figures(
        export_bytes=16_863_295,  # `du -sb` of the cache after the run
        peak_rss_bytes=1_191_260 * 1024,  # /usr/bin/time -v: 1.14 GiB (torch, ONNX Runtime, the export)
        runs=(
            Run(275.0, "a 2-core x86 VM at load 8 (8 jobs sharing it), first run, export 133 s included "
                       "(2026-12-07)"),
            Run(219.0, "the same VM at load 11, export reused (2026-12-07)"),
        ),
        options="icpd bench --quick (ort-cpu and torch-cpu)",
    ),
}


def human_bytes(n: float) -> str:
    """1234567 -> '1.2 MB', 2.63e9 -> '2.6 GB' (decimal units, as disks are sold and `df -H` shows)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _free_bytes(path: Path) -> tuple[Path, int]:
    """Free bytes on the file system that holds ``path`` (its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe, shutil.disk_usage(probe).free


@dataclass(frozen=True)
class Plan:
    """What a run will cost, as far as is known before it starts."""

    preset: str
    quick: bool
    figures: Figures | None  # None: no measured figures for this preset / mode
    cache_dir: Path  # where an export goes
    exports: bool  # whether the run may export (no --model)
    existing: tuple[Path, ...]  # earlier exports of this preset in the cache (reused when their weights match)
    free_bytes: int  # free on the cache's file system
    int8: bool  # --precision with int8: an INT8 dir is added to the cache (not in the figures)

    @property
    def needs_bytes(self) -> int:
        """Disk the export needs (0 when nothing is exported or an earlier export is there), with a
        10 % margin for the temporary files it writes before renaming."""
        if not self.exports or self.existing or self.figures is None:
            return 0
        return int(self.figures.export_bytes * 1.1)

    def refusal(self) -> ParamError | None:
        """The error to raise (or print: ``icpd bench`` shows it with its flags) when the cache's disk is
        too small for the export, else None."""
        if self.needs_bytes <= self.free_bytes:
            return None
        return ParamError(f"{arg('cache_dir', self.cache_dir)}: the {self.preset} export needs about "
                          f"{human_bytes(self.needs_bytes)}, only {human_bytes(self.free_bytes)} free there; free "
                          f"some space, pass {arg('cache_dir')} on a larger disk, or {arg('quick', True)} (the tiny "
                          "preset, about 17 MB)")

    def lines(self) -> list[str]:
        """What ``icpd bench`` prints on stderr before any work."""
        f = self.figures
        what = f"icpd bench: preset {self.preset}{' (--quick)' if self.quick else ''}"
        if f is None:
            measured = ", ".join(p + (" --quick" if q else "") for p, q in MEASURED)
            return [f"{what}: no measured time, memory or disk figures for it (measured: {measured})"]
        times = "; ".join(f"{_minutes(r.wall_s)} on {r.conditions}" for r in f.runs)
        out = [f"{what}. Measured for `{f.options}`:",
               f"  time: {times}",
               f"  peak memory: {f.peak_rss_bytes / GIB:.1f} GiB RSS"]
        if not self.exports:
            out.append("  disk: nothing written (--model: the model dir is timed as is; "
                       "the times above include an export)")
        elif self.existing:
            listed = ", ".join(p.name for p in self.existing[:2])
            out.append(f"  disk: an earlier export is in {self.cache_dir} ({listed}); reused when its weights and "
                       f"icpd version match, else about {human_bytes(f.export_bytes)} more")
        else:
            out.append(f"  disk: about {human_bytes(f.export_bytes)} written once to {self.cache_dir}/{self.preset}-"
                       f"<fingerprint> ({human_bytes(self.free_bytes)} free there); later runs reuse it")
        if self.int8:
            out.append("  --precision int8 adds an INT8 model dir beside it (not in these figures)")
        return out


def _model_dir_preset(model_dir: Path) -> str | None:
    """The preset name in ``model_dir/model.json``, or None where it cannot be read (the run
    itself then says what is wrong with the dir)."""
    import json

    try:
        return str(json.loads((model_dir / "model.json").read_text(encoding="utf-8"))["preset"]["name"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def plan_run(preset: str | None, quick: bool, model_dir: Path | None, checkpoint: Path | None,
             cache_dir: Path | None, precisions: tuple[str, ...] = ()) -> Plan:
    """The :class:`Plan` of ``icpd bench`` with these options, without building or loading anything.

    ``preset`` None means what the command builds: tiny with ``quick`` (and no checkpoint), else paper.
    """
    from icpd.benchmarks.subjects import default_cache_dir

    name = preset or ("tiny" if quick and checkpoint is None else "paper")
    if model_dir is not None and preset is None:
        name = _model_dir_preset(Path(model_dir)) or "of the model dir"
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    existing = (tuple(sorted(p for p in cache.glob(f"{name}-*") if (p / "model.json").is_file()))
                if cache.is_dir() else ())
    _, free = _free_bytes(cache)
    return Plan(preset=name, quick=quick, figures=MEASURED.get((name, quick)), cache_dir=cache,
                exports=model_dir is None, existing=tuple(p for p in existing if not p.name.endswith("-int8")),
                free_bytes=free, int8="int8" in precisions)

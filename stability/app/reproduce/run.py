"""The driver of `stability reproduce`: run the selected parts, resume finished ones, time them,
and write results.json, report.md and report.html.

Each part writes ``DIR/parts/<part>/sections.json`` when it ends (atomically), with its times in
``DIR/parts/<part>/seconds.json``; a rerun into the same folder loads both instead of running the
part again. ``DIR/parts/size.json`` records the size and seed of the folder's reproduction, so a
rerun with another size or seed is refused before anything is written (its engines' run folders
would hold a different run).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from stability.app.reproduce.deep import part_deep
from stability.app.reproduce.gaussian import part_gaussian
from stability.app.reproduce.report import html_page, markdown
from stability.app.reproduce.section import EngineClock, Section
from stability.app.reproduce.sizes import SIZES, size_named
from stability.app.reproduce.theory import part_theory
from stability.app.reproduce.twod import part_2d
from stability.app.threads import one_thread
from stability.errors import UsageError
from stability.runs.runfolder import atomic_write_text

#: The parts of the report, in the order they run and appear.
PARTS = ("theory", "gaussian", "2d", "deep")
#: Per part, its function ``(out, sizes, seed, clock) -> list[Section]``.
PART_FUNCS: dict[str, Callable] = {
    "theory": part_theory,
    "gaussian": part_gaussian,
    "2d": part_2d,
    "deep": part_deep,
}
#: Rough share of the run time per part at --quick (CPU seconds measured under load: theory
#: 37, Gaussian 6, 2D about 45, deep about 240), for the progress bar's estimate.
WEIGHTS = {"theory": 1.0, "gaussian": 0.2, "2d": 1.2, "deep": 6.5}
#: The extra a part needs (an importable module); without it the part is skipped and listed.
NEEDS = {"2d": "torchcfm", "deep": "torch"}
#: The parts that train networks, run with one torch and numba thread (see `threads`).
ONE_THREAD = ("2d", "deep")


def reproduce(
    out: str | Path,
    size: str = "quick",
    only: list[str] | None = None,
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """Run the selected parts (resuming finished ones) and write the report.

    Parameters
    ----------
    out : str or Path
        The report folder.
    size : str
        One of `SIZES` ("tiny", "quick", "full"; see `stability.app.reproduce.sizes`).
    only : list of str, optional
        Parts to run, from `PARTS` (default all); parts whose extra is not installed are skipped.
    seed : int
        Seed of every experiment.
    progress : bool
        A progress bar on stderr.

    Returns
    -------
    dict
        The content of results.json: ``meta`` (size, seed, seconds, version, parts, skipped,
        part_seconds: per part the seconds spent in engines and in total, engine_seconds,
        overhead_fraction) and ``sections`` (one dict per `Section`).
    """
    from stability import __version__

    start = time.perf_counter()
    sizes = size_named(size)
    only = select_parts(only)
    out = Path(out)
    check_writable(out)
    check_same_run(out, size, seed)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "parts" / "size.json", json.dumps(size_record(size, seed), indent=1))
    sections, part_seconds = run_parts(only, out, sizes, seed, progress)
    meta = dict(
        size=size,
        seed=seed,
        seconds=time.perf_counter() - start,
        version=__version__,
        parts=only,
        skipped=[p for p in PARTS if p not in only],
        **timing(part_seconds, time.perf_counter() - start),
    )
    return write_report(out, sections, meta)


def run_parts(
    parts: list[str], out: Path, sizes, seed: int, progress: bool
) -> tuple[list[Section], dict]:
    """Run (or resume) `parts` in order: their sections and, per part, `run_part`'s times."""
    bar = progress_bar(parts) if progress else None
    sections: list[Section] = []
    part_seconds = {}
    for part in parts:
        if bar:
            bar.set_postfix_str(part)
        new, part_seconds[part] = run_part(part, out, sizes, seed)
        sections += new
        if bar:
            bar.update(WEIGHTS[part])
    if bar:
        bar.close()
    return sections, part_seconds


def write_report(out: Path, sections: list[Section], meta: dict) -> dict:
    """Write results.json, report.md and report.html (atomically); return results.json's dict."""
    results = {"meta": meta, "sections": [s.to_json() for s in sections]}
    atomic_write_text(out / "results.json", json.dumps(results, indent=1))
    atomic_write_text(out / "report.md", markdown(sections, meta, out, PARTS))
    atomic_write_text(out / "report.html", html_page(sections, meta))
    return results


def select_parts(only: list[str] | None) -> list[str]:
    """The parts to run: `only` (default all) validated, minus those whose extra is missing."""
    import importlib.util

    only = list(only or PARTS)
    for part in only:
        if part not in PARTS:
            raise UsageError(f"unknown part {part!r}; choose from {', '.join(PARTS)}")
    return [p for p in only if p not in NEEDS or importlib.util.find_spec(NEEDS[p]) is not None]


def run_part(part: str, out: Path, sizes, seed: int) -> tuple[list[Section], dict]:
    """One part's sections and times: loaded from its folder when a previous run finished it,
    computed (and written) otherwise.

    Returns
    -------
    sections : list of Section
    seconds : dict
        ``engine`` (wall seconds inside engine calls), ``total`` (wall seconds of the part),
        ``cpu`` (CPU seconds of this process and of the worker processes it waited for, during
        the part) and ``resumed`` (loaded from an earlier run: its recorded times, None where
        that run did not record them).
    """
    folder = out / "parts" / part
    cache, clock_file = folder / "sections.json", folder / "seconds.json"
    if cache.exists():
        sections = [Section(**d) for d in json.loads(cache.read_text())]
        seconds = json.loads(clock_file.read_text()) if clock_file.exists() else {}
        return sections, {"engine": None, "total": None, "cpu": None, **seconds, "resumed": True}
    clock = EngineClock()
    start, cpu = time.perf_counter(), cpu_seconds()
    with one_thread() if part in ONE_THREAD else contextlib.nullcontext():
        sections = PART_FUNCS[part](out, sizes, seed, clock)
    seconds = {
        "engine": clock.seconds,
        "total": time.perf_counter() - start,
        "cpu": cpu_seconds() - cpu,
    }
    atomic_write_text(clock_file, json.dumps(seconds))
    atomic_write_text(cache, json.dumps([s.to_json() for s in sections], indent=1))
    return sections, {**seconds, "resumed": False}


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its children waited for so far."""
    import resource

    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timing(part_seconds: dict, wall: float) -> dict:
    """results.json's timing fields.

    ``part_seconds`` per part; ``engine_seconds`` their engine times summed; ``overhead_seconds``
    everything else: each part's time outside its engines plus this run's time outside the parts
    (imports, report); ``overhead_fraction`` = overhead / engine. Parts resumed from an earlier
    run count with the times recorded when they ran (None when that run did not record them).
    """
    timed = {p: t for p, t in part_seconds.items() if t["engine"] is not None}
    engine = sum(t["engine"] for t in timed.values())
    fresh_total = sum(t["total"] for t in part_seconds.values() if not t["resumed"])
    overhead = sum(t["total"] - t["engine"] for t in timed.values()) + (wall - fresh_total)
    return dict(
        part_seconds=part_seconds,
        engine_seconds=engine,
        overhead_seconds=overhead,
        overhead_fraction=overhead / engine if engine > 0 else None,
    )


def size_record(size: str, seed: int) -> dict:
    """What parts/size.json holds: the size's name, the seed and every size field."""
    return {"size": size, "seed": seed, "sizes": dataclasses.asdict(size_named(size))}


def check_same_run(out: Path, size: str, seed: int) -> None:
    """UsageError if `out` holds a reproduction at another size or seed, or with other size
    fields (its finished parts would be reused as if they had this run's sizes)."""
    path = out / "parts" / "size.json"
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    if old != json.loads(json.dumps(size_record(size, seed))):
        raise UsageError(
            f"{str(out)!r} holds a reproduction at size {old.get('size')}, seed "
            f"{old.get('seed')} (or this version's sizes differ from its); use another --out"
        )


def check_writable(out: Path) -> None:
    """UsageError if `out` is a file or cannot be created or written."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} exists and is not a folder")
    parent = out if out.exists() else next((q for q in out.parents if q.exists()), Path("."))
    if not os.access(parent, os.W_OK):
        raise UsageError(f"--out {str(out)!r} is not writable")


def progress_bar(parts: list[str]):
    """A tqdm bar on stderr weighted by the parts' rough shares of the run time."""
    from tqdm import tqdm

    return tqdm(
        total=sum(WEIGHTS[p] for p in parts),
        desc="reproduce",
        unit="part",
        bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} [{elapsed}<{remaining}]",
    )


__all__ = ["PARTS", "SIZES", "reproduce"]

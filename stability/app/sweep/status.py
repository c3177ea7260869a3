"""OUT/sweep.json: the sweep's spec, its cells and each cell's status, kept on disk as it runs.

Every cell has a record: name, options (its swept values), argv, status (pending, running, done
or failed), attempts, returncode, error (the last line of a failed attempt), seconds, job_id
(Slurm) and updated. The file is rewritten atomically, at most about once a second while cells
come and go, and always on a failure, an interruption and the end of the sweep, so that it never
lags more than about a second behind the cells (`SweepStatus.flush`).

Rerunning a sweep skips finished cells (a cell is finished when its summary.csv exists and no
attempt of the sweep was cut short after writing it), resumes interrupted ones (the commands
resume inside their folder) and retries failed ones; a cell that exits with code 2 (bad input:
the command rejected its options) is not retried, since it would fail the same way.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

from stability.app.sweep.cells import Cell
from stability.app.sweep.processes import Outcome, now
from stability.app.sweep.spec import SweepSpec
from stability.errors import UsageError
from stability.runs.collect import SWEEP_FILE, SWEEP_FORMAT
from stability.runs.jsonsafe import jsonable
from stability.runs.runfolder import atomic_write_text

STATUSES = ("pending", "running", "done", "failed")
EXIT_USAGE = 2  # the commands' exit code for bad input: deterministic, never retried
SAVE_EVERY = 1.0  # seconds between two saves while cells come and go


def _new_record(name: str) -> dict:
    return {
        "name": name,
        "status": "pending",
        "attempts": 0,
        "returncode": None,
        "error": None,
        "seconds": None,
        "job_id": None,
        "updated": None,
    }


class SweepStatus:
    """OUT/sweep.json in memory: the spec, every cell's record, atomic (throttled) saves.

    Thread-safe: the local executor updates it from its worker threads.

    Parameters
    ----------
    out : Path
        The sweep's folder.
    spec : SweepSpec
    cells : list of Cell
        The grid (`cells.expand`).
    old : dict or None
        The sweep.json of an earlier invocation (`stability.runs.collect.read_sweep_index`),
        whose records are kept.
    """

    def __init__(self, out: Path, spec: SweepSpec, cells: list[Cell], old: dict | None):
        self.out = out
        self.spec = spec
        self.cells = {c.name: c for c in cells}
        self.lock = threading.RLock()
        self._last_save = 0.0
        self._dirty = False
        old_records = {r["name"]: r for r in (old or {}).get("cells", [])}
        self.records: dict[str, dict] = {}
        # Slurm jobs an earlier invocation left queued or running (to follow, not resubmit).
        self.jobs = {
            name: r["job_id"]
            for name, r in old_records.items()
            if r.get("status") == "running" and r.get("job_id")
        }
        for c in cells:
            prev = old_records.pop(c.name, None)
            rec = prev or _new_record(c.name)
            rec["options"] = jsonable(c.options)
            rec["argv"] = c.argv
            # Finished: summary.csv exists and no attempt of ours was cut short after writing
            # it (a folder made before the sweep knew it counts as finished).
            if c.finished and (prev is None or rec["status"] == "done"):
                rec["status"] = "done"
            elif rec["status"] in ("done", "running"):
                # summary.csv is gone, or the last attempt was stopped (perhaps after writing
                # it, before the figures): run it again; the command resumes in its folder.
                rec["status"] = "pending"
            self.records[c.name] = rec
        # Cells of an earlier, larger grid of the same sweep stay listed: their folders hold
        # results of the same command and fixed options, and `collect` still finds them.
        self.extra = list(old_records.values())

    def to_json(self) -> dict:
        """The content of sweep.json."""
        return {
            "format": SWEEP_FORMAT,
            "command": self.spec.command,
            "fixed": jsonable(self.spec.fixed),
            "axes": {k: jsonable(v) for k, v in self.spec.axes.items()},
            "spec": self.spec.raw,
            "spec_file": self.spec.source,
            "updated": now(),
            "counts": self.counts(),
            "cells": list(self.records.values()) + self.extra,
        }

    def counts(self) -> dict[str, int]:
        """The number of cells of the grid in each status."""
        return {s: sum(r["status"] == s for r in self.records.values()) for s in STATUSES}

    def update(self, name: str, save: bool | str = True, **fields) -> None:
        """Update a cell's record; save: True (throttled), "force" (now) or False (not now)."""
        with self.lock:
            self.records[name].update(fields, updated=now())
            if save:
                self.save(force=save == "force")
            else:
                self._dirty = True

    def save(self, force: bool = True) -> None:
        """Write sweep.json atomically; unless `force`, at most once per SAVE_EVERY seconds.

        A save held back by the throttle is written by the next `flush` (or save).
        """
        # A grid of thousands of short cells would otherwise rewrite the file thousands of
        # times; a failure or the end of the sweep always saves.
        with self.lock:
            moment = time.monotonic()
            if not force and moment - self._last_save < SAVE_EVERY:
                self._dirty = True
                return
            self._last_save = moment
            self._dirty = False
            text = json.dumps(self.to_json(), indent=1, allow_nan=True) + "\n"
            atomic_write_text(self.out / SWEEP_FILE, text)

    def flush(self) -> None:
        """Write the updates the throttle held back, once SAVE_EVERY has passed since the last
        save; the executors call it while they wait, so sweep.json never lags far behind."""
        with self.lock:
            if self._dirty:
                self.save(force=False)

    def start(self, name: str, save: bool | str = True, **fields) -> int:
        """Mark a cell running for a new attempt; returns the attempt's number (from 1)."""
        with self.lock:
            number = self.records[name]["attempts"] + 1
            self.update(name, save=save, status="running", attempts=number, **fields)
            return number

    def finish(self, cell: Cell, outcome: Outcome) -> str:
        """Record how an attempt ended.

        Parameters
        ----------
        cell : Cell
        outcome : Outcome

        Returns
        -------
        str
            "done", "failed" (not worth retrying: bad input, exit 2), "retry" (failed) or
            "interrupted" (stopped by the sweep: pending again).
        """
        if outcome.interrupted:
            self.update(cell.name, save="force", status="pending")
            return "interrupted"
        if outcome.returncode == 0 and not cell.finished:
            outcome = dataclasses.replace(
                outcome, returncode=1, error="the command exited 0 but wrote no summary.csv"
            )
        seconds = round(outcome.seconds, 3)
        if outcome.returncode == 0:
            self.update(cell.name, status="done", returncode=0, error=None, seconds=seconds)
            return "done"
        self.update(
            cell.name,
            save="force",
            status="failed",
            returncode=outcome.returncode,
            error=outcome.error,
            seconds=seconds,
        )
        return "failed" if outcome.returncode == EXIT_USAGE else "retry"

    def stop_running(self) -> None:
        """After an interruption: the cells still marked running are pending again; save."""
        with self.lock:
            for rec in self.records.values():
                if rec["status"] == "running":
                    rec["status"] = "pending"
            self.save(force=True)


def check_compatible(out: Path, spec: SweepSpec, old: dict | None) -> None:
    """Refuse an OUT that holds another sweep or a single run (UsageError, nothing written).

    Parameters
    ----------
    out : Path
        The sweep's folder.
    spec : SweepSpec
    old : dict or None
        Its sweep.json (`stability.runs.collect.read_sweep_index`).
    """
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} exists and is not a folder")
    if old is None:
        if (out / "config.json").exists():
            raise UsageError(f"{str(out)!r} is a run folder, not a sweep; use another --out")
        return
    same = (
        old.get("command") == spec.command
        and old.get("fixed") == jsonable(spec.fixed)
        and sorted(old.get("axes", {})) == sorted(spec.axes)
    )
    if not same:
        raise UsageError(
            f"{str(out)!r} holds another sweep (its command, fixed options or axis names "
            "differ); use another --out"
        )


__all__ = [
    "EXIT_USAGE",
    "STATUSES",
    "SweepStatus",
    "check_compatible",
]

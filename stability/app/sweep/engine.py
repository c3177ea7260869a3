"""Sweeps: grids of runs of one command, on this machine or on a Slurm cluster, and `collect`.

A sweep spec (TOML) names a command, its fixed options and the axes to sweep::

    command = "simulate gaussian"
    out = "runs/gaussian_lambda"          # optional; --out on the command line wins
    exclude = [{lam = inf, dim = 3}]      # combinations left out (optional)

    [options]                             # the same for every cell
    n = 50
    iterations = 100
    runs = 2000

    [axes]                                # the grid: every combination is one cell
    lam = [0, 0.5, 1, inf]                # a list of values (TOML has inf)
    dim = {start = 1, stop = 4}           # a range: 1, 2, 3 (stop excluded, step 1)
    seeds = 3                             # the seed axis: 0, 1, 2 (or a list of seeds)

    [slurm]                               # only read by --executor slurm
    timeout_min = 240
    slurm_partition = "gpu"
    gpus_per_node = 1

Option names are those of the command's own parser (`n_fresh` or `n-fresh` both work), checked
before anything runs. A multi-valued option (`simulate gaussian --lam`) takes a list in
[options]; on an axis, each value can be a list. Ranges are `{start, stop, step}` (half-open, as
Python's range, floats allowed) or `{start, stop, num}` (inclusive, `log = true` for geometric).
Top-level keys (command, out, exclude, seeds) come before the first [table] (TOML rule).

Each cell runs exactly the single command, `python -m stability <command> <options> --out
OUT/<cell>`, in its own process, so a cell that crashes, is killed for memory or calls
os._exit never takes the other cells down, its thread limits (OMP_NUM_THREADS ...) are set
before numpy/torch start, and the local executor runs what a Slurm job runs. Cell folders are
named from the swept options, sorted: `OUT/lam=0.5__seed=1`. OUT/sweep.json records the spec,
the cells and their status (pending, running, done, failed with the last error line and the
attempt count), rewritten atomically; OUT/logs/<cell>.log holds each attempt's output.

Rerunning a sweep skips finished cells (a cell is finished when its summary.csv exists), resumes
interrupted ones (the commands resume inside their folder) and retries failed ones up to
`retries` times per invocation; a cell that exits with code 2 (bad input: the command rejected
its options) is not retried, since it would fail the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import datetime
import hashlib
import io
import itertools
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stability.errors import UsageError
from stability.runs.jsonsafe import jsonable
from stability.runs.runfolder import SUMMARY_COLUMNS, atomic_write_bytes, atomic_write_text

FORMAT = "retrain-stability/sweep-v1"
STATUS_FILE = "sweep.json"
EXECUTORS = ("local", "slurm")
STATUSES = ("pending", "running", "done", "failed")
# Options a spec may not set: the sweep chooses the folder and reads no JSON from stdout.
RESERVED = {"out", "json", "help"}
# Thread pools of numpy's BLAS, MKL, OpenMP (torch's intra-op pool reads OMP_NUM_THREADS).
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMBA_NUM_THREADS",  # the exact OT solver of the 2D simulators (simulations.assignment)
)
EXIT_USAGE = 2  # the commands' exit code for bad input: deterministic, never retried
MAX_NAME = 200  # folder names stay well under the 255 bytes of most file systems
ERROR_CHARS = 300


# ---------------------------------------------------------------------------------------------
# Commands and their options


@dataclass(frozen=True)
class OptionInfo:
    """One option of a command: its argparse dest, its flag and how many values it takes."""

    dest: str
    flag: str
    kind: str  # "flag" (store_true), "one" (one value) or "many" (nargs="+")


@dataclass(frozen=True)
class CommandInfo:
    """A command a sweep can run: its words after `stability` and its parser."""

    name: str
    words: tuple[str, ...]
    make_parser: Callable[[], argparse.ArgumentParser]

    def parser(self) -> argparse.ArgumentParser:
        return self.make_parser()

    def options(self) -> dict[str, OptionInfo]:
        """The options a spec may set, by dest (from the command's own parser)."""
        out = {}
        for action in self.parser()._actions:
            if not action.option_strings or action.dest in RESERVED:
                continue
            flag = max(action.option_strings, key=len)
            if isinstance(action, argparse._StoreTrueAction):
                kind = "flag"
            elif action.nargs in ("+", "*") or isinstance(action.nargs, int):
                kind = "many"
            else:
                kind = "one"
            out[action.dest] = OptionInfo(action.dest, flag, kind)
        return out


def _gaussian_parser():
    from stability.app.simulate import gaussian_parser

    return gaussian_parser()


def _flow_parser():
    from stability.app.simulate import twod_parser

    return twod_parser("flow")


def _diffusion_parser():
    from stability.app.simulate import twod_parser

    return twod_parser("diffusion")


def _retrain_parser():
    from stability.app.deep_commands import retrain_parser

    return retrain_parser()


COMMANDS = {
    c.name: c
    for c in (
        CommandInfo("simulate gaussian", ("simulate", "gaussian"), _gaussian_parser),
        CommandInfo("simulate flow", ("simulate", "flow"), _flow_parser),
        CommandInfo("simulate diffusion", ("simulate", "diffusion"), _diffusion_parser),
        CommandInfo("deep retrain", ("deep", "retrain"), _retrain_parser),
    )
}
# Commands that can run on several processes (torch.distributed under torchrun).
DISTRIBUTED = {"deep retrain"}


def command_info(name: str) -> CommandInfo:
    key = " ".join(str(name).split())
    if key not in COMMANDS:
        raise UsageError(f"unknown command {name!r}; choose one of: {', '.join(COMMANDS)}")
    return COMMANDS[key]


# ---------------------------------------------------------------------------------------------
# Specs


@dataclass
class SweepSpec:
    """A validated sweep: command, fixed options and axes (values in spec order).

    fixed : dest -> value (a list for multi-valued options, True for flags)
    axes : dest -> list of values (one cell per combination)
    exclude : combinations left out of the grid, each dest -> value (a cell matching every
        key of one of them is skipped)
    slurm : the [slurm] table (executor parameters), validated by `slurm_parameters`
    raw : the spec as read (JSON types, inf as "inf"), recorded in sweep.json
    """

    command: str
    fixed: dict[str, Any]
    axes: dict[str, list]
    exclude: list[dict] = field(default_factory=list)
    slurm: dict[str, Any] = field(default_factory=dict)
    out: str | None = None
    raw: dict = field(default_factory=dict)
    source: str = ""

    @property
    def info(self) -> CommandInfo:
        return COMMANDS[self.command]


SPEC_KEYS = {"command", "out", "options", "axes", "seeds", "exclude", "slurm"}


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a TOML spec (ValueError with one line on any problem)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the same parser under its original name
        import tomli as tomllib

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read spec {str(path)!r}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: invalid TOML: {_first_line(str(exc))}") from None
    return parse_spec(data, source=str(path))


def parse_spec(data: dict, source: str = "") -> SweepSpec:
    """Validate a spec given as a dict (as tomllib returns it) against the command's parser."""
    where = f"{source}: " if source else ""
    unknown = sorted(set(data) - SPEC_KEYS)
    if unknown:
        raise UsageError(
            f"{where}unknown key {unknown[0]!r} in the spec; accepted: {', '.join(sorted(SPEC_KEYS))}"
        )
    if "command" not in data:
        raise UsageError(f'{where}the spec names no command (e.g. command = "simulate gaussian")')
    if not isinstance(data["command"], str):
        raise UsageError(f"{where}command must be a string, got {data['command']!r}")
    info = command_info(data["command"])
    accepted = info.options()
    for key in ("options", "axes", "slurm"):
        if key in data and not isinstance(data[key], dict):
            raise UsageError(f"{where}[{key}] must be a table")
    out = data.get("out")
    if out is not None and (not isinstance(out, str) or not out):
        raise UsageError(f"{where}out must be a folder name, got {out!r}")

    fixed = {}
    for key, value in data.get("options", {}).items():
        opt = _lookup(key, accepted, info, where)
        fixed[opt.dest] = _normalise(opt, value, f"{where}option {key!r}")

    axes_in = dict(data.get("axes", {}))
    if "seeds" in data:
        if "seeds" in axes_in or "seed" in axes_in:
            raise UsageError(f"{where}seeds is given twice (top level and [axes])")
        axes_in["seeds"] = data["seeds"]
    axes = {}
    for key, value in axes_in.items():
        if key == "seeds":
            if "seed" not in accepted:
                raise UsageError(f"{where}command {info.name!r} has no --seed option")
            opt = accepted["seed"]
            values = _seeds(value, where)
        else:
            opt = _lookup(key, accepted, info, where)
            values = _axis_values(value, f"{where}axis {key!r}")
        if opt.dest in axes:
            raise UsageError(f"{where}axis {opt.dest!r} is given twice")
        values = [_normalise(opt, v, f"{where}axis {key!r}", axis=True) for v in values]
        if not values:
            raise UsageError(f"{where}axis {key!r} is empty")
        seen = set()
        for v in values:
            token = _name_token(v)
            if token in seen:
                raise UsageError(f"{where}axis {key!r} repeats the value {token}")
            seen.add(token)
        axes[opt.dest] = values
    both = sorted(set(fixed) & set(axes))
    if both:
        raise UsageError(f"{where}option {both[0]!r} is both fixed ([options]) and swept ([axes])")
    exclude = _exclusions(data.get("exclude", []), axes, accepted, where)
    slurm = dict(data.get("slurm", {}))
    return SweepSpec(
        command=info.name,
        fixed=fixed,
        axes=axes,
        exclude=exclude,
        slurm=slurm,
        out=out,
        raw=jsonable(data),
        source=source,
    )


def _exclusions(entries, axes: dict, accepted: dict, where: str) -> list[dict]:
    """exclude = [{lam = inf, policy = "accumulate"}, ...]: combinations not to run."""
    if not isinstance(entries, list) or not all(isinstance(e, dict) and e for e in entries):
        raise UsageError(f"{where}exclude must be a list of tables, e.g. [{{lam = inf}}]")
    out = []
    for entry in entries:
        rule = {}
        for key, value in entry.items():
            dest = "seed" if key == "seeds" else str(key).replace("-", "_")
            if dest not in axes:
                raise UsageError(f"{where}exclude: {key!r} is not an axis")
            rule[dest] = _normalise(accepted[dest], value, f"{where}exclude {key!r}")
        out.append(rule)
    return out


def _same(a, b) -> bool:
    """Equal option values; numbers by value (1 == 1.0), lists element by element."""
    if isinstance(a, list) or isinstance(b, list):
        a, b = (a if isinstance(a, list) else [a]), (b if isinstance(b, list) else [b])
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool):
        return not isinstance(b, bool) and float(a) == float(b)
    return a == b


def _excluded(spec: SweepSpec, values: dict) -> bool:
    return any(all(_same(values[k], v) for k, v in rule.items()) for rule in spec.exclude)


def _lookup(key: str, accepted: dict[str, OptionInfo], info: CommandInfo, where: str):
    dest = str(key).lstrip("-").replace("-", "_")
    if dest in RESERVED:
        raise UsageError(
            f"{where}option {key!r} is set by the sweep itself (the cell folders are OUT/<cell>)"
        )
    if dest not in accepted:
        names = ", ".join(sorted(accepted))
        raise UsageError(f"{where}unknown option {key!r} for {info.name!r}; accepted: {names}")
    return accepted[dest]


def _is_scalar(v) -> bool:
    return isinstance(v, (int, float, str)) and not isinstance(v, bool)


def _normalise(opt: OptionInfo, value, where: str, axis: bool = False):
    """Check a value's shape against the option's kind; lists only for multi-valued options."""
    if isinstance(value, float) and math.isnan(value):
        raise UsageError(f"{where}: nan is not a value")
    if opt.kind == "flag":
        if not isinstance(value, bool):
            raise UsageError(f"{where}: {opt.flag} is a flag; give true or false, not {value!r}")
        return value
    if opt.kind == "many":
        if isinstance(value, list):
            if not value or not all(_is_scalar(v) for v in value):
                raise UsageError(
                    f"{where}: {opt.flag} takes a non-empty list of numbers or strings"
                )
            if any(isinstance(v, float) and math.isnan(v) for v in value):
                raise UsageError(f"{where}: nan is not a value")
            return list(value)
        if _is_scalar(value):
            return value
        raise UsageError(f"{where}: {opt.flag} takes numbers or strings, not {value!r}")
    if isinstance(value, list):
        hint = "" if axis else " (to sweep it, put the list under [axes])"
        raise UsageError(f"{where}: {opt.flag} takes one value, not a list{hint}")
    if not _is_scalar(value):
        raise UsageError(f"{where}: {opt.flag} takes a number or a string, not {value!r}")
    return value


def _seeds(value, where: str) -> list:
    if isinstance(value, bool):
        raise UsageError(f"{where}seeds must be a count or a list of seeds")
    if isinstance(value, int):
        if value < 1:
            raise UsageError(f"{where}seeds must be >= 1 (the number of seeds), got {value}")
        return list(range(value))
    if isinstance(value, dict):
        return _axis_values(value, f"{where}seeds")
    if isinstance(value, list):
        if not value:
            raise UsageError(f"{where}axis 'seeds' is empty")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise UsageError(f"{where}seeds must be integers")
        return list(value)
    raise UsageError(f"{where}seeds must be a count or a list of seeds, got {value!r}")


RANGE_KEYS = {"start", "stop", "step", "num", "log"}


def _axis_values(value, where: str) -> list:
    """The values of an axis: a list, or a range table {start, stop, step | num [, log]}."""
    if isinstance(value, list):
        if not value:
            raise UsageError(f"{where} is empty")
        return list(value)
    if isinstance(value, dict):
        return _range(value, where)
    raise UsageError(f"{where}: give a list of values or a range {{start = .., stop = ..}}")


def _range(spec: dict, where: str) -> list:
    extra = sorted(set(spec) - RANGE_KEYS)
    if extra:
        raise UsageError(f"{where}: unknown range key {extra[0]!r}; use start, stop, step or num")
    if "start" not in spec or "stop" not in spec:
        raise UsageError(f"{where}: a range needs start and stop")
    nums = {k: spec[k] for k in ("start", "stop", "step", "num") if k in spec}
    for k, v in nums.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise UsageError(f"{where}: range {k} must be a finite number, got {v!r}")
    start, stop = spec["start"], spec["stop"]
    integral = all(isinstance(v, int) for v in nums.values())
    if "step" in spec and "num" in spec:
        raise UsageError(f"{where}: give step or num, not both")
    if "num" in spec:
        num = spec["num"]
        if not isinstance(num, int) or num < 1:
            raise UsageError(f"{where}: num must be an integer >= 1")
        if spec.get("log", False):
            if start <= 0 or stop <= 0:
                raise UsageError(f"{where}: a log range needs start > 0 and stop > 0")
            a, b = math.log(start), math.log(stop)
            raw = [math.exp(a + (b - a) * k / max(num - 1, 1)) for k in range(num)]
        else:
            raw = [start + (stop - start) * k / max(num - 1, 1) for k in range(num)]
        if num == 1:
            raw = [start]
        else:
            raw[-1] = stop  # exact end point despite rounding
    else:
        if "log" in spec:
            raise UsageError(f"{where}: log needs num (a geometric range of num values)")
        step = spec.get("step", 1)
        if step == 0:
            raise UsageError(f"{where}: step must not be 0")
        count = max(0, math.ceil((stop - start) / step - 1e-9))
        if count > 100000:
            raise UsageError(f"{where}: {count} values is too many for one axis")
        raw = [start + k * step for k in range(count)]
    if not raw:
        raise UsageError(f"{where} is empty (start {start}, stop {stop})")
    # Round away the binary noise of k * step (0.1 * 3 = 0.30000000000000004) so that folder
    # names and argv read as the user wrote them; integers stay integers.
    out = []
    for v in raw:
        v = float(f"{v:.12g}")
        out.append(int(v) if integral and v == int(v) else v)
    return out


# ---------------------------------------------------------------------------------------------
# Cells


@dataclass
class Cell:
    """One run of the grid: its folder name, swept values and the command's argv."""

    name: str
    options: dict[str, Any]  # the swept values (dest -> value)
    argv: list[str]  # after `stability`, --out included
    folder: Path

    @property
    def finished(self) -> bool:
        return (self.folder / "summary.csv").exists()


def _tokens(value) -> list[str]:
    """argv strings of a value: numbers as Python writes them, inf as 'inf'."""
    if isinstance(value, list):
        return [t for v in value for t in _tokens(v)]
    if isinstance(value, float):
        if math.isinf(value):
            return ["inf" if value > 0 else "-inf"]
        return [repr(value)]
    return [str(value)]


def _name_token(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return ",".join(_tokens(value))


_SAFE = re.compile(r"[^A-Za-z0-9._,+=-]")


def cell_name(values: dict[str, Any]) -> str:
    """The folder name of a cell: `key=value` pairs sorted by key, joined by `__`.

    Characters outside [A-Za-z0-9._,+=-] become `_`; a name that had to be changed (or that is
    longer than MAX_NAME) gets a short hash of the exact values, so two cells never share a
    folder. No axes: `run`.
    """
    if not values:
        return "run"
    exact = "__".join(f"{k}={_name_token(values[k])}" for k in sorted(values))
    safe = _SAFE.sub("_", exact)
    if safe.startswith("."):
        safe = "_" + safe[1:]
    if safe != exact or len(safe) > MAX_NAME:
        digest = hashlib.sha1(exact.encode()).hexdigest()[:8]
        safe = f"{safe[: MAX_NAME - 10]}~{digest}"
    return safe


def option_argv(info: CommandInfo, options: dict[str, Any], table: dict | None = None) -> list[str]:
    """argv of options (dest -> value) for a command, in the given order."""
    table = table or info.options()
    argv = []
    for dest, value in options.items():
        opt = table[dest]
        if opt.kind == "flag":
            if value:
                argv.append(opt.flag)
            continue
        argv.append(opt.flag)
        argv.extend(_tokens(value))
    return argv


def expand(spec: SweepSpec, out: str | Path) -> list[Cell]:
    """Every cell of the grid (last axis fastest), each argv checked by the command's parser.

    Raises ValueError (one line) if a cell's options do not parse or two cells share a folder.
    """
    from stability.errors import UsageError

    info = spec.info
    out = Path(out).absolute()
    parser = info.parser()
    table = info.options()
    keys = list(spec.axes)
    cells, names = [], {}
    for combo in itertools.product(*(spec.axes[k] for k in keys)):
        values = dict(zip(keys, combo))
        if _excluded(spec, values):
            continue
        name = cell_name(values)
        if name in names:
            raise UsageError(f"cells {names[name]} and {values} would share the folder {name!r}")
        names[name] = values
        folder = out / name
        argv = [
            *info.words,
            *option_argv(info, {**spec.fixed, **values}, table),
            "--out",
            str(folder),
        ]
        try:
            parser.parse_args(argv[len(info.words) :])
        except UsageError as exc:
            raise UsageError(f"cell {name}: {_first_line(str(exc))}") from None
        cells.append(Cell(name, values, argv, folder))
    if not cells:
        raise UsageError("every cell of the grid is excluded: nothing to run")
    return cells


# ---------------------------------------------------------------------------------------------
# The status file


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def read_status(out: str | Path) -> dict | None:
    """OUT/sweep.json as a dict, None if there is none (ValueError if unreadable)."""
    path = Path(out) / STATUS_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {_first_line(str(exc))}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageError(f"{path} is not a sweep status file of this toolkit")
    return data


class SweepStatus:
    """OUT/sweep.json in memory: the spec, every cell's record, atomic (throttled) saves.

    Records are dicts with name, options, argv, status, attempts, returncode, error, seconds,
    job_id and updated. Thread-safe: the local executor updates it from its worker threads.
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
            rec = prev or {
                "name": c.name,
                "status": "pending",
                "attempts": 0,
                "returncode": None,
                "error": None,
                "seconds": None,
                "job_id": None,
                "updated": None,
            }
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
        axes = {k: jsonable(v) for k, v in self.spec.axes.items()}
        return {
            "format": FORMAT,
            "command": self.spec.command,
            "fixed": jsonable(self.spec.fixed),
            "axes": axes,
            "spec": self.spec.raw,
            "spec_file": self.spec.source,
            "updated": _now(),
            "counts": self.counts(),
            "cells": list(self.records.values()) + self.extra,
        }

    def counts(self) -> dict[str, int]:
        return {s: sum(r["status"] == s for r in self.records.values()) for s in STATUSES}

    def update(self, name: str, save: bool | str = True, **fields) -> None:
        with self.lock:
            self.records[name].update(fields, updated=_now())
            if save:
                self.save(force=save == "force")

    def save(self, force: bool = True) -> None:
        # Throttled: a grid of thousands of short cells would otherwise rewrite the file
        # thousands of times; a failure or the end of the sweep always saves.
        with self.lock:
            now = time.monotonic()
            if not force and now - self._last_save < 1.0:
                self._dirty = True
                return
            self._last_save = now
            self._dirty = False
            text = json.dumps(self.to_json(), indent=1, allow_nan=True) + "\n"
            atomic_write_text(self.out / STATUS_FILE, text)


def check_compatible(out: Path, spec: SweepSpec, old: dict | None) -> None:
    """Refuse an OUT that holds another sweep or a single run (ValueError, nothing written)."""
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


@contextlib.contextmanager
def _sweep_lock(out: Path):
    """One sweep at a time per folder: a second one would run the same cells twice."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".sweep.lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UsageError(f"another sweep is running in {str(out)!r}") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------
# Running one cell


@dataclass
class Outcome:
    """How one attempt of a cell ended (returncode 0: success)."""

    returncode: int
    error: str | None
    seconds: float
    interrupted: bool = False


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask: respects Slurm's and taskset's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def thread_env(threads: int, base: dict | None = None) -> dict[str, str]:
    """The environment of a cell process, with every thread pool limited to `threads`."""
    env = dict(os.environ if base is None else base)
    for var in THREAD_VARS:
        env[var] = str(int(threads))
    return env


_LIVE: set = set()  # cell processes now running (terminated on interrupt)
_LIVE_LOCK = threading.Lock()


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[0][:ERROR_CHARS] if lines else ""


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[-1][:ERROR_CHARS] if lines else ""


def _error_line(log: Path, offset: int, returncode: int) -> str:
    try:
        with open(log, "rb") as f:
            f.seek(max(offset, os.path.getsize(log) - 65536))
            tail = f.read().decode(errors="replace")
    except OSError:
        tail = ""
    last = _last_line(tail)
    if returncode < 0:
        try:
            sig = signal.Signals(-returncode).name
        except ValueError:
            sig = f"signal {-returncode}"
        hint = " (out of memory?)" if sig == "SIGKILL" else ""
        return f"killed by {sig}{hint}" + (f"; last output: {last}" if last else "")
    return last or f"exit code {returncode} and no output"


def _ignore_usr2():  # pragma: no cover - runs in the child between fork and exec
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def _terminate(proc: subprocess.Popen, grace: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_command(
    cmd: list[str], env: dict, log: Path, header: str, ignore_usr2: bool = False
) -> Outcome:
    """Run `cmd` with its output appended to `log`; the last output line is the error.

    ignore_usr2: the child ignores SIGUSR2, Slurm's warning before a preemption or time limit,
    so that only submitit's handler in the parent reacts to it (it requeues the job); the child
    is then terminated and the requeued job resumes it.
    """
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(log, "ab") as f:
        f.write(f"=== {_now()} {header}\n$ {shlex.join(cmd)}\n".encode())
        f.flush()
        offset = f.tell()
        proc = subprocess.Popen(
            cmd,
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            preexec_fn=_ignore_usr2 if ignore_usr2 else None,
        )
        with _LIVE_LOCK:
            _LIVE.add(proc)
        try:
            rc = proc.wait()
        except BaseException:
            # Interrupted (Ctrl-C, or submitit requeueing the job): never leave an orphan
            # writing into the cell folder.
            _terminate(proc)
            raise
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(proc)
    seconds = time.monotonic() - start
    if rc == 0:
        return Outcome(0, None, seconds)
    return Outcome(rc, _error_line(log, offset, rc), seconds)


def stability_command(argv: list[str]) -> list[str]:
    """The process that runs a cell: the same as typing `stability ARGV`."""
    return [sys.executable, "-m", "stability", *argv]


Runner = Callable[[Cell, dict, Path, int], Outcome]


def run_cell(cell: Cell, env: dict, log: Path, attempt: int) -> Outcome:
    """Run one cell as `python -m stability ARGV` (the default runner of the local executor)."""
    return run_command(stability_command(cell.argv), env, log, f"attempt {attempt}")


def log_path(out: Path, name: str) -> Path:
    return Path(out) / "logs" / f"{name}.log"


# ---------------------------------------------------------------------------------------------
# Sweeping


@dataclass
class SweepReport:
    """What a sweep did: counts, the failed cells with their error and the plan (dry run)."""

    out: Path
    executor: str
    cells: int
    skipped: int  # finished before this invocation
    done: int  # finished by this invocation
    failed: list[dict]  # records of the cells that failed
    pending: list[str]  # cells left pending (interrupted or not run)
    workers: int = 1
    threads: int = 1
    dry_run: bool = False
    plan: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    slurm: dict | None = None  # the validated [slurm] parameters (executor slurm)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.pending

    def lines(self) -> list[str]:
        """A human-readable report (what the CLI prints)."""
        out = []
        if self.dry_run:
            out.append(
                f"{self.cells} cells in {self.out} ({self.skipped} done, "
                f"{self.cells - self.skipped} to run) with the {self.executor} executor"
                + (
                    f" ({_plural(self.workers, 'worker')} x {_plural(self.threads, 'thread')})"
                    if self.executor == "local"
                    else ""
                )
            )
            if self.slurm:
                params = ", ".join(f"{k}={v}" for k, v in self.slurm["params"].items())
                out.append(
                    f"  {self.slurm['cluster']} jobs ({params}); each cell runs with "
                    f"{self.slurm['launcher']}"
                    + (f" x {self.slurm['nproc']} processes" if self.slurm["nproc"] > 1 else "")
                )
            for p in self.plan:
                err = f"  [{p['error']}]" if p.get("error") else ""
                out.append(f"  {p['status']:<8} {p['name']}{err}")
                out.append(f"           stability {shlex.join(p['argv'])}")
            return out
        out.append(
            f"sweep {self.out}: {self.cells} cells, {self.skipped + self.done} done "
            f"({self.done} now, {self.skipped} before), {len(self.failed)} failed, "
            f"{len(self.pending)} pending ({self.seconds:.1f} s, {self.executor})"
        )
        for rec in self.failed:
            out.append(
                f"  failed {rec['name']} after {rec['attempts']} attempt(s): {rec['error']}"
                f"  (log: {log_path(self.out, rec['name'])})"
            )
        return out


def _plural(k: int, word: str) -> str:
    return f"{k} {word}{'' if k == 1 else 's'}"


def sweep_paths(spec: SweepSpec, out: str | Path | None) -> Path:
    chosen = out if out is not None else spec.out
    if not chosen:
        raise UsageError('give --out DIR (or out = "DIR" in the spec): the sweep\'s folder')
    return Path(chosen).absolute()


def run_sweep(
    spec: SweepSpec,
    out: str | Path | None = None,
    executor: str = "local",
    workers: int | None = None,
    retries: int = 2,
    dry_run: bool = False,
    progress: bool | None = None,
    runner: Runner | None = None,
    poll_s: float | None = None,
) -> SweepReport:
    """Run (or resume) every unfinished cell of a sweep; returns a report.

    Everything is validated before anything is written: the spec against the command's
    parser, every cell's argv, the executor (submitit installed for slurm), the folder.

    runner : how the local executor runs one attempt of a cell (default `run_cell`).
    poll_s : seconds between checks of the Slurm jobs (default 30; 0.5 for cluster = "local").
    """
    t0 = time.monotonic()
    if executor not in EXECUTORS:
        raise UsageError(f"unknown executor {executor!r}; choose local or slurm")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise UsageError(f"retries must be an integer >= 0, got {retries!r}")
    cores = available_cores()
    if workers is None:
        workers = cores
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UsageError(f"workers must be an integer >= 1, got {workers!r}")
    slurm = slurm_parameters(spec, check_sbatch=not dry_run) if executor == "slurm" else None
    out = sweep_paths(spec, out)
    cells = expand(spec, out)
    old = read_status(out)
    check_compatible(out, spec, old)
    status = SweepStatus(out, spec, cells, old)
    todo = [c for c in cells if status.records[c.name]["status"] != "done"]
    skipped = len(cells) - len(todo)
    eff_workers = max(1, min(workers, len(todo) or 1))
    threads = max(1, cores // eff_workers)
    report = SweepReport(
        out=out,
        executor=executor,
        cells=len(cells),
        skipped=skipped,
        done=0,
        failed=[],
        pending=[],
        workers=eff_workers,
        threads=threads,
        dry_run=dry_run,
        slurm=slurm,
    )
    if dry_run:
        report.plan = [
            {
                "name": c.name,
                "status": status.records[c.name]["status"],
                "error": status.records[c.name].get("error")
                if status.records[c.name]["status"] == "failed"
                else None,
                "argv": c.argv,
            }
            for c in cells
        ]
        return report
    _warn_nested_workers(spec, executor, eff_workers, cores)
    if progress is None:
        progress = sys.stderr.isatty()
    with _sweep_lock(out):
        status.save(force=True)
        if todo:
            if executor == "local":
                _run_local(
                    status, todo, eff_workers, threads, retries, runner or run_cell, progress
                )
            else:
                _run_slurm(status, todo, retries, slurm, progress, poll_s)
        status.save(force=True)
    after = status.records
    report.done = sum(after[c.name]["status"] == "done" for c in todo)
    report.failed = [dict(after[c.name]) for c in todo if after[c.name]["status"] == "failed"]
    report.pending = [c.name for c in todo if after[c.name]["status"] in ("pending", "running")]
    report.seconds = time.monotonic() - t0
    return report


def _warn_nested_workers(spec: SweepSpec, executor: str, workers: int, cores: int) -> None:
    inner = spec.fixed.get("workers")
    if executor == "local" and isinstance(inner, int) and inner * workers > cores:
        print(
            f"stability sweep: warning: {workers} cells at a time, each with --workers {inner}, "
            f"on {cores} cores: set workers = 1 in [options] or run fewer cells at a time",
            file=sys.stderr,
        )


def _finish_attempt(status: SweepStatus, cell: Cell, outcome: Outcome) -> str:
    """Record an attempt's outcome; returns 'done', 'failed', 'retry' or 'interrupted'."""
    if outcome.interrupted:
        status.update(cell.name, save="force", status="pending")
        return "interrupted"
    if outcome.returncode == 0 and not cell.finished:
        outcome = dataclasses.replace(
            outcome, returncode=1, error="the command exited 0 but wrote no summary.csv"
        )
    if outcome.returncode == 0:
        status.update(
            cell.name,
            save=True,
            status="done",
            returncode=0,
            error=None,
            seconds=round(outcome.seconds, 3),
        )
        return "done"
    status.update(
        cell.name,
        save="force",
        status="failed",
        returncode=outcome.returncode,
        error=outcome.error,
        seconds=round(outcome.seconds, 3),
    )
    return "failed" if outcome.returncode == EXIT_USAGE else "retry"


class SweepTerminated(Exception):
    """SIGTERM received by the sweep process: stop the cells like Ctrl-C does."""


@contextlib.contextmanager
def _sigterm_as_exception():
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SweepTerminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_local(
    status: SweepStatus,
    todo: list[Cell],
    workers: int,
    threads: int,
    retries: int,
    runner: Runner,
    progress: bool,
) -> None:
    """A pool of `workers` cell processes, each limited to `threads` threads.

    The pool is made of threads that each wait on one cell process (run by `runner`): the
    processes do the work, and a cell that dies cannot break the pool.
    """
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    from tqdm import tqdm

    env = thread_env(threads)
    stop = threading.Event()
    tries = {c.name: 0 for c in todo}

    def attempt(cell: Cell) -> Outcome:
        if stop.is_set():
            return Outcome(-1, None, 0.0, interrupted=True)
        with status.lock:
            rec = status.records[cell.name]
            number = rec["attempts"] + 1
            status.update(cell.name, save=True, status="running", attempts=number)
        outcome = runner(cell, env, log_path(status.out, cell.name), number)
        if stop.is_set() and outcome.returncode != 0:
            outcome.interrupted = True
        return outcome

    bar = tqdm(total=len(todo), desc="sweep", unit="cell", disable=not progress, file=sys.stderr)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sweep-cell")
    futures = {}
    try:
        with _sigterm_as_exception():
            for cell in todo:
                tries[cell.name] += 1
                futures[pool.submit(attempt, cell)] = cell
            failed = 0
            while futures:
                done, _ = wait(list(futures), timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in done:
                    cell = futures.pop(fut)
                    verdict = _finish_attempt(status, cell, fut.result())
                    if verdict == "retry" and tries[cell.name] <= retries:
                        tries[cell.name] += 1
                        futures[pool.submit(attempt, cell)] = cell
                        continue
                    failed += verdict in ("retry", "failed")
                    bar.update()
                    bar.set_postfix(failed=failed, refresh=False)
    except BaseException:
        stop.set()
        with _LIVE_LOCK:
            live = list(_LIVE)
        for proc in live:
            _terminate(proc)
        pool.shutdown(wait=True, cancel_futures=True)
        for rec in status.records.values():
            if rec["status"] == "running":
                rec["status"] = "pending"
        status.save(force=True)
        raise
    finally:
        bar.close()
        pool.shutdown(wait=True)


# ---------------------------------------------------------------------------------------------
# Slurm through submitit

SLURM_GENERIC = {
    "timeout_min": int,
    "gpus_per_node": int,
    "cpus_per_task": int,
    "nodes": int,
    "tasks_per_node": int,
    "mem_gb": (int, float),
}
SLURM_OWN = {"cluster", "max_num_timeout"}
CLUSTERS = ("slurm", "local")
DEFAULT_TIMEOUT_MIN = 60


def _require_submitit():
    try:
        import submitit
    except ImportError:
        raise UsageError(
            "--executor slurm needs submitit: pip install 'retrain-stability[slurm]' "
            "(or pip install submitit)"
        ) from None
    return submitit


def slurm_parameters(spec: SweepSpec, check_sbatch: bool = True) -> dict:
    """Validate the [slurm] table (submitit installed, known names, types); returns it filled.

    check_sbatch: for cluster = "slurm", require sbatch and srun here (not for a dry run).

    Returns dict(cluster, max_num_timeout, params (for AutoExecutor.update_parameters),
    launcher ('python' or 'torchrun'), nproc (processes per node of one cell), nodes).
    """
    _require_submitit()
    from submitit.slurm.slurm import SlurmExecutor

    table = dict(spec.slurm)
    cluster = table.pop("cluster", "slurm")
    if cluster not in CLUSTERS:
        raise UsageError(
            f"[slurm] cluster must be 'slurm' or 'local' (submitit's local executor), got {cluster!r}"
        )
    max_num_timeout = table.pop("max_num_timeout", 3)
    if isinstance(max_num_timeout, bool) or not isinstance(max_num_timeout, int):
        raise UsageError("[slurm] max_num_timeout must be an integer")
    slurm_own = SlurmExecutor._valid_parameters()
    params = {"timeout_min": DEFAULT_TIMEOUT_MIN}
    for key, value in table.items():
        if key in SLURM_GENERIC:
            kind = SLURM_GENERIC[key]
            if isinstance(value, bool) or not isinstance(value, kind):
                raise UsageError(f"[slurm] {key} must be a number, got {value!r}")
            if value < (0 if key == "gpus_per_node" else 1):
                raise UsageError(f"[slurm] {key} must be positive, got {value!r}")
        elif key.startswith("slurm_") and key[len("slurm_") :] in slurm_own:
            pass
        else:
            accepted = sorted(SLURM_GENERIC) + sorted(SLURM_OWN) + ["slurm_<sbatch option>"]
            raise UsageError(f"unknown [slurm] parameter {key!r}; accepted: {', '.join(accepted)}")
        params[key] = value
    gpus = params.get("gpus_per_node", 0)
    nodes = params.get("nodes", 1)
    if params.get("tasks_per_node", 1) != 1:
        raise UsageError(
            "[slurm] tasks_per_node must be 1: a cell is one process (a deep retrain cell on "
            "several GPUs is launched with torchrun inside its allocation: set gpus_per_node)"
        )
    distributed = spec.command in DISTRIBUTED
    if nodes > 1 and not distributed:
        raise UsageError(f"[slurm] nodes = {nodes}: {spec.command!r} runs on one node")
    launcher = "torchrun" if distributed and (gpus > 1 or nodes > 1) else "python"
    missing = [t for t in ("sbatch", "srun") if shutil.which(t) is None]
    if check_sbatch and cluster == "slurm" and missing:
        raise UsageError(
            f"--executor slurm: {missing[0]} not found (run the sweep on the cluster's login "
            'node; cluster = "local" in [slurm] tries the same path on this machine)'
        )
    return dict(
        cluster=cluster,
        max_num_timeout=max_num_timeout,
        params=params,
        launcher=launcher,
        nproc=max(1, gpus) if launcher == "torchrun" else 1,
        nodes=nodes,
    )


@dataclass
class SlurmCell:
    """One cell as a submitit job: runs the command in a subprocess, resubmitted when preempted.

    submitit calls `checkpoint` when Slurm warns of a preemption or of the time limit; it returns
    the same call, which submitit requeues. The commands resume inside their folder, so the
    requeued job simply runs the same argv again.
    """

    name: str
    argv: list[str]
    log: str
    launcher: str = "python"  # "python" or "torchrun"
    nproc: int = 1  # processes per node (torchrun)
    attempt: int = 1

    def command(self, nnodes: int = 1, node: int = 0, master: str = "", job_id: str = "0"):
        """The process to start on this node: python -m stability, or torchrun around it."""
        if self.launcher == "python":
            return stability_command(self.argv)
        run = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(self.nproc)]
        if nnodes > 1:
            # A port from the job id: two multi-node cells sharing a node do not collide.
            port = 20000 + int(re.sub(r"\D", "", job_id) or 0) % 20000
            run += [
                "--nnodes",
                str(nnodes),
                "--node_rank",
                str(node),
                "--master_addr",
                master,
                "--master_port",
                str(port),
            ]
        else:
            run += ["--standalone"]
        # The argv travels as one JSON argument: torchrun's own parser reads every later
        # option too and rejects `--n` as an ambiguous prefix of its --nnodes/--node-rank.
        return [*run, "-m", "stability.app.sweep.engine", json.dumps(self.argv)]

    def __call__(self) -> dict:
        import socket

        import submitit

        env = submitit.JobEnvironment()
        nnodes, node = env.num_nodes, env.node
        master = env.hostnames[0] if nnodes > 1 else ""
        cmd = self.command(nnodes, node, master, str(env.job_id))
        log = Path(self.log)
        if nnodes > 1:
            log = log.with_name(f"{log.stem}.node{node}{log.suffix}")
        header = (
            f"attempt {self.attempt} (job {env.job_id}, host {socket.gethostname()}, "
            f"pid={os.getpid()})"
        )
        threads = max(1, available_cores() // self.nproc)
        outcome = run_command(cmd, thread_env(threads), log, header, ignore_usr2=True)
        return dataclasses.asdict(outcome)

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


ACTIVE_STATES = {
    "PENDING",
    "RUNNING",
    "REQUEUED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "CONFIGURING",
    "COMPLETING",
    "RESIZING",
    "SUSPENDED",
    "STAGE_OUT",
}


def _job_outcome(job) -> Outcome:
    try:
        result = job.result()
    except Exception as exc:  # the job itself failed (timeouts exhausted, node failure, ...)
        return Outcome(1, f"job {job.job_id}: {_last_line(str(exc)) or type(exc).__name__}", 0.0)
    if isinstance(result, list):  # several tasks: the first speaks for the cell
        result = result[0]
    return Outcome(**result)


def _run_slurm(
    status: SweepStatus,
    todo: list[Cell],
    retries: int,
    slurm: dict,
    progress: bool,
    poll_s: float | None,
) -> None:
    """Submit the unfinished cells as a job array, follow them, resubmit failures."""
    import submitit
    from tqdm import tqdm

    cluster = slurm["cluster"]
    if poll_s is None:
        poll_s = 0.5 if cluster == "local" else 30.0
    folder = status.out / "slurm" / "%j"
    try:
        executor = submitit.AutoExecutor(
            folder=folder,
            cluster=cluster,
            **{f"{cluster}_max_num_timeout": slurm["max_num_timeout"]},
        )
        executor.update_parameters(name=f"sweep-{status.out.name}"[:64], **slurm["params"])
    except Exception as exc:  # no srun, a parameter submitit refuses, ...
        raise UsageError(f"submitit: {_first_line(str(exc)) or type(exc).__name__}") from None
    tries = {c.name: 0 for c in todo}
    active: dict[str, Any] = {}
    if cluster == "slurm":
        active.update(_reattach(status, todo, folder))

    def submit(cells: list[Cell]) -> None:
        jobs = []
        try:
            with executor.batch():
                for cell in cells:
                    tries[cell.name] += 1
                    number = status.records[cell.name]["attempts"] + 1
                    task = SlurmCell(
                        cell.name,
                        cell.argv,
                        str(log_path(status.out, cell.name)),
                        slurm["launcher"],
                        slurm["nproc"],
                        number,
                    )
                    jobs.append(executor.submit(task))
        except Exception as exc:  # sbatch refused the jobs (partition, account, limits ...)
            status.save(force=True)
            msg = _last_line(str(exc)) or type(exc).__name__
            raise UsageError(f"submitting to {slurm['cluster']} failed: {msg}") from None
        for cell, job in zip(cells, jobs):
            active[cell.name] = job
            status.update(
                cell.name,
                save=False,
                status="running",
                attempts=status.records[cell.name]["attempts"] + 1,
                job_id=str(job.job_id),
            )
        status.save(force=True)

    by_name = {c.name: c for c in todo}
    bar = tqdm(total=len(todo), desc="sweep", unit="cell", disable=not progress, file=sys.stderr)
    try:
        fresh = [c for c in todo if c.name not in active]
        if fresh:
            submit(fresh)
        failed = 0
        while active:
            time.sleep(poll_s)
            again = []
            for cell_name, job in list(active.items()):
                if not job.done():
                    continue
                del active[cell_name]
                cell = by_name[cell_name]
                verdict = _finish_attempt(status, cell, _job_outcome(job))
                if verdict == "retry" and tries[cell_name] <= retries:
                    again.append(cell)
                    continue
                failed += verdict in ("retry", "failed")
                bar.update()
                bar.set_postfix(failed=failed, refresh=False)
            if again:
                submit(again)
    except BaseException:
        if cluster == "local":
            # The jobs are this machine's processes: stop them with the sweep.
            for cell_name, job in active.items():
                with contextlib.suppress(Exception):
                    job.cancel(check=False)
                status.records[cell_name]["status"] = "pending"
        elif active:
            print(
                f"stability sweep: {len(active)} Slurm job(s) keep running; rerun the sweep to "
                "follow them (finished cells are kept)",
                file=sys.stderr,
            )
        status.save(force=True)
        raise
    finally:
        bar.close()


def _reattach(status: SweepStatus, todo: list[Cell], folder: Path) -> dict:
    """Jobs of an earlier invocation that are still queued or running: follow, not resubmit."""
    import submitit

    out = {}
    for cell in todo:
        if cell.name not in status.jobs:
            continue
        try:
            job = submitit.SlurmJob(folder=folder, job_id=status.jobs[cell.name])
            state = str(job.state).upper()
        except Exception:  # sacct unavailable or the job is unknown: submit it again
            continue
        if state.split()[0] in ACTIVE_STATES:
            out[cell.name] = job
    return out


# ---------------------------------------------------------------------------------------------
# collect: one tidy table and comparison figures from many run folders


@dataclass
class RunInfo:
    """A finished run folder: its command, config options and (in a sweep) its swept values."""

    path: Path
    command: str
    options: dict
    swept: dict  # axis values from sweep.json (empty for a loose run folder)
    sweep: Path | None = None


@dataclass
class CollectResult:
    """Paths written by `collect` and the table's shape."""

    table: Path
    parquet: Path | None
    figures: list[Path]
    rows: int
    runs: int
    columns: list[str]
    swept: list[str]
    skipped: list[str]


def _read_config(path: Path) -> dict:
    try:
        cfg = json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read {path / 'config.json'}: {_first_line(str(exc))}") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("options"), dict):
        raise UsageError(f"{path / 'config.json'} has no options: not a run folder")
    return cfg


def find_runs(dirs: Iterable[str | Path]) -> tuple[list[RunInfo], list[str], list[str]]:
    """The finished runs under `dirs`: sweep folders, run folders, or folders holding them.

    A sweep folder (with sweep.json) found anywhere contributes its cells and its axes; other
    folders with config.json and summary.csv are loose runs. Returns (runs, axis names of the
    sweeps in order, notes on the unfinished cells that were skipped).
    """
    runs, axes, skipped = [], [], []
    seen = set()

    def add(path: Path, swept: dict, sweep: Path | None) -> None:
        if path.resolve() in seen:  # the same folder given twice, or through a link
            return
        seen.add(path.resolve())
        path = path.absolute()
        cfg = _read_config(path)
        runs.append(RunInfo(path, cfg.get("command", ""), cfg["options"], swept, sweep))

    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise UsageError(f"{str(d)!r} is not a folder")
        sweeps = sorted(
            {p.parent for p in d.rglob(STATUS_FILE)} | ({d} if read_status(d) else set())
        )
        for sweep in sweeps:
            status = read_status(sweep)
            for ax in status.get("axes", {}):
                if ax not in axes:
                    axes.append(ax)
            for rec in status.get("cells", []):
                path = sweep / rec["name"]
                if (path / "summary.csv").exists() and (path / "config.json").exists():
                    add(path, rec.get("options", {}), sweep)
                else:
                    skipped.append(f"{sweep}/{rec['name']} ({rec.get('status', 'pending')})")
        inside = {s.resolve() for s in sweeps}
        loose = sorted(
            p.parent for p in d.rglob("summary.csv") if (p.parent / "config.json").exists()
        )
        if (d / "summary.csv").exists() and (d / "config.json").exists():
            loose = [d]
        for path in loose:
            # Cells of a sweep come with their swept values, not as loose runs.
            if not inside.intersection(path.resolve().parents):
                add(path, {}, None)
    return runs, axes, skipped


def _option_text(value) -> str:
    if isinstance(value, list):
        return " ".join(_option_text(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, float):
        return _tokens(value)[0]
    return str(value)


# Options already carried by the summary's own columns (lam and policy per row, runs).
_IN_SUMMARY = set(SUMMARY_COLUMNS) | {"lams"}


def swept_columns(runs: list[RunInfo], axes: list[str]) -> list[str]:
    """The option columns of the table.

    One sweep: its axes. Several sources (sweeps or loose run folders): the axes plus every
    config option whose value differs between the runs.
    """
    cols = [a for a in axes if a not in _IN_SUMMARY]
    sources = {r.sweep if r.sweep is not None else r.path for r in runs}
    if len(sources) > 1:
        keys = []
        for r in runs:
            keys += [k for k in r.options if k not in keys]
        for k in keys:
            if k in _IN_SUMMARY or k in cols:
                continue
            values = {json.dumps(r.options.get(k), sort_keys=True) for r in runs}
            if len(values) > 1:
                cols.append(k)
    return cols


def _run_label(path: Path, runs: list[RunInfo]) -> str:
    try:
        root = Path(os.path.commonpath([str(r.path) for r in runs]))
        if len(runs) == 1:
            root = root.parent
        return str(path.relative_to(root))
    except ValueError:  # pragma: no cover - different drives
        return str(path)


def collect(
    dirs: Iterable[str | Path], out: str | Path | None = None, figures: bool = True
) -> CollectResult:
    """Gather run folders into one tidy CSV (and Parquet if pyarrow is importable) + figures.

    Columns: run, command, the swept options, then summary.csv's columns (policy, lam, t,
    metric, runs, mean, se, q05, q50, q95), values exactly as in each summary.csv. Figures:
    one PNG per metric, `<table stem>_<metric>.png` next to the table.
    """
    dirs = [Path(d) for d in dirs]
    if not dirs:
        raise UsageError("give at least one folder")
    if out is None:
        if len(dirs) > 1:
            raise UsageError("give --out FILE.csv when collecting several folders")
        out = dirs[0] / "results.csv"
    out = Path(out)
    if out.suffix.lower() != ".csv":
        raise UsageError(f"--out must be a .csv file, got {str(out)!r}")
    runs, axes, skipped = find_runs(dirs)
    if not runs:
        raise UsageError(
            f"no finished run folder (config.json and summary.csv) under {', '.join(map(str, dirs))}"
        )
    swept = swept_columns(runs, axes)
    columns = ["run", "command", *swept, *SUMMARY_COLUMNS]
    rows = []
    for r in runs:
        label = _run_label(r.path, runs)
        values = {k: _option_text(r.swept[k] if k in r.swept else r.options.get(k)) for k in swept}
        with open(r.path / "summary.csv", newline="") as f:
            for row in csv.DictReader(f):
                rows.append(
                    {
                        "run": label,
                        "command": r.command,
                        **values,
                        **{k: row.get(k, "") for k in SUMMARY_COLUMNS},
                    }
                )
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out, buf.getvalue())
    parquet = _write_parquet(out.with_suffix(".parquet"), rows, columns)
    paths = comparison_figures(rows, swept, out) if figures else []
    return CollectResult(out, parquet, paths, len(rows), len(runs), columns, swept, skipped)


def _typed(values: list[str]):
    """A column as ints, floats (inf and nan included) or strings, whichever fits all."""
    try:
        return [int(v) for v in values], "int"
    except ValueError:
        pass
    try:
        return [float(v) for v in values], "float"
    except ValueError:
        return values, "str"


def _write_parquet(path: Path, rows: list[dict], columns: list[str]) -> Path | None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    arrays = {}
    for col in columns:
        values, kind = _typed([r[col] for r in rows])
        kind = {"int": pa.int64(), "float": pa.float64(), "str": pa.string()}[kind]
        arrays[col] = pa.array(values, type=kind)
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(arrays), sink)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())
    return path


MAX_PANELS = 64


def comparison_figures(rows: list[dict], swept: list[str], table: Path) -> list[Path]:
    """One PNG per metric: the mean against t, one line per lambda, one panel per combination
    of the other swept options (and of policy and command when they vary).

    With a seed axis, each line is the average over seeds and the seeds are drawn thin; without
    one, the band is the run's q05-q95 over runs. rows: the collected table (strings).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    from stability.runs.plots import LOG_METRICS, save_figure

    facets = [c for c in swept if c not in ("seed",)]
    for extra in ("policy", "command"):
        if len({r[extra] for r in rows}) > 1:
            facets.append(extra)
    facets = [c for c in facets if len({r[c] for r in rows}) > 1]
    seeded = "seed" in swept

    def sort_key(v: str):
        try:
            return (0, float(v), "")
        except ValueError:
            return (1, 0.0, v)

    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    paths = []
    for metric in metrics:
        sub = [r for r in rows if r["metric"] == metric]
        combos = sorted(
            {tuple(r[c] for c in facets) for r in sub}, key=lambda k: [sort_key(v) for v in k]
        )
        if len(combos) > MAX_PANELS:
            print(
                f"stability collect: {metric}: {len(combos)} panels, drawing the first {MAX_PANELS}",
                file=sys.stderr,
            )
            combos = combos[:MAX_PANELS]
        if len(facets) == 2:
            first = sorted({k[0] for k in combos}, key=sort_key)
            second = sorted({k[1] for k in combos}, key=sort_key)
            nrows, ncols = len(first), len(second)
            where = {k: (first.index(k[0]), second.index(k[1])) for k in combos}
        else:
            ncols = min(4, len(combos))
            nrows = math.ceil(len(combos) / ncols)
            where = {k: divmod(i, ncols) for i, k in enumerate(combos)}
        fig, axs = plt.subplots(
            nrows,
            ncols,
            figsize=(3.6 * ncols + 1.2, 2.8 * nrows + 0.8),
            squeeze=False,
            sharex=True,
            sharey=True,
        )
        used = set(where.values())
        for i in range(nrows):
            for j in range(ncols):
                if (i, j) not in used:
                    axs[i][j].set_visible(False)
        lams = sorted({float(r["lam"]) for r in sub})
        palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        colors = {lam: palette[k % len(palette)] for k, lam in enumerate(lams)}
        drawn = []
        for combo in combos:
            ax = axs[where[combo][0]][where[combo][1]]
            here = [r for r in sub if tuple(r[c] for c in facets) == combo]
            for lam in lams:
                series = {}
                for r in here:
                    if float(r["lam"]) != lam:
                        continue
                    series.setdefault(r["run"], []).append(r)
                if not series:
                    continue
                curves = []
                for rs in series.values():
                    rs = sorted(rs, key=lambda r: int(r["t"]))
                    t = np.array([int(r["t"]) for r in rs])
                    mean = np.array([float(r["mean"]) for r in rs])
                    curves.append((t, mean, rs))
                label = "fully synthetic" if math.isinf(lam) else f"lam={lam:g}"
                color = colors[lam]
                style = dict(ls="--") if math.isinf(lam) else {}
                if len(curves) == 1:
                    t, mean, rs = curves[0]
                    ax.plot(t, mean, color=color, label=label, **style)
                    lo = np.array([float(r["q05"]) for r in rs])
                    hi = np.array([float(r["q95"]) for r in rs])
                    ok = np.isfinite(lo) & np.isfinite(hi)
                    ax.fill_between(t[ok], lo[ok], hi[ok], color=color, alpha=0.15, lw=0)
                    values = mean
                else:
                    # Several runs in one panel and line (seeds): their average, each thin.
                    common = sorted(set.intersection(*(set(c[0].tolist()) for c in curves)))
                    stack = np.array([[m[list(t).index(s)] for s in common] for t, m, _ in curves])
                    for t, mean, _ in curves:
                        ax.plot(t, mean, color=color, lw=0.6, alpha=0.35)
                    with np.errstate(invalid="ignore"):
                        values = stack.mean(axis=0)
                    ax.plot(common, values, color=color, label=label, lw=1.8, **style)
                drawn.append(values[np.isfinite(values)])
            title = ", ".join(f"{c}={v}" for c, v in zip(facets, combo))
            ax.set_title(title or metric, fontsize=9)
        finite = np.concatenate(drawn) if drawn else np.array([])
        # Log scale for the metrics that collapse geometrically, once they span a decade.
        if metric in LOG_METRICS and finite.size and finite.min() > 0:
            if finite.max() / finite.min() > 10:
                axs[0][0].set_yscale("log")
        for ax in axs[-1]:
            ax.set_xlabel("t")
        for row in axs:
            row[0].set_ylabel(metric)
        handles, labels = [], []
        for ax in fig.axes:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
        suffix = " (thin: seeds, thick: their average)" if seeded else ""
        fig.suptitle(f"{metric}{suffix}", fontsize=10)
        if handles:
            fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=8)
        fig.tight_layout(rect=(0, 0.06 if handles else 0, 1, 0.97))
        safe = _SAFE.sub("_", metric)
        path = table.with_name(f"{table.stem}_{safe}.png")
        save_figure(fig, path)
        paths.append(path)
    return paths


def _main_json(args: list[str]) -> int:
    """`python -m stability.app.sweep.engine '["deep", "retrain", ...]'`: the `stability` CLI on a JSON argv."""
    from stability.app.cli import main

    return main(json.loads(args[0]))


if __name__ == "__main__":  # pragma: no cover - run by torchrun in a multi-process cell
    sys.exit(_main_json(sys.argv[1:]))


__all__ = [
    "COMMANDS",
    "Cell",
    "CollectResult",
    "SlurmCell",
    "SweepReport",
    "SweepSpec",
    "available_cores",
    "cell_name",
    "collect",
    "expand",
    "find_runs",
    "load_spec",
    "parse_spec",
    "read_status",
    "run_cell",
    "run_command",
    "run_sweep",
    "slurm_parameters",
    "thread_env",
]

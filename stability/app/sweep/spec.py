"""Sweep specs: a TOML file naming a command, its fixed options and the axes to sweep.

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
A grid has at most `MAX_CELLS` cells (the product of the axes' sizes, counted from the spec
before any axis is expanded: ``seeds = 100000000`` is refused in one line, not built).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stability.app.sweep.processes import first_line
from stability.app.sweep.registry import (
    COMMANDS,
    RESERVED,
    CommandInfo,
    OptionInfo,
    command_info,
    name_token,
)
from stability.errors import UsageError
from stability.runs.jsonsafe import jsonable

SPEC_KEYS = frozenset({"command", "out", "options", "axes", "seeds", "exclude", "slurm"})
RANGE_KEYS = frozenset({"start", "stop", "step", "num", "log"})
MAX_AXIS = 100000  # values of one range axis
# Cells of one grid (the product of the axes' sizes, exclusions not subtracted). Expanding a
# cell costs about 1.8 KB and 0.12 ms of CPU (argv checked by the command's parser; measured
# with a dry run of 40,000 cells), so this caps a plan at about 180 MB and 12 s before anything
# runs; every cell is a process and a run folder, so a larger grid is a mistake (seeds = 1e8
# reached 4.6 GB during --dry-run), not a sweep one machine or one Slurm array can run.
MAX_CELLS = 100000


@dataclass
class SweepSpec:
    """A validated sweep: command, fixed options and axes (values in spec order).

    Parameters
    ----------
    command : str
        The command's name (a key of `registry.COMMANDS`).
    fixed : dict
        dest -> value, the same for every cell (a list for multi-valued options, True for
        flags).
    axes : dict
        dest -> list of values; one cell per combination.
    exclude : list of dict
        Combinations left out of the grid, each dest -> value: a cell matching every key of
        one of them is skipped.
    slurm : dict
        The [slurm] table (executor parameters), validated by `slurm.slurm_parameters`.
    out : str or None
        The sweep's folder named in the spec.
    raw : dict
        The spec as read (JSON types, inf as "inf"), recorded in sweep.json.
    source : str
        The spec's file, for messages.
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
        """The command this sweep runs."""
        return COMMANDS[self.command]

    def excludes(self, values: dict) -> bool:
        """Whether a cell (dest -> value of every axis) matches one of the exclusions."""
        return any(all(_same(values[k], v) for k, v in rule.items()) for rule in self.exclude)


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a TOML spec.

    Parameters
    ----------
    path : str or Path
        The spec file.

    Returns
    -------
    SweepSpec

    Raises
    ------
    UsageError
        One line: the file is unreadable, not TOML, or not a valid spec (`parse_spec`).
    """
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
        raise UsageError(f"{path}: invalid TOML: {first_line(str(exc))}") from None
    return parse_spec(data, source=str(path))


def _check_tables(data: dict, where: str) -> None:
    unknown = sorted(set(data) - SPEC_KEYS)
    if unknown:
        raise UsageError(
            f"{where}unknown key {unknown[0]!r} in the spec; accepted: {', '.join(sorted(SPEC_KEYS))}"
        )
    if "command" not in data:
        raise UsageError(f'{where}the spec names no command (e.g. command = "simulate gaussian")')
    if not isinstance(data["command"], str):
        raise UsageError(f"{where}command must be a string, got {data['command']!r}")
    for key in ("options", "axes", "slurm"):
        if key in data and not isinstance(data[key], dict):
            raise UsageError(f"{where}[{key}] must be a table")
    out = data.get("out")
    if out is not None and (not isinstance(out, str) or not out):
        raise UsageError(f"{where}out must be a folder name, got {out!r}")


def parse_spec(data: dict, source: str = "") -> SweepSpec:
    """Validate a spec given as a dict (as tomllib returns it) against the command's parser.

    Checks the keys, every option name against the command's own parser, the shape of every
    value (one value, a list for multi-valued options, true/false for flags), the axes (lists
    or ranges, no repeated value, none both fixed and swept) and the exclusions. The values
    themselves are checked by the command's parser when the grid is expanded (`cells.expand`).

    Parameters
    ----------
    data : dict
        The spec: command, out, options, axes, seeds, exclude, slurm.
    source : str
        Where it comes from, prefixed to messages.

    Returns
    -------
    SweepSpec

    Raises
    ------
    UsageError
        One line naming the first problem.
    """
    where = f"{source}: " if source else ""
    _check_tables(data, where)
    info = command_info(data["command"])
    _check_grid(data, where)  # before any axis is expanded into a list
    accepted = info.options()
    fixed = {}
    for key, value in data.get("options", {}).items():
        opt = _lookup(key, accepted, info, where)
        fixed[opt.dest] = _normalise(opt, value, f"{where}option {key!r}")
    axes = _axes(data, accepted, info, where)
    both = sorted(set(fixed) & set(axes))
    if both:
        raise UsageError(f"{where}option {both[0]!r} is both fixed ([options]) and swept ([axes])")
    return SweepSpec(
        command=info.name,
        fixed=fixed,
        axes=axes,
        exclude=_exclusions(data.get("exclude", []), axes, accepted, where),
        slurm=dict(data.get("slurm", {})),
        out=data.get("out"),
        raw=jsonable(data),
        source=source,
    )


def _claimed_size(value, seeds: bool = False) -> int:
    """The number of values an axis's spec claims, computed without building them.

    A count of seeds (`seeds`: the axis is ``seeds``), a list's length, a range's num or its
    number of steps; 1 for anything malformed (its own check refuses it later with a better
    message).
    """
    if isinstance(value, bool):
        return 1
    if isinstance(value, int):
        return max(value, 1) if seeds else 1
    if isinstance(value, list):
        return max(len(value), 1)
    if not isinstance(value, dict):
        return 1
    if "num" in value:
        num = value["num"]
        return num if isinstance(num, int) and not isinstance(num, bool) and num > 1 else 1
    bounds = [value.get("start"), value.get("stop"), value.get("step", 1)]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bounds):
        return 1
    start, stop, step = bounds
    if not all(math.isfinite(v) for v in bounds) or step == 0:
        return 1
    count = (stop - start) / step  # as `_range` counts; inf when stop - start overflows
    return max(math.ceil(count - 1e-9), 1) if math.isfinite(count) else MAX_CELLS + 1


def axis_sizes(data: dict) -> dict[str, int]:
    """The claimed size of every axis of a spec (the [axes] table and a top-level seeds).

    Parameters
    ----------
    data : dict
        The spec as tomllib returns it.

    Returns
    -------
    dict
        Axis name (as written) -> its number of values (>= 1), in spec order.
    """
    axes = data.get("axes", {})
    sizes = {}
    for k, v in axes.items() if isinstance(axes, dict) else ():
        sizes[str(k)] = _claimed_size(v, seeds=k == "seeds")
    if "seeds" in data:
        sizes["seeds"] = _claimed_size(data["seeds"], seeds=True)
    return sizes


def grid_size(data: dict) -> int:
    """The number of cells a spec's grid claims: the product of `axis_sizes` (an exact
    integer, however large), computed before any axis is expanded.

    Parameters
    ----------
    data : dict
        The spec as tomllib returns it.

    Returns
    -------
    int
    """
    return math.prod(axis_sizes(data).values())


def _count(n: int) -> str:
    return f"{n:,}" if n < 10**15 else f"about 10^{len(str(n)) - 1}"


def _check_grid(data: dict, where: str) -> None:
    cells = grid_size(data)
    if cells > MAX_CELLS:
        sizes = sorted(axis_sizes(data).items(), key=lambda kv: -kv[1])[:3]
        largest = ", ".join(f"{k}: {_count(v)}" for k, v in sizes)
        raise UsageError(
            f"{where}the axes make {_count(cells)} cells ({largest}); a sweep may have at "
            f"most {MAX_CELLS:,}"
        )


def _axes(data: dict, accepted: dict, info: CommandInfo, where: str) -> dict[str, list]:
    """The [axes] table (and a top-level seeds) as dest -> list of normalised values."""
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
            token = name_token(v)
            if token in seen:
                raise UsageError(f"{where}axis {key!r} repeats the value {token}")
            seen.add(token)
        axes[opt.dest] = values
    return axes


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
    """The seed axis: a count (0 .. count-1), a list of integers or a range table."""
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


def _axis_values(value, where: str) -> list:
    """The values of an axis: a list, or a range table {start, stop, step | num [, log]}."""
    if isinstance(value, list):
        if not value:
            raise UsageError(f"{where} is empty")
        return list(value)
    if isinstance(value, dict):
        return _range(value, where)
    raise UsageError(f"{where}: give a list of values or a range {{start = .., stop = ..}}")


def _check_range(spec: dict, where: str) -> None:
    extra = sorted(set(spec) - RANGE_KEYS)
    if extra:
        raise UsageError(f"{where}: unknown range key {extra[0]!r}; use start, stop, step or num")
    if "start" not in spec or "stop" not in spec:
        raise UsageError(f"{where}: a range needs start and stop")
    for k in ("start", "stop", "step", "num"):
        v = spec.get(k, 0)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise UsageError(f"{where}: range {k} must be a finite number, got {v!r}")
    if "step" in spec and "num" in spec:
        raise UsageError(f"{where}: give step or num, not both")


def _range(spec: dict, where: str) -> list:
    """A range table as its list of values: {start, stop[, step]} half-open as Python's range,
    {start, stop, num[, log]} inclusive with num evenly (or geometrically) spaced values."""
    _check_range(spec, where)
    start, stop = spec["start"], spec["stop"]
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
        raw = [start] if num == 1 else raw[:-1] + [stop]  # the exact end point despite rounding
    else:
        if "log" in spec:
            raise UsageError(f"{where}: log needs num (a geometric range of num values)")
        step = spec.get("step", 1)
        if step == 0:
            raise UsageError(f"{where}: step must not be 0")
        count = max(0, math.ceil((stop - start) / step - 1e-9))
        if count > MAX_AXIS:
            raise UsageError(f"{where}: {count} values is too many for one axis")
        raw = [start + k * step for k in range(count)]
    if not raw:
        raise UsageError(f"{where} is empty (start {start}, stop {stop})")
    # Round away the binary noise of k * step (0.1 * 3 = 0.30000000000000004) so that folder
    # names and argv read as the user wrote them; integers stay integers.
    integral = all(isinstance(spec[k], int) for k in ("start", "stop", "step", "num") if k in spec)
    out = []
    for v in raw:
        v = float(f"{v:.12g}")
        out.append(int(v) if integral and v == int(v) else v)
    return out


__all__ = [
    "MAX_AXIS",
    "MAX_CELLS",
    "SPEC_KEYS",
    "SweepSpec",
    "axis_sizes",
    "grid_size",
    "load_spec",
    "parse_spec",
]

"""The cells of a sweep: one run of the command per combination of the axes.

Cell folders are named from the swept options, sorted: ``OUT/lam=0.5__seed=1``; each cell's
argv is exactly what a user would type after ``stability`` to run it alone, ``--out OUT/<cell>``
included. Logs of a cell's attempts go to ``OUT/logs/<cell>.log``.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stability.app.sweep.processes import first_line
from stability.app.sweep.registry import name_token
from stability.app.sweep.spec import SweepSpec
from stability.errors import UsageError

MAX_NAME = 200  # folder names stay well under the 255 bytes of most file systems
_UNSAFE = re.compile(r"[^A-Za-z0-9._,+=-]")


@dataclass
class Cell:
    """One run of the grid.

    Parameters
    ----------
    name : str
        Its folder name (`cell_name`).
    options : dict
        Its swept values, dest -> value.
    argv : list of str
        The command line after ``stability``, ``--out`` included.
    folder : Path
        Its run folder, OUT/name.
    """

    name: str
    options: dict[str, Any]
    argv: list[str]
    folder: Path

    @property
    def finished(self) -> bool:
        """Whether its run folder holds a summary.csv (the commands write it last but figures)."""
        return (self.folder / "summary.csv").exists()


def cell_name(values: dict[str, Any]) -> str:
    """The folder name of a cell: ``key=value`` pairs sorted by key, joined by ``__``.

    Characters outside [A-Za-z0-9._,+=-] become ``_``; a name that had to be changed (or that is
    longer than MAX_NAME) gets a short hash of the exact values, so two cells never share a
    folder. No axes: ``run``.

    Parameters
    ----------
    values : dict
        The cell's swept values, dest -> value.

    Returns
    -------
    str
    """
    if not values:
        return "run"
    exact = "__".join(f"{k}={name_token(values[k])}" for k in sorted(values))
    safe = _UNSAFE.sub("_", exact)
    if safe.startswith("."):
        safe = "_" + safe[1:]
    if safe != exact or len(safe) > MAX_NAME:
        digest = hashlib.sha1(exact.encode()).hexdigest()[:8]
        safe = f"{safe[: MAX_NAME - 10]}~{digest}"
    return safe


def log_path(out: str | Path, name: str) -> Path:
    """The log of a cell's attempts, OUT/logs/<name>.log."""
    return Path(out) / "logs" / f"{name}.log"


def expand(spec: SweepSpec, out: str | Path) -> list[Cell]:
    """Every cell of the grid (last axis fastest), each argv checked by the command's parser.

    Writes nothing.

    Parameters
    ----------
    spec : SweepSpec
    out : str or Path
        The sweep's folder (made absolute in the cells' argv).

    Returns
    -------
    list of Cell

    Raises
    ------
    UsageError
        One line: a cell's options do not parse, two cells would share a folder, or every
        cell is excluded.
    """
    info = spec.info
    out = Path(out).absolute()
    parser = info.parser()
    table = info.options()
    keys = list(spec.axes)
    cells, names = [], {}
    for combo in itertools.product(*(spec.axes[k] for k in keys)):
        values = dict(zip(keys, combo))
        if spec.excludes(values):
            continue
        name = cell_name(values)
        if name in names:
            raise UsageError(f"cells {names[name]} and {values} would share the folder {name!r}")
        names[name] = values
        folder = out / name
        argv = [*info.words, *info.argv({**spec.fixed, **values}, table), "--out", str(folder)]
        try:
            parser.parse_args(argv[len(info.words) :])
        except UsageError as exc:
            raise UsageError(f"cell {name}: {first_line(str(exc))}") from None
        cells.append(Cell(name, values, argv, folder))
    if not cells:
        raise UsageError("every cell of the grid is excluded: nothing to run")
    return cells


__all__ = ["MAX_NAME", "Cell", "cell_name", "expand", "log_path"]

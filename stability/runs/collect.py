"""Collect: many run folders into one tidy table (CSV, and Parquet with pyarrow) and figures.

Every run writes DIR/config.json and DIR/summary.csv (`stability.runs.runfolder`); a sweep
writes an index, DIR/sweep.json, naming its cells (sub-folders), the values each cell sweeps
and each cell's status. `find_runs` finds the finished runs under any folders (sweeps, run
folders, or folders holding them), `collect` stacks their summaries into one long table with
the swept options as columns, and `stability.runs.collect_figures` draws one comparison figure
per metric. The table keeps every value exactly as written in the summaries (strings), so the
CSV is a faithful concatenation; the Parquet copy types each column (int, float, string).
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from stability.errors import UsageError
from stability.runs.runfolder import SUMMARY_COLUMNS, atomic_write_bytes, atomic_write_text

# A sweep folder's index (written by `stability sweep`, read here to find its cells).
SWEEP_FILE = "sweep.json"
SWEEP_FORMAT = "retrain-stability/sweep-v1"
# Options already carried by the summary's own columns (lam and policy per row, runs).
IN_SUMMARY = frozenset(SUMMARY_COLUMNS) | {"lams"}


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[0][:300] if lines else ""


def read_sweep_index(folder: str | Path) -> dict | None:
    """A sweep folder's index, FOLDER/sweep.json, as a dict; None if the folder has none.

    Parameters
    ----------
    folder : str or Path
        The sweep folder.

    Returns
    -------
    dict or None
        With at least ``format``, ``command``, ``axes`` (axis name -> values) and ``cells``
        (records with ``name``, ``options`` (the cell's swept values) and ``status``).

    Raises
    ------
    UsageError
        If the file exists but is unreadable or not a sweep index of this toolkit.
    """
    path = Path(folder) / SWEEP_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {_first_line(str(exc))}") from None
    if not isinstance(data, dict) or data.get("format") != SWEEP_FORMAT:
        raise UsageError(f"{path} is not a sweep status file of this toolkit")
    return data


@dataclass
class RunInfo:
    """A finished run folder found by `find_runs`.

    Parameters
    ----------
    path : Path
        The run folder (absolute).
    command : str
        Its command, from config.json (e.g. ``"simulate gaussian"``).
    options : dict
        Its options, from config.json.
    swept : dict
        The values its sweep gave it (axis name -> value), from sweep.json; empty for a loose
        run folder.
    sweep : Path or None
        The sweep folder it belongs to, None for a loose run folder.
    """

    path: Path
    command: str
    options: dict
    swept: dict
    sweep: Path | None = None


@dataclass
class CollectResult:
    """What `collect` wrote and the shape of its table.

    Parameters
    ----------
    table : Path
        The CSV table.
    parquet : Path or None
        Its Parquet copy (None without pyarrow).
    figures : list of Path
        One PNG per metric.
    rows, runs : int
        Rows of the table and runs it gathers.
    columns : list of str
        The table's columns: run, command, the swept options, then summary.csv's columns.
    swept : list of str
        The swept-option columns.
    skipped : list of str
        Unfinished sweep cells left out, each ``"SWEEP/CELL (status)"``.
    notes : list of str
        Other remarks (figures with more panels than drawn).
    """

    table: Path
    parquet: Path | None
    figures: list[Path]
    rows: int
    runs: int
    columns: list[str]
    swept: list[str]
    skipped: list[str]
    notes: list[str] = field(default_factory=list)


def read_config(path: Path) -> dict:
    """A run folder's config.json (UsageError if unreadable or without options)."""
    try:
        cfg = json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read {path / 'config.json'}: {_first_line(str(exc))}") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("options"), dict):
        raise UsageError(f"{path / 'config.json'} has no options: not a run folder")
    return cfg


def _finished(path: Path) -> bool:
    return (path / "summary.csv").exists() and (path / "config.json").exists()


class _Finder:
    """The state of one `find_runs` call: runs found, axis names, skipped cells."""

    def __init__(self):
        self.runs: list[RunInfo] = []
        self.axes: list[str] = []
        self.skipped: list[str] = []
        self.seen: set[Path] = set()

    def add(self, path: Path, swept: dict, sweep: Path | None) -> None:
        if path.resolve() in self.seen:  # the same folder given twice, or through a link
            return
        self.seen.add(path.resolve())
        path = path.absolute()
        cfg = read_config(path)
        self.runs.append(RunInfo(path, cfg.get("command", ""), cfg["options"], swept, sweep))

    def add_sweep(self, sweep: Path) -> None:
        index = read_sweep_index(sweep) or {}
        for ax in index.get("axes", {}):
            if ax not in self.axes:
                self.axes.append(ax)
        for rec in index.get("cells", []):
            path = sweep / rec["name"]
            if _finished(path):
                self.add(path, rec.get("options", {}), sweep)
            else:
                self.skipped.append(f"{sweep}/{rec['name']} ({rec.get('status', 'pending')})")

    def add_folder(self, d: Path) -> None:
        if not d.is_dir():
            raise UsageError(f"{str(d)!r} is not a folder")
        found = {p.parent for p in d.rglob(SWEEP_FILE)}
        if read_sweep_index(d):
            found.add(d)
        sweeps = sorted(found)
        for sweep in sweeps:
            self.add_sweep(sweep)
        inside = {s.resolve() for s in sweeps}
        loose = [d] if _finished(d) else sorted(p.parent for p in d.rglob("summary.csv"))
        for path in loose:
            # Cells of a sweep come with their swept values, not as loose runs.
            if _finished(path) and not inside.intersection(path.resolve().parents):
                self.add(path, {}, None)


def find_runs(dirs: Iterable[str | Path]) -> tuple[list[RunInfo], list[str], list[str]]:
    """The finished runs under `dirs`: sweep folders, run folders, or folders holding them.

    A sweep folder (with sweep.json) found anywhere contributes its finished cells with their
    swept values, and its axes; other folders with config.json and summary.csv are loose runs.
    A folder met twice (given twice, or through a link) counts once.

    Parameters
    ----------
    dirs : iterable of str or Path
        The folders to search.

    Returns
    -------
    runs : list of RunInfo
    axes : list of str
        The axis names of the sweeps found, in order of first appearance.
    skipped : list of str
        The unfinished sweep cells, ``"SWEEP/CELL (status)"``.
    """
    finder = _Finder()
    for d in dirs:
        finder.add_folder(Path(d))
    return finder.runs, finder.axes, finder.skipped


def option_text(value) -> str:
    """An option's value as a table cell: numbers as Python writes them, lists space-separated."""
    if isinstance(value, list):
        return " ".join(option_text(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def swept_columns(runs: list[RunInfo], axes: list[str]) -> list[str]:
    """The option columns of the table.

    One source (a sweep or a run folder): its axes. Several sources: the axes plus every config
    option whose value differs between the runs. Options that summary.csv already carries per
    row (lam, policy, runs) are left out.

    Parameters
    ----------
    runs : list of RunInfo
    axes : list of str
        Axis names of the sweeps (from `find_runs`).

    Returns
    -------
    list of str
    """
    cols = [a for a in axes if a not in IN_SUMMARY]
    sources = {r.sweep if r.sweep is not None else r.path for r in runs}
    if len(sources) > 1:
        keys = list(dict.fromkeys(k for r in runs for k in r.options))
        for k in keys:
            if k in IN_SUMMARY or k in cols:
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


# summary.csv's numeric columns and the kind every value must read as (the figures and the
# Parquet copy convert them; checked on reading so that a bad value is refused, exit 2, before
# the table is written, not found while drawing after it).
NUMERIC_COLUMNS = {
    "lam": float,
    "t": int,
    "runs": int,
    "mean": float,
    "se": float,
    "q05": float,
    "q50": float,
    "q95": float,
}


def _first_bad(values, kind) -> tuple[int, str] | None:
    """The first (row, value) of `values` that `kind` cannot read, None if there is none."""
    for i, v in enumerate(values):
        try:
            kind(v)
        except (ValueError, TypeError, OverflowError):
            return i, v
    return None


def read_summary_table(path: Path):
    """One run's summary.csv as strings, checked: every column of SUMMARY_COLUMNS present and
    every value of the numeric ones readable as its kind (`NUMERIC_COLUMNS`).

    Parameters
    ----------
    path : Path
        The summary.csv file.

    Returns
    -------
    pandas.DataFrame, shape (rows, columns of the file)
        Every value a string exactly as written; columns beyond SUMMARY_COLUMNS are kept.

    Raises
    ------
    UsageError
        One line naming the file: unreadable, not a CSV table, columns missing (named), or a
        value that is not a number (column, row and value named).
    """
    import pandas as pd

    try:
        summary = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except pd.errors.EmptyDataError:
        raise UsageError(f"{path} is empty: not a summary of this toolkit") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise UsageError(f"cannot read {path}: {_first_line(str(exc))}") from None
    missing = [c for c in SUMMARY_COLUMNS if c not in summary.columns]
    if missing:
        raise UsageError(
            f"{path} lacks the column(s) {', '.join(missing)}: not a summary of this toolkit"
        )
    for col, kind in NUMERIC_COLUMNS.items():
        try:  # the conversion the figures make, vectorised; the row is looked for on failure
            summary[col].astype(kind)
        except (ValueError, TypeError, OverflowError):
            row, value = _first_bad(summary[col], kind) or (-1, "")
            what = "an integer" if kind is int else "a number"
            where = f"row {row + 1}: {value[:40]!r}" if row >= 0 else "a value"
            raise UsageError(f"{path}: column {col}, {where} is not {what}") from None
    return summary


def run_table(runs: list[RunInfo], swept: list[str]):
    """The tidy table of `runs`: one row per row of their summary.csv, every value a string.

    Parameters
    ----------
    runs : list of RunInfo
    swept : list of str
        The option columns (from `swept_columns`).

    Returns
    -------
    pandas.DataFrame
        Columns run (the folder relative to the runs' common parent), command, the swept
        options, then SUMMARY_COLUMNS, values exactly as written in each summary.csv.

    Raises
    ------
    UsageError
        A summary.csv that is unreadable, lacks a column or holds a value that is not a number
        (`read_summary_table`); every summary is read and checked before the table exists.
    """
    import pandas as pd

    columns = ["run", "command", *swept, *SUMMARY_COLUMNS]
    frames = []
    for r in runs:
        summary = read_summary_table(r.path / "summary.csv")
        front = {k: option_text(r.swept[k] if k in r.swept else r.options.get(k)) for k in swept}
        front = {"run": _run_label(r.path, runs), "command": r.command, **front}
        summary = summary[list(SUMMARY_COLUMNS)]
        frames.append(summary.assign(**front)[columns])
    if not frames:
        return pd.DataFrame(columns=columns, dtype=str)
    return pd.concat(frames, ignore_index=True)


def typed_table(table):
    """The table with each column as int64, float64 (inf and nan included) or string.

    A column becomes integer when every value reads as an integer, float when every value
    reads as a float, and stays a string otherwise (an empty cell keeps a column a string).

    Parameters
    ----------
    table : pandas.DataFrame
        A table of strings (from `run_table`).

    Returns
    -------
    pandas.DataFrame
    """
    out = table.copy()
    for col in table.columns:
        for kind in ("int64", "float64"):
            try:
                out[col] = table[col].astype(kind)
                break
            except (ValueError, TypeError, OverflowError):
                continue
    return out


def write_parquet(path: Path, table) -> Path | None:
    """Write `typed_table(table)` as Parquet atomically; None (nothing written) without pyarrow.

    Parameters
    ----------
    path : Path
        The .parquet file.
    table : pandas.DataFrame
        A table of strings (from `run_table`).

    Returns
    -------
    Path or None
    """
    try:
        import pyarrow  # noqa: F401 - pandas' Parquet engine; optional
    except ImportError:
        return None
    buf = io.BytesIO()
    typed_table(table).to_parquet(buf, index=False, engine="pyarrow")
    atomic_write_bytes(path, buf.getvalue())
    return path


def _table_path(dirs: list[Path], out: str | Path | None) -> Path:
    if not dirs:
        raise UsageError("give at least one folder")
    if out is None:
        if len(dirs) > 1:
            raise UsageError("give --out FILE.csv when collecting several folders")
        out = dirs[0] / "results.csv"
    out = Path(out)
    if out.suffix.lower() != ".csv":
        raise UsageError(f"--out must be a .csv file, got {str(out)!r}")
    return out


def collect(
    dirs: Iterable[str | Path], out: str | Path | None = None, figures: bool = True
) -> CollectResult:
    """Gather run folders into one tidy CSV (and Parquet if pyarrow is importable) + figures.

    Columns: run, command, the swept options (`swept_columns`), then summary.csv's columns
    (policy, lam, t, metric, runs, mean, se, q05, q50, q95), values exactly as in each
    summary.csv. Figures (`comparison_figures`): one PNG per metric, ``<table stem>_<metric>.png``
    beside the table.

    Parameters
    ----------
    dirs : iterable of str or Path
        Sweep folders, run folders, or folders holding them.
    out : str or Path, optional
        The table, a .csv file; default DIR/results.csv for a single DIR.
    figures : bool
        Draw the comparison figures.

    Returns
    -------
    CollectResult

    Raises
    ------
    UsageError
        No folder, a missing --out for several folders, an --out that is not .csv, a path that
        is not a folder, no finished run under the folders, a summary.csv that lacks one of
        SUMMARY_COLUMNS or holds a value that is not a number. Nothing is written then.
    """
    dirs = [Path(d) for d in dirs]
    out = _table_path(dirs, out)
    runs, axes, skipped = find_runs(dirs)
    if not runs:
        raise UsageError(
            f"no finished run folder (config.json and summary.csv) under {', '.join(map(str, dirs))}"
        )
    swept = swept_columns(runs, axes)
    table = run_table(runs, swept)
    buf = io.StringIO()
    table.to_csv(buf, index=False, lineterminator="\n")
    atomic_write_text(out, buf.getvalue())
    parquet = write_parquet(out.with_suffix(".parquet"), table)
    paths, notes = [], []
    if figures:
        from stability.runs.collect_figures import comparison_figures

        paths, notes = comparison_figures(table, swept, out)
    columns = list(table.columns)
    return CollectResult(out, parquet, paths, len(table), len(runs), columns, swept, skipped, notes)


__all__ = [
    "IN_SUMMARY",
    "NUMERIC_COLUMNS",
    "SWEEP_FILE",
    "SWEEP_FORMAT",
    "CollectResult",
    "RunInfo",
    "collect",
    "find_runs",
    "option_text",
    "read_config",
    "read_summary_table",
    "read_sweep_index",
    "run_table",
    "swept_columns",
    "typed_table",
    "write_parquet",
]

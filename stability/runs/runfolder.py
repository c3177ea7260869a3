"""Run folders: atomic writes, a self-describing config.json, resume, tidy summary.csv.

Every simulation writes DIR/config.json (all that is needed to rerun it, seed and versions
included), DIR/summary.csv in tidy long form (policy, lam, t, metric, runs, mean, se, q05, q50,
q95) and figures under DIR/figures/. Files are written to a temporary name and renamed, so a
crash never leaves a half-written file; a rerun of the same command finds the finished pieces
and continues.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import tempfile
from pathlib import Path

import numpy as np

from stability.errors import UsageError

SUMMARY_COLUMNS = ("policy", "lam", "t", "metric", "runs", "mean", "se", "q05", "q50", "q95")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically; see `atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode())


def atomic_save_npz(path: Path, **arrays) -> None:
    """Save numpy arrays (any shapes, by keyword) to an .npz file atomically."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def format_lam(lam: float) -> str:
    """lambda as written in files: a number, or 'inf' for fully synthetic."""
    return "inf" if math.isinf(lam) else repr(float(lam))


def versions() -> dict:
    """Versions of Python, the toolkit and the numeric packages, for config.json."""
    """Versions of what produced a run (recorded in config.json)."""
    from importlib import metadata

    import scipy

    from stability import __version__

    out = {
        "retrain-stability": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
    }
    # Read installed versions from metadata: importing torch just to name it costs seconds.
    for dist in ("torch", "POT", "torchcfm", "torchdiffeq"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


class RunFolder:
    """A run folder DIR with config.json; refuses to mix two different runs in one folder.

    Parameters
    ----------
    out : the folder
    command : e.g. "simulate gaussian"
    options : the options that determine the results (seed included); options that do not
        change the numbers (number of workers, progress bars) must not be in it
    """

    def __init__(self, out: str | Path, command: str, options: dict):
        self.path = Path(out)
        self.command = command
        self.options = json.loads(json.dumps(options))  # normalise to JSON types

    def check_writable(self) -> None:
        """Raise ValueError if the folder cannot be used (before anything is written)."""
        p = self.path
        if p.exists() and not p.is_dir():
            raise UsageError(f"--out {str(p)!r} exists and is not a folder")
        cfg = p / "config.json"
        if cfg.exists():
            try:
                old = json.loads(cfg.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise UsageError(f"cannot read {cfg}: {exc}") from None
            if old.get("command") != self.command or old.get("options") != self.options:
                raise UsageError(
                    f"{str(p)!r} holds a different run (its config.json differs); use another --out"
                )
        parent = p if p.exists() else next((q for q in p.parents if q.exists()), Path("."))
        if not os.access(parent, os.W_OK):
            raise UsageError(f"--out {str(p)!r} is not writable")

    @property
    def resuming(self) -> bool:
        """True when the folder already holds this run's config.json (a rerun resumes)."""
        return (self.path / "config.json").exists()

    def write_config(self, extra: dict | None = None) -> None:
        """Write config.json (command, options, package versions, `extra`) unless resuming."""
        if self.resuming:
            return
        cfg = {"command": self.command, "options": self.options, "versions": versions()}
        cfg.update(extra or {})
        atomic_write_text(self.path / "config.json", json.dumps(cfg, indent=2) + "\n")

    def file(self, *parts: str) -> Path:
        """The path of a file inside the folder."""
        return self.path.joinpath(*parts)


def summarize(values: np.ndarray) -> dict:
    """Mean, standard error and 5/50/95% quantiles over runs of an array of shape (R, T+1).

    Infinite values (a collapsed covariance has log det = -inf and an infinite precision) are
    kept: the mean is then infinite too, rather than the mean of the finite runs, which would
    be biased towards the runs that have not collapsed yet. `runs` counts all runs.
    """
    out = {k: [] for k in ("runs", "mean", "se", "q05", "q50", "q95")}
    with np.errstate(invalid="ignore", over="ignore"):
        qs = np.quantile(values, [0.05, 0.5, 0.95], axis=0, method="linear")
        means = values.mean(axis=0)
        ses = (
            values.std(axis=0, ddof=1) / math.sqrt(values.shape[0]) if values.shape[0] > 1 else None
        )
    for t in range(values.shape[1]):
        out["runs"].append(int(values.shape[0]))
        out["mean"].append(float(means[t]))
        out["se"].append(float(ses[t]) if ses is not None else float("nan"))
        for key, q in zip(("q05", "q50", "q95"), qs[:, t]):
            out[key].append(float(q))
    return out


def summary_rows(policy: str, lam: float, metric: str, values: np.ndarray) -> list[dict]:
    """Tidy rows (one per t) for one (policy, lam, metric), values of shape (R, T+1)."""
    s = summarize(values)
    return [
        {
            "policy": policy,
            "lam": format_lam(lam),
            "t": t,
            "metric": metric,
            **{k: s[k][t] for k in ("runs", "mean", "se", "q05", "q50", "q95")},
        }
        for t in range(values.shape[1])
    ]


def write_summary(path: Path, rows: list[dict]) -> None:
    """Write tidy rows to CSV atomically (floats with 17 significant digits: exact round trip)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())


def read_summary(path: Path) -> list[dict]:
    """Read a summary.csv back (numbers as floats, lam as float with inf)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["lam"] = float(r["lam"])
        r["t"] = int(r["t"])
        r["runs"] = int(r["runs"])
        for k in ("mean", "se", "q05", "q50", "q95"):
            r[k] = float(r[k])
    return rows


def describe_run(folder: RunFolder, rows: list[dict], figures: list[str], iterations: int) -> dict:
    """What a finished run prints with --json: its files and each metric at the last iteration.

    Parameters
    ----------
    folder : RunFolder
    rows : list of dict
        The tidy summary rows (`summary_rows`).
    figures : list of str
        Paths of the figures written.
    iterations : int
        T, the last iteration: ``final[lam][metric]`` holds that row's mean and se.
    """
    final = {}
    for r in rows:
        if r["t"] == iterations:
            final.setdefault(format_lam(r["lam"]), {})[r["metric"]] = {
                "mean": r["mean"],
                "se": r["se"],
            }
    return {
        "out": str(folder.path),
        "config": str(folder.file("config.json")),
        "summary": str(folder.file("summary.csv")),
        "figures": figures,
        "iterations": iterations,
        "final": final,
    }

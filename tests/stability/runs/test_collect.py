"""collect: run folders and sweeps (made here by hand) into one tidy table and figures."""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
import pytest

from stability.errors import UsageError
from stability.runs.collect import (
    SWEEP_FILE,
    SWEEP_FORMAT,
    collect,
    find_runs,
    run_table,
    typed_table,
)
from stability.runs.collect_figures import comparison_figures, facet_columns, metric_figure
from stability.runs.jsonsafe import jsonable
from stability.runs.runfolder import summary_rows, write_summary

METRICS = ("mean_err2", "trace_cov", "trace_sqrt_cov", "logdet_cov", "w2", "theta_err")
PNG = b"\x89PNG\r\n\x1a\n"


def make_run(folder: Path, lams=(0.5,), iterations: int = 3, runs: int = 20, **options) -> Path:
    """A finished run folder: config.json and a summary.csv of random values, seeded by folder."""
    options = {"n": 100, "seed": 0, "policy": "mix", **options}
    rng = np.random.default_rng(zlib.crc32(folder.name.encode()))
    rows = []
    for lam in lams:
        for metric in METRICS:
            rows += summary_rows("mix", lam, metric, rng.lognormal(size=(runs, iterations + 1)))
    write_summary(folder / "summary.csv", rows)
    config = {
        "command": "simulate gaussian",
        "options": {**options, "lams": list(lams), "runs": runs, "iterations": iterations},
    }
    (folder / "config.json").write_text(json.dumps(jsonable(config)))
    return folder


def make_sweep(folder: Path, cells: dict[str, dict], unfinished: dict | None = None) -> Path:
    """A sweep folder: sweep.json naming `cells` (name -> swept values) and their run folders,
    plus `unfinished` cells (name -> status) that have no summary."""
    axes = {}
    for values in cells.values():
        for k, v in values.items():
            axes.setdefault(k, []).append(v)
    records = [
        {"name": name, "options": jsonable(values), "status": "done"}
        for name, values in cells.items()
    ]
    records += [
        {"name": name, "options": {}, "status": s} for name, s in (unfinished or {}).items()
    ]
    for name, values in cells.items():
        lam = values.get("lam", 0.5)
        make_run(folder / name, lams=(lam,), **{k: v for k, v in values.items() if k != "lam"})
    index = {"format": SWEEP_FORMAT, "command": "simulate gaussian", "axes": jsonable(axes)}
    (folder / SWEEP_FILE).write_text(json.dumps({**index, "cells": records}))
    return folder


def lam_sweep(folder: Path, **unfinished) -> Path:
    return make_sweep(folder, {"lam=0.5": {"lam": 0.5}, "lam=inf": {"lam": math.inf}}, unfinished)


def test_collect_a_sweep_into_one_table_and_figures(tmp_path):
    sweep = lam_sweep(tmp_path / "sweep")
    result = collect([sweep], tmp_path / "all.csv")
    assert (result.rows, result.runs, result.skipped) == (48, 2, [])
    lines = result.table.read_text().splitlines()
    # lam is swept but is already a column of every summary row; nothing else was swept.
    assert lines[0] == "run,command,policy,lam,t,metric,runs,mean,se,q05,q50,q95"
    body = [ln.split(",") for ln in lines[1:]]
    assert len(body) == 2 * 6 * 4  # cells x metrics x (T + 1)
    assert {b[0] for b in body} == {"lam=0.5", "lam=inf"} and {b[3] for b in body} == {"0.5", "inf"}
    # Values exactly as in the cells' own summary.csv, in their order.
    for cell in ("lam=0.5", "lam=inf"):
        own = (sweep / cell / "summary.csv").read_text().splitlines()[1:]
        assert [",".join(b[2:]) for b in body if b[0] == cell] == own
    assert {b[1] for b in body} == {"simulate gaussian"}
    figures = sorted(tmp_path.glob("all_*.png"))
    assert [f.name for f in figures] == [f"all_{m}.png" for m in sorted(METRICS)]
    assert sorted(result.figures) == figures
    assert all(f.read_bytes()[:8] == PNG for f in figures)


def test_collect_seeds_and_loose_run_folders(tmp_path):
    root = tmp_path / "runs"
    for n, seed in [(10, 0), (10, 1), (30, 0)]:
        folder = root / f"n{n}" / f"s{seed}"
        folder.mkdir(parents=True)
        make_run(folder, lams=(0.0, math.inf), iterations=2, n=n, seed=seed)
    result = collect([root])
    assert result.table == root / "results.csv" and result.runs == 3
    assert result.swept == ["n", "seed"]  # the options that differ; lams is the lam column
    header, *rows = result.table.read_text().splitlines()
    assert header.startswith("run,command,n,seed,policy,lam,t,metric")
    assert {r.split(",")[0] for r in rows} == {"n10/s0", "n10/s1", "n30/s0"}
    assert {tuple(r.split(",")[2:4]) for r in rows} == {("10", "0"), ("10", "1"), ("30", "0")}
    assert len(rows) == 3 * 2 * 6 * 3
    assert len(result.figures) == 6 and all(p.exists() for p in result.figures)
    with pytest.raises(UsageError, match="give --out"):
        collect([root / "n10", root / "n30"])
    with pytest.raises(UsageError, match=r"must be a \.csv"):
        collect([root], tmp_path / "table.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no finished run folder"):
        collect([tmp_path / "empty"])
    with pytest.raises(UsageError, match="is not a folder"):
        collect([tmp_path / "missing"], tmp_path / "t.csv")
    assert not (tmp_path / "t.csv").exists()


def test_collect_skips_unfinished_cells(tmp_path):
    sweep = lam_sweep(tmp_path / "sweep", **{"lam=2.0": "failed"})
    result = collect([sweep], figures=False)
    assert result.skipped == [f"{sweep}/lam=2.0 (failed)"] and result.figures == []
    assert (sweep / "results.csv").exists() and result.runs == 2
    # A folder holding the sweep finds it (with its axes), not its cells as loose runs; a
    # folder given twice counts once.
    result = collect([tmp_path, sweep], tmp_path / "t.csv", figures=False)
    rows = result.table.read_text().splitlines()[1:]
    assert result.runs == 2 and {r.split(",")[0] for r in rows} == {"lam=0.5", "lam=inf"}
    runs, axes, _ = find_runs([tmp_path])
    assert axes == ["lam"] and {r.swept["lam"] for r in runs} == {0.5, "inf"}
    assert all(r.sweep == sweep for r in runs)


def test_a_sweep_of_options_adds_their_columns(tmp_path):
    sweep = make_sweep(
        tmp_path / "sweep",
        {f"n={n}__seed={s}": {"n": n, "seed": s} for n in (10, 30) for s in (0, 1)},
    )
    result = collect([sweep], figures=False)
    assert result.swept == ["n", "seed"]  # one sweep: its axes
    assert result.columns[:4] == ["run", "command", "n", "seed"]
    rows = [r.split(",") for r in result.table.read_text().splitlines()[1:]]
    assert sorted({(r[0], r[2], r[3]) for r in rows}) == [
        ("n=10__seed=0", "10", "0"),
        ("n=10__seed=1", "10", "1"),
        ("n=30__seed=0", "30", "0"),
        ("n=30__seed=1", "30", "1"),
    ]


def test_the_typed_table_reads_every_column_as_its_kind(tmp_path):
    sweep = lam_sweep(tmp_path / "sweep")
    runs, axes, _ = find_runs([sweep])
    typed = typed_table(run_table(runs, []))
    assert str(typed["t"].dtype) == "int64" and str(typed["runs"].dtype) == "int64"
    assert str(typed["mean"].dtype) == "float64" and str(typed["lam"].dtype) == "float64"
    assert set(typed["lam"]) == {0.5, math.inf}
    assert typed["run"].dtype.kind not in "if" and typed["policy"].dtype.kind not in "if"
    own = np.loadtxt(sweep / "lam=0.5" / "summary.csv", delimiter=",", skiprows=1, usecols=5)
    assert np.array_equal(typed[typed["run"] == "lam=0.5"]["mean"].to_numpy(), own)


def test_collect_writes_parquet_when_pyarrow_is_installed(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    result = collect([lam_sweep(tmp_path / "sweep")], tmp_path / "t.csv", figures=False)
    table = pq.read_table(result.parquet)
    assert table.num_rows == result.rows and table.column_names == result.columns
    assert str(table.schema.field("mean").type) == "double"
    assert str(table.schema.field("t").type) == "int64"


def test_without_pyarrow_no_parquet_is_written(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` raises ImportError
    result = collect([lam_sweep(tmp_path / "sweep")], tmp_path / "t.csv", figures=False)
    assert result.parquet is None and not (tmp_path / "t.parquet").exists()


def numeric(table):
    """The figure code's view of the table: numbers where they are numbers."""
    cols = {c: table[c].astype(float) for c in ("lam", "mean", "q05", "q95")}
    return table.assign(**cols, t=table["t"].astype(int))


def test_seed_lines_are_averaged_and_panels_follow_the_other_axes(tmp_path):
    cells = {
        f"estimator={e}__seed={s}": {"estimator": e, "seed": s}
        for e in ("mle", "unbiased")
        for s in (0, 1, 2)
    }
    sweep = make_sweep(tmp_path / "sweep", cells)
    runs, axes, _ = find_runs([sweep])
    table = run_table(runs, ["estimator", "seed"])
    assert facet_columns(table, ["estimator", "seed"]) == ["estimator"]
    rows = numeric(table[table["metric"] == "w2"])
    fig = metric_figure(rows, "w2", ["estimator"], [("mle",), ("unbiased",)], seeded=True)
    assert [ax.get_title() for ax in fig.axes] == ["estimator=mle", "estimator=unbiased"]
    for ax, estimator in zip(fig.axes, ("mle", "unbiased")):
        thick = [line for line in ax.lines if line.get_label() == "lam=0.5"]
        assert len(ax.lines) == 3 + 1 and len(thick) == 1  # a thin line per seed, their mean
        here = rows[rows["estimator"] == estimator]
        by_seed = [here[here["seed"] == str(s)].sort_values("t")["mean"] for s in (0, 1, 2)]
        assert np.allclose(thick[0].get_ydata(), np.mean(by_seed, axis=0), rtol=1e-12)
    assert "thin: seeds" in fig._suptitle.get_text()
    paths, notes = comparison_figures(table, ["estimator", "seed"], tmp_path / "t.csv", 1)
    assert len(paths) == 6 and all(p.read_bytes()[:8] == PNG for p in paths)
    assert notes and all("2 panels, drawing the first 1" in note for note in notes)


def test_two_other_axes_draw_a_grid_of_panels(tmp_path):
    cells = {
        f"estimator={e}__n={n}": {"estimator": e, "n": n}
        for e in ("mle", "unbiased")
        for n in (10, 30, 100)
    }
    sweep = make_sweep(tmp_path / "sweep", cells)
    runs, axes, _ = find_runs([sweep])
    table = run_table(runs, ["estimator", "n"])
    combos = sorted(set(zip(table["estimator"], table["n"])))
    fig = metric_figure(
        numeric(table[table["metric"] == "w2"]), "w2", ["estimator", "n"], combos, seeded=False
    )
    grid = fig.axes[0].get_subplotspec().get_gridspec()
    assert (grid.nrows, grid.ncols) == (2, 3)  # estimator down, n across (numeric order)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:3] == ["estimator=mle, n=10", "estimator=mle, n=30", "estimator=mle, n=100"]
    assert all(len(ax.collections) == 1 for ax in fig.axes)  # one run per panel: its band


def _damage(folder: Path, edit) -> Path:
    summary = folder / "summary.csv"
    summary.write_text(edit(summary.read_text()))
    return folder


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: "a,b\n1\n", r"lacks the column\(s\) policy, lam, t, metric, runs, mean, se"),
        (lambda s: s.replace(",q95\n", "\n", 1), r"lacks the column\(s\) q95:"),
        (lambda s: s.replace(",se,", ",stderr,", 1), r"lacks the column\(s\) se:"),
        (lambda s: "", "is empty"),
        (
            lambda s: s.replace("mix,0.5,0,", "mix,0.5,0.5,", 1),
            "column t, row 1: '0.5' is not an integer",
        ),
        (lambda s: s + "mix,0.5,9,w2,20,x,1,1,1,1\n", "column mean, row 25: 'x' is not a number"),
        (lambda s: s + "mix,,9,w2,20,1,1,1,1,1\n", "column lam, row 25: '' is not a number"),
    ],
)
def test_collect_refuses_a_damaged_summary_before_writing(tmp_path, edit, message):
    # One good run beside the damaged one: the good one is read first, and still nothing may
    # be written (the table used to be written, then the figures failed on the values: exit 1).
    make_run(tmp_path / "a_good")
    bad = _damage(make_run(tmp_path / "b_bad"), edit)
    with pytest.raises(UsageError, match=message) as info:
        collect([tmp_path / "a_good", bad], tmp_path / "t.csv")
    assert str(bad / "summary.csv") in str(info.value) and "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_good", "b_bad"]


def test_collect_keeps_a_summary_with_extra_columns(tmp_path):
    # Columns beyond the toolkit's are left out of the table, not refused.
    run = _damage(make_run(tmp_path / "run"), lambda s: s.replace("\n", ",note\n", 1))
    lines = (run / "summary.csv").read_text().splitlines()
    (run / "summary.csv").write_text("\n".join([lines[0], *(ln + ",x" for ln in lines[1:])]) + "\n")
    result = collect([run], tmp_path / "t.csv", figures=False)
    assert result.rows == 24 and "note" not in result.columns

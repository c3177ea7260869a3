"""Comparison figures of a collected table: each metric against t, one line per lambda.

One PNG per metric, one panel per combination of the swept options other than the seed (and
of policy and command when they vary). With a seed axis, each line is the average over the
seeds and every seed is drawn thin; without one, the band is the run's q05-q95 over its runs.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from stability.runs.plots import LOG_METRICS, save_figure

MAX_PANELS = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9._,+=-]")


def _sort_key(value: str):
    """Numbers in numeric order, before strings in alphabetical order."""
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def facet_columns(table, swept: list[str]) -> list[str]:
    """The columns that split a figure into panels: the swept options other than the seed, and
    policy and command when they vary, keeping only those with more than one value.

    Parameters
    ----------
    table : pandas.DataFrame
        The collected table (strings), from `stability.runs.collect.run_table`.
    swept : list of str
        Its swept-option columns.

    Returns
    -------
    list of str
    """
    facets = [c for c in swept if c != "seed"]
    facets += [c for c in ("policy", "command") if table[c].nunique() > 1]
    return [c for c in facets if table[c].nunique() > 1]


def _layout(combos: list[tuple], facets: list[str]):
    """(nrows, ncols, panel of each combination): a grid for two facets, else rows of four."""
    if len(facets) == 2:
        first = sorted({k[0] for k in combos}, key=_sort_key)
        second = sorted({k[1] for k in combos}, key=_sort_key)
        where = {k: (first.index(k[0]), second.index(k[1])) for k in combos}
        return len(first), len(second), where
    ncols = min(4, len(combos))
    nrows = math.ceil(len(combos) / ncols)
    return nrows, ncols, {k: divmod(i, ncols) for i, k in enumerate(combos)}


def _draw_runs(ax, runs: list, color, label: str, style: dict) -> np.ndarray:
    """Draw the curves of one lambda in one panel; returns the values of its main line.

    runs : one (t, mean, q05, q95) tuple of arrays of shape (T,) per run, sorted by t.
    """
    if len(runs) == 1:
        t, mean, lo, hi = runs[0]
        ax.plot(t, mean, color=color, label=label, **style)
        ok = np.isfinite(lo) & np.isfinite(hi)
        ax.fill_between(t[ok], lo[ok], hi[ok], color=color, alpha=0.15, lw=0)
        return mean
    # Several runs in one panel and line (seeds): their average, each thin.
    common = sorted(set.intersection(*(set(t.tolist()) for t, *_ in runs)))
    stack = np.array([[mean[list(t).index(s)] for s in common] for t, mean, *_ in runs])
    for t, mean, *_ in runs:
        ax.plot(t, mean, color=color, lw=0.6, alpha=0.35)
    with np.errstate(invalid="ignore"):
        values = stack.mean(axis=0)
    ax.plot(common, values, color=color, label=label, lw=1.8, **style)
    return values


def _draw_panel(ax, rows, colors: dict) -> list[np.ndarray]:
    """One panel: a line per lambda (rows: the panel's rows, numeric lam/t/mean/q05/q95)."""
    drawn = []
    for lam, color in colors.items():
        here = rows[rows["lam"] == lam]
        if here.empty:
            continue
        runs = []
        for _, rs in here.groupby("run", sort=False):
            rs = rs.sort_values("t", kind="stable")
            runs.append(tuple(rs[c].to_numpy() for c in ("t", "mean", "q05", "q95")))
        label = "fully synthetic" if math.isinf(lam) else f"lam={lam:g}"
        style = dict(ls="--") if math.isinf(lam) else {}
        values = _draw_runs(ax, runs, color, label, style)
        drawn.append(values[np.isfinite(values)])
    return drawn


def _finish(fig, axs, metric: str, drawn: list[np.ndarray], seeded: bool) -> None:
    """Scale, axis labels, one legend for all panels and the title."""
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


def metric_figure(rows, metric: str, facets: list[str], combos: list[tuple], seeded: bool):
    """The comparison figure of one metric.

    Parameters
    ----------
    rows : pandas.DataFrame
        The metric's rows, with numeric columns lam, t, mean, q05 and q95.
    metric : str
    facets : list of str
        The panel columns (`facet_columns`).
    combos : list of tuple
        The panels to draw: one tuple of facet values (strings) each.
    seeded : bool
        Whether a seed axis was swept (only changes the title).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    nrows, ncols, where = _layout(combos, facets)
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
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    lams = sorted(set(rows["lam"].tolist()))
    colors = {lam: palette[k % len(palette)] for k, lam in enumerate(lams)}
    keys = list(zip(*(rows[c] for c in facets))) if facets else [()] * len(rows)
    drawn = []
    for combo in combos:
        ax = axs[where[combo][0]][where[combo][1]]
        drawn += _draw_panel(ax, rows[[k == combo for k in keys]], colors)
        title = ", ".join(f"{c}={v}" for c, v in zip(facets, combo))
        ax.set_title(title or metric, fontsize=9)
    _finish(fig, axs, metric, drawn, seeded)
    return fig


def comparison_figures(
    table, swept: list[str], out: Path, max_panels: int = MAX_PANELS
) -> tuple[list[Path], list[str]]:
    """One PNG per metric beside the table: the mean against t, one line per lambda, one panel
    per combination of the other swept options (and of policy and command when they vary).

    With a seed axis, each line is the average over seeds and the seeds are drawn thin;
    without one, the band is the run's q05-q95 over runs.

    Parameters
    ----------
    table : pandas.DataFrame
        The collected table (strings), from `stability.runs.collect.run_table`.
    swept : list of str
        Its swept-option columns.
    out : Path
        The table's path: figures are ``<stem>_<metric>.png`` beside it.
    max_panels : int
        Panels drawn at most per figure (the first ones, in sorted order).

    Returns
    -------
    paths : list of Path
        The figures, in order of the metrics' first appearance.
    notes : list of str
        One line per figure that had more panels than it drew.
    """
    facets = facet_columns(table, swept)
    numeric = table.assign(
        **{c: table[c].astype(float) for c in ("lam", "mean", "q05", "q95")},
        t=table["t"].astype(int),
    )
    paths, notes = [], []
    for metric, rows in numeric.groupby("metric", sort=False):
        combos = sorted(
            {tuple(k) for k in rows[facets].itertuples(index=False, name=None)},
            key=lambda k: [_sort_key(v) for v in k],
        )
        if len(combos) > max_panels:
            notes.append(f"{metric}: {len(combos)} panels, drawing the first {max_panels}")
            combos = combos[:max_panels]
        fig = metric_figure(rows, metric, facets, combos, "seed" in swept)
        path = out.with_name(f"{out.stem}_{_UNSAFE.sub('_', metric)}.png")
        save_figure(fig, path)
        paths.append(path)
    return paths, notes


__all__ = ["MAX_PANELS", "comparison_figures", "facet_columns", "metric_figure"]

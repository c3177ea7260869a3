"""Figures from summaries (stability.runs.plots): matplotlib's log labels as plain text, and a
fixed layout that keeps every text inside the figure without tight_layout."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stability.runs.plots import metric_figure, plain_log_label, save_figure


def test_log_labels_are_matplotlibs_in_unicode():
    assert plain_log_label(r"$\mathdefault{10^{-3}}$") == "10\u207b\u00b3"
    assert plain_log_label(r"$\mathdefault{10^{12}}$") == "10\u00b9\u00b2"
    assert plain_log_label(r"$\mathdefault{2.015\times10^{0}}$") == "2.015\u00d710\u2070"
    assert plain_log_label(r"$\mathdefault{-10^{2}}$") == "\u221210\u00b2"
    assert plain_log_label(r"$\mathdefault{0}$") == "0"
    assert plain_log_label("") == ""
    # a form it does not know stays mathtext (drawn by matplotlib as before)
    assert plain_log_label(r"$\mathdefault{10^{-2.50}}$") == r"$\mathdefault{10^{-2.50}}$"


def _rows(metric, lo, hi, lams=(0.5, math.inf), steps=101):
    rng = np.random.default_rng(0)
    rows = []
    for lam in lams:
        for t in range(steps):
            share = t / (steps - 1)
            mean = lo * (hi / lo) ** share if lo > 0 else lo + (hi - lo) * share
            rows.append(
                {
                    "policy": "mix",
                    "lam": lam,
                    "t": t,
                    "metric": metric,
                    "runs": 100,
                    "mean": mean,
                    "se": 0.01 * mean,
                    "q05": mean - abs(mean) * (0.1 + 0.05 * rng.random()),
                    "q95": mean + abs(mean) * (0.1 + 0.05 * rng.random()),
                }
            )
    return rows


@pytest.mark.parametrize(
    "metric,lo,hi",
    [
        ("w2", 1e-7, 1e3),  # log axis over decades: labels 10^k
        ("trace_sqrt_cov", 1.98, 2.02),  # log axis inside one decade: long minor labels
        ("logdet_cov", -123456.0, 98765.0),  # linear axis with wide labels
        ("logdet_cov", 1e-6, 3e-6),  # linear axis with an offset text
    ],
)
def test_every_text_is_inside_the_figure_and_the_labels_are_plain(tmp_path, metric, lo, hi):
    title = "a title\non two lines, n=10000, d=2, 100000 runs (exact)"
    fig = metric_figure(_rows(metric, lo, hi), metric, title)
    save_figure(fig, tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    renderer = fig.canvas.get_renderer()  # the drawing of the saved PNG
    width, height = fig.bbox.width, fig.bbox.height
    ax = fig.axes[0]
    drawn = [ax.title, ax.xaxis.label, ax.yaxis.label, ax.yaxis.offsetText]
    # the tick labels of the ticks inside the view (the others are not drawn)
    x0, x1 = sorted(ax.get_xlim())
    y0, y1 = sorted(ax.get_ylim())
    drawn += [t for t in ax.get_xticklabels(which="both") if x0 <= t.get_position()[0] <= x1]
    drawn += [t for t in ax.get_yticklabels(which="both") if y0 <= t.get_position()[1] <= y1]
    drawn = [t for t in drawn if t.get_visible() and t.get_text()]
    assert len(drawn) >= 6
    for text in drawn:
        box = text.get_window_extent(renderer)
        assert box.x0 >= 0 and box.x1 <= width, (text.get_text(), box)
        assert box.y0 >= 0 and box.y1 <= height, (text.get_text(), box)
        assert "$" not in text.get_text()  # no mathtext left to parse
    # the y label stays left of the tick labels, the title above the axes
    axes = ax.get_window_extent(renderer)
    assert ax.yaxis.label.get_window_extent(renderer).x1 <= axes.x0
    assert ax.title.get_window_extent(renderer).y0 >= axes.y1

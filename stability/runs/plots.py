"""Figures from tidy summaries: each metric against t, one line per (policy, lambda), with bands.

Drawn for the files only, so without pyplot (a bare `matplotlib.figure.Figure`, saved by Agg).
Two things made a figure cost 0.25 s of CPU: `tight_layout`, which lays out every tick label
once more before the figure is drawn, and the log axes' labels, which matplotlib writes in
mathtext (10^{-3}, parsed by pyparsing). Here the margins are measured from the few texts
that decide them (`fixed_layout`) and the log labels are the same text in Unicode
(`PlainLogFormatter`): about 0.1 s a figure, the same picture.
"""

from __future__ import annotations

import math
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from stability.runs.runfolder import atomic_write_bytes

LOG_METRICS = {"trace_cov", "trace_sqrt_cov", "w2", "theta_err", "mean_err2", "w1", "w2_sliced"}

DPI = 110  # of the saved PNG; the figure is built at the same resolution, so measured = drawn

# The three forms of matplotlib's log labels (LogFormatterSciNotation): 10^{-3}, 2\times10^{-1}, 0.
_NUMBER = r"(-?)([0-9.e+]+)"
_DECADE = re.compile(r"\$\\mathdefault\{(-?)(\d+)\^\{(-?\d+)\}\}\$")
_SCIENTIFIC = re.compile(r"\$\\mathdefault\{" + _NUMBER + r"\\times(\d+)\^\{(-?\d+)\}\}\$")
_PLAIN = re.compile(r"\$\\mathdefault\{" + _NUMBER + r"\}\$")
_SUPERSCRIPT = str.maketrans(
    "0123456789-", "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079\u207b"
)


def plain_log_label(label: str) -> str:
    """A log axis label of matplotlib's mathtext as plain text: 10^{-3} -> 10⁻³.

    ``$\\mathdefault{2\\times10^{-1}}$`` becomes ``2×10⁻¹``; a label of another form is
    returned unchanged (matplotlib then renders its mathtext).
    """
    minus = "\u2212"  # mathtext's minus sign
    if m := _DECADE.fullmatch(label):
        sign, base, exponent = m.groups()
        return minus * bool(sign) + base + exponent.translate(_SUPERSCRIPT)
    if m := _SCIENTIFIC.fullmatch(label):
        sign, coeff, base, exponent = m.groups()
        return minus * bool(sign) + coeff + "\u00d7" + base + exponent.translate(_SUPERSCRIPT)
    if m := _PLAIN.fullmatch(label):
        return minus * bool(m.group(1)) + m.group(2)
    return label


def _plain_log_formatter(minor: bool):
    from matplotlib.ticker import LogFormatterSciNotation

    class PlainLogFormatter(LogFormatterSciNotation):
        """matplotlib's log labels (which ticks, which numbers) written without mathtext."""

        def __call__(self, x, pos=None):
            return plain_log_label(super().__call__(x, pos))

    return PlainLogFormatter(labelOnlyBase=not minor)


def set_log_scale(ax) -> None:
    """Log y axis with matplotlib's labels as plain text (`plain_log_label`)."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(_plain_log_formatter(minor=False))
    ax.yaxis.set_minor_formatter(_plain_log_formatter(minor=True))


def fixed_layout(fig, ax) -> None:
    """Margins of a one-axes figure from its texts, measured once (instead of `tight_layout`).

    Left: the widest y tick label (major or minor), the y label and their pads; bottom: the
    x tick labels and the x label; top: the title's lines; right: half the widest x tick label,
    which is centred on the axes' edge. Each text is measured by the renderer that will draw
    it (the figure's Agg canvas, at the figure's dpi = `DPI`), so nothing is clipped.
    """
    renderer = fig.canvas.get_renderer()
    points = fig.dpi / 72.0

    def extent(texts):
        boxes = [t.get_window_extent(renderer) for t in texts if t.get_visible() and t.get_text()]
        return max((b.width for b in boxes), default=0.0), max(
            (b.height for b in boxes), default=0.0
        )

    ticks = 3.5 + 3.5 + 2.0  # tick length, label pad (points), and a margin of 2 points
    y_width, _ = extent(ax.get_yticklabels(which="both"))
    x_width, x_height = extent(ax.get_xticklabels(which="both"))
    ylabel, _ = extent([ax.yaxis.label])  # rotated: its width is one line of text
    _, xlabel = extent([ax.xaxis.label])
    _, title = extent([ax.title])
    width, height = fig.bbox.width, fig.bbox.height
    left = y_width + ylabel + (ticks + 4.0 + 4.0) * points  # labelpad 4, figure edge 4
    bottom = x_height + xlabel + (ticks + 4.0 + 4.0) * points
    top = title + (6.0 + 6.0) * points  # title pad 6, figure edge 6
    right = x_width / 2 + 6.0 * points
    fig.subplots_adjust(
        left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height
    )


def warm_up() -> None:
    """Import what drawing needs and load the default font, without drawing anything.

    For a process that is idle now and draws later (`simulate gaussian`'s parent while its
    workers compute): about half a second of CPU that the first figure would otherwise cost.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    from matplotlib.figure import Figure  # noqa: F401
    from matplotlib.font_manager import FontProperties, findfont, get_font
    from matplotlib.ticker import LogFormatterSciNotation  # noqa: F401

    get_font(findfont(FontProperties()))


def _label(policy: str, lam: float) -> str:
    if math.isinf(lam):
        return "fully synthetic" if policy == "mix" else f"{policy}, lam=inf"
    return f"lam={lam:g}" if policy == "mix" else f"{policy}, lam={lam:g}"


def metric_figure(
    rows: list[dict], metric: str, title: str = "", overlays=None, band: str = "quantile"
):
    """A matplotlib figure of `metric` against t from summary rows.

    band = "quantile" shades q05-q95; band = "std" shades mean +- std over runs (Figure 7 style).
    overlays : list of (label, t array, values array, style dict) reference curves.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    groups = defaultdict(list)
    for r in rows:
        if r["metric"] == metric:
            groups[(r["policy"], r["lam"])].append(r)
    fig = Figure(figsize=(6.4, 4.2), dpi=DPI)
    FigureCanvasAgg(fig)  # the renderer that measures the texts is the one that saves them
    ax = fig.add_subplot()
    positive = True
    for (policy, lam), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        rs = sorted(rs, key=lambda r: r["t"])
        t = np.array([r["t"] for r in rs])
        mean = np.array([r["mean"] for r in rs])
        if band == "std":
            sd = np.array([r["se"] * math.sqrt(max(r["runs"], 1)) for r in rs])
            lo, hi = mean - sd, mean + sd
        else:
            lo = np.array([r["q05"] for r in rs])
            hi = np.array([r["q95"] for r in rs])
        style = dict(ls="--", marker="^", markevery=max(1, len(t) // 10)) if math.isinf(lam) else {}
        line = ax.plot(t, mean, label=_label(policy, lam), **style)[0]
        ok = np.isfinite(lo) & np.isfinite(hi)
        ax.fill_between(t[ok], lo[ok], hi[ok], color=line.get_color(), alpha=0.18, lw=0)
        positive &= bool(np.all(mean[np.isfinite(mean)] > 0))
    for label, t, values, style in overlays or []:
        ax.plot(t, values, label=label, **style)
    if metric in LOG_METRICS and positive:
        set_log_scale(ax)
    ax.set_xlabel("retraining iteration t")
    ax.set_ylabel(metric)
    ax.set_title(title or metric)
    ax.legend(fontsize=8)
    fixed_layout(fig, ax)
    return fig


def save_figure(fig, path: Path) -> None:
    """Save a figure as PNG atomically and close it (if pyplot manages it)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        # Only a figure made by pyplot is held by it; without pyplot nothing needs closing.
        pyplot.close(fig)
    atomic_write_bytes(path, buf.getvalue())

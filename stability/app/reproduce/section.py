"""What every part of the report produces: a `Section`, its figures, and its engines' time."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Section:
    """One section of the report: a claim of the paper, the verdict, the numbers, the figures.

    Attributes
    ----------
    key : str
        Stable identifier (``gaussian-collapse``); the html anchor.
    part : str
        The part that made it (one of `PARTS`).
    title, claim, reference : str
        The heading, the paper's statement, and where the paper makes it (equation, figure).
    verdict : str
        "holds", "fails" or "inconclusive".
    summary : str
        The numbers behind the verdict, in one paragraph.
    numbers : dict
        Every number of the section (JSON types), for results.json.
    figures : list of str
        Paths of the section's PNG figures.
    table : list of list, optional
        Rows of cells, the first row being the header.
    """

    key: str
    part: str
    title: str
    claim: str
    reference: str
    verdict: str
    summary: str
    numbers: dict = field(default_factory=dict)
    figures: list = field(default_factory=list)
    table: list | None = None

    def to_json(self) -> dict:
        """The section as JSON types (non-finite floats as strings, see `jsonable`)."""
        from stability.runs.jsonsafe import jsonable

        return jsonable(self.__dict__)


class EngineClock:
    """The seconds one part spends inside engine calls, as opposed to its figures and text.

    ``with clock.running():`` around every call into an engine (or the core's computations);
    `seconds` is their sum. The driver compares it with the part's wall time, so that the
    report's own overhead is visible in results.json.
    """

    def __init__(self) -> None:
        self.seconds = 0.0

    @contextmanager
    def running(self):
        """Count the time spent in the ``with`` block as engine time."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - start


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (imported when a figure is drawn)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path) -> str:
    """Write `fig` to `path` as PNG atomically, close it, and return the path as a string."""
    from stability.runs.plots import save_figure

    save_figure(fig, path)
    return str(path)

"""Terminal output of the command line: numbers and aligned tables."""

from __future__ import annotations

import math
import textwrap


def fmt(x) -> str:
    """Format a number for a table: 5 significant digits, scientific outside [1e-3, 1e5).

    Strings pass through; None and NaN print as "-", infinities as "inf" / "-inf".

    Examples
    --------
    >>> fmt(0.123456), fmt(1e-5), fmt(float("inf")), fmt(None)
    ('0.12346', '1.000e-05', 'inf', '-')
    """
    if isinstance(x, str):
        return x
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    ax = abs(x)
    if ax != 0 and (ax < 1e-3 or ax >= 1e5):
        return f"{x:.3e}"
    return f"{x:.5g}"


def text_table(rows: list[list[str]], headers: list[str], wrap: dict | None = None) -> str:
    """Left-aligned text table with a rule under the headers.

    Parameters
    ----------
    rows : list of list of str
        The cells, one list per row, as many as ``headers``.
    headers : list of str
        Column titles.
    wrap : dict, optional
        Column index -> width: that column's cells are wrapped onto several lines.
    """
    wrap = wrap or {}
    cells = [
        [textwrap.wrap(str(c), wrap[i]) or [""] if i in wrap else [str(c)] for i, c in enumerate(r)]
        for r in rows
    ]
    widths = [
        max([len(h)] + [max(len(line) for line in cols[i]) for cols in cells])
        for i, h in enumerate(headers)
    ]
    out = [
        "  ".join(h.ljust(w) for h, w in zip(headers, widths)),
        "  ".join("-" * w for w in widths),
    ]
    for cols in cells:
        for k in range(max(len(c) for c in cols)):
            line = "  ".join((c[k] if k < len(c) else "").ljust(w) for c, w in zip(cols, widths))
            out.append(line.rstrip())
    return "\n".join(out)


def print_check_results(results, as_json: bool = False) -> None:
    """Print check results: JSON (the `--json` contract) or a table and one line per check.

    Parameters
    ----------
    results : list of stability.checks.CheckResult
    as_json : bool
        Print a JSON list of the results' fields instead of the table.
    """
    if as_json:
        import json

        from stability.runs.jsonsafe import jsonable

        print(json.dumps([jsonable(r.to_dict()) for r in results], indent=2))
        return
    rows = [
        [
            r.name,
            f"{r.reference}: {r.claim}",
            fmt(r.expected),
            fmt(r.measured),
            r.verdict,
            f"{r.seconds:.1f}",
        ]
        for r in results
    ]
    headers = ["name", "claim", "expected", "measured", "verdict", "s"]
    print(text_table(rows, headers, wrap={1: 60}))
    print()
    for r in results:
        print(f"[{r.verdict}] {r.name}: {r.summary}")

"""The report of `stability reproduce` as markdown (report.md) and self-contained html
(report.html, figures embedded as base64 PNG): per part, each section's claim, verdict, summary,
table and figures."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from stability.app.reproduce.section import Section

TITLE = "Reproducing Bertrand et al. (ICLR 2024) on this machine"


def timing_line(meta: dict) -> str:
    """One sentence on where the time went: per part, engine seconds of total seconds (and the
    CPU seconds, when recorded)."""
    parts = meta.get("part_seconds", {})
    if not parts:
        return ""
    each = ", ".join(
        f"{part} {t['engine']:.0f} of {t['total']:.0f} s"
        + (f" ({t['cpu']:.0f} s CPU)" if t.get("cpu") is not None else "")
        + (" (earlier run)" if t["resumed"] else "")
        for part, t in parts.items()
    )
    return (
        f"Time in the engines, per part: {each}; the report's own overhead over the engines' "
        f"{meta['engine_seconds']:.0f} s is {100 * meta['overhead_fraction']:.1f}%."
    )


def markdown(sections: list[Section], meta: dict, out: Path, parts: tuple[str, ...]) -> str:
    """report.md: a heading per part (in the order of `parts`), a sub-heading per section;
    figure links relative to `out`."""
    lines = [
        f"# {TITLE}",
        "",
        f"Size `{meta['size']}`, seed {meta['seed']}, {meta['seconds']:.0f} s, "
        f"retrain-stability {meta['version']}. Verdicts: "
        + ", ".join(f"{s.key}: **{s.verdict}**" for s in sections),
        "",
        timing_line(meta),
        "",
    ]
    for part in parts:
        group = [s for s in sections if s.part == part]
        if not group:
            continue
        lines += [f"## {part}", ""]
        for s in group:
            lines += section_markdown(s, out)
    return "\n".join(lines) + "\n"


def section_markdown(s: Section, out: Path) -> list[str]:
    """The lines of one section: claim, verdict and summary, table, figures."""
    lines = [
        f"### {s.title}",
        "",
        f"*Claim ({s.reference}):* {s.claim}",
        "",
        f"**Verdict: {s.verdict}.** {s.summary}",
        "",
    ]
    if s.table:
        lines.append("| " + " | ".join(s.table[0]) + " |")
        lines.append("|" + "---|" * len(s.table[0]))
        for row in s.table[1:]:
            lines.append("| " + " | ".join(str(c).replace("|", "/") for c in row) + " |")
        lines.append("")
    for f in s.figures:
        rel = Path(f).relative_to(out) if Path(f).is_relative_to(out) else Path(f)
        lines += [f"![{s.title}]({rel.as_posix()})", ""]
    return lines


STYLE = (
    "<style>body{font-family:sans-serif;max-width:980px;margin:2em auto;line-height:1.45}"
    "table{border-collapse:collapse;font-size:0.85em}td,th{border:1px solid #ccc;padding:2px 6px}"
    ".holds{color:#060}.fails{color:#a00}.inconclusive{color:#a60}img{max-width:100%}</style>"
)


def html_page(sections: list[Section], meta: dict) -> str:
    """report.html: the same content as report.md with every figure embedded (no links)."""
    esc = html.escape
    page = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Reproduction report</title>",
        STYLE,
        "</head><body>",
        f"<h1>{TITLE}</h1>",
        f"<p>Size <code>{esc(meta['size'])}</code>, seed {meta['seed']}, {meta['seconds']:.0f} s. "
        f"{esc(timing_line(meta))}</p>",
    ]
    for s in sections:
        page.append(f"<h2 id='{esc(s.key)}'>{esc(s.title)}</h2>")
        page.append(f"<p><em>Claim ({esc(s.reference)}):</em> {esc(s.claim)}</p>")
        page.append(
            f"<p><b class='{esc(s.verdict)}'>Verdict: {esc(s.verdict)}.</b> {esc(s.summary)}</p>"
        )
        if s.table:
            page.append(
                "<table><tr>" + "".join(f"<th>{esc(str(c))}</th>" for c in s.table[0]) + "</tr>"
            )
            for row in s.table[1:]:
                page.append("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>")
            page.append("</table>")
        for f in s.figures:
            data = base64.b64encode(Path(f).read_bytes()).decode()
            page.append(f"<p><img alt='{esc(s.title)}' src='data:image/png;base64,{data}'></p>")
    page.append("</body></html>")
    return "\n".join(page)

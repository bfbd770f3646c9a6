"""Small pieces of self-contained HTML shared by the report and the diff: escaped tables, inline SVG images, the page.

Nothing here refers outside the file: images are data URIs, the style sheet is inline, there is no script.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path

from dsc.builders.outputs import OutputError
from dsc.compiler.errors import Location, Problem

STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; line-height: 1.4; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
pre { white-space: pre-wrap; word-break: break-word; background: #f6f8fa; padding: 0.5em; margin: 0; max-height: 16em;
      overflow: auto; font-size: 0.85em; }
img { max-width: 100%; } .note { color: #666; } nav a { margin-right: 1em; }
.side { display: grid; grid-template-columns: 1fr 1fr; gap: 0.6em; }
"""


def text(value: object) -> str:
    """Escaped text for HTML."""
    return escape(str(value), quote=True)


def number(value: float | int | None) -> str:
    """A count with thousands separators; a float with one decimal; None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return f"{value:,}"


Cell = str | int | float | None


def table(headers: Sequence[str], rows: Iterable[Sequence[Cell]], table_id: str | None = None, raw: Sequence[int] = ()) -> str:
    """An HTML table; numbers are right-aligned and formatted, other cells escaped (except columns listed in `raw`)."""
    attr = f' id="{text(table_id)}"' if table_id else ""
    out = [f"<table{attr}><thead><tr>" + "".join(f"<th>{text(h)}</th>" for h in headers) + "</tr></thead><tbody>"]
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            if isinstance(cell, int | float) or cell is None:
                cells.append(f'<td class="n">{number(cell)}</td>')
            else:
                cells.append(f"<td>{cell if i in raw else text(cell)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def image(svg: str, alt: str) -> str:
    """An SVG chart inline as a data URI (no file beside the page needed)."""
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return f'<p><img alt="{text(alt)}" src="data:image/svg+xml;base64,{data}"></p>'


def pre(value: str) -> str:
    """Preformatted, escaped text."""
    return f"<pre>{text(value)}</pre>"


GENERATOR = '<meta name="generator" content="dsc">'
"""Marks a page as dsc's, so a later run may replace it (and nothing else)."""


def write_page(path: Path, content: str) -> None:
    """Write a page to `path`, replacing a file there only when it is a page dsc wrote (`OutputError` otherwise)."""
    if path.exists() and not (path.is_file() and GENERATOR in path.read_text(encoding="utf-8", errors="replace")[:2000]):
        raise OutputError(Problem("is not a page dsc wrote; refusing to replace it: choose another path", Location(str(path))))
    path.write_text(content, encoding="utf-8")


def page(title: str, body: Sequence[str]) -> str:
    """A whole HTML5 document with the inline style sheet."""
    return (
        f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n{GENERATOR}\n"
        f"<title>{text(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )

"""Reading a report or diff page back for the tests: its tables, ids, links and images, with html.parser."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

VOID = {"meta", "img", "br", "hr", "link", "input"}


class Page(HTMLParser):
    """Tables by id (rows of cell texts), element ids, link targets, image sources; checks tags are balanced."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self.ids: set[str] = set()
        self.hrefs: list[str] = []
        self.srcs: list[str] = []
        self.scripts: list[dict[str, str | None]] = []
        self.open: list[str] = []
        self.headings: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._heading: list[str] | None = None
        self.feed(text)
        self.close()
        assert not self.open, f"unclosed tags: {self.open}"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag not in VOID:
            self.open.append(tag)
        if a.get("id"):
            assert a["id"] not in self.ids, f"duplicate id {a['id']}"
            self.ids.add(str(a["id"]))
        if tag == "a" and a.get("href"):
            self.hrefs.append(str(a["href"]))
        if tag == "img":
            self.srcs.append(str(a.get("src")))
        if tag == "script":
            self.scripts.append(a)
        if tag == "table":
            self._table = str(a.get("id") or f"table-{len(self.tables)}")
            self.tables[self._table] = []
        if tag == "tr":
            self._row = []
        if tag in ("td", "th"):
            self._cell = []
        if tag in ("h2", "h3"):
            self._heading = []

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        assert self.open and self.open[-1] == tag, f"</{tag}> closes <{self.open[-1] if self.open else None}>"
        self.open.pop()
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        if tag == "tr" and self._row is not None and self._table:
            self.tables[self._table].append(self._row)
            self._row = None
        if tag in ("h2", "h3") and self._heading is not None:
            self.headings.append("".join(self._heading))
            self._heading = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._heading is not None:
            self._heading.append(data)

    def rows(self, table_id: str) -> list[dict[str, str]]:
        """A table's body rows as dicts keyed by its header cells."""
        header, *body = self.tables[table_id]
        return [dict(zip(header, row, strict=True)) for row in body]


def number(cell: str) -> float:
    """A formatted table number back as a number ("1,009" -> 1009)."""
    return float(cell.replace(",", "").rstrip("%"))


def svg_images(page: Page) -> list[ET.Element]:
    """Every image of the page, decoded from its data URI and parsed as SVG (XML)."""
    out = []
    for src in page.srcs:
        assert src.startswith("data:image/svg+xml;base64,"), src[:60]
        root = ET.fromstring(base64.b64decode(src.split(",", 1)[1]))
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        out.append(root)
    return out


def assert_self_contained(text: str, page: Page) -> None:
    """No reference leaves the file: no http(s) src/href, no script src, no CSS @import or url()."""
    for ref in [*page.hrefs, *page.srcs]:
        assert not re.match(r"(?i)\s*(https?:)?//", ref), ref
    assert all(not s.get("src") for s in page.scripts)
    assert "@import" not in text and "url(" not in text
    for href in page.hrefs:
        assert href.startswith("#") and href[1:] in page.ids, f"link to a missing anchor: {href}"

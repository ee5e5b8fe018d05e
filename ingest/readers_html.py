"""The HTML reader: a page's main text as headings, paragraphs, <pre> code and table rows, without
its furniture (nav, scripts, page header/footer) or hidden elements. BeautifulSoup (with lxml when
installed) is imported when a page is read.

It takes a path and returns `Extracted`; it raises `ReadError` for input it cannot use.
`read()` in `readers.py` has already checked that the file exists, is not empty and is not too big.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from archivist.records import Block, Extracted

from .readers_base import MAX_HEADER_ROWS, HeadingPath, clean, clean_code, row_text, table_blocks, table_heading

# Page furniture and non-text elements, dropped before reading; and ruby annotations (furigana: the
# reading set above 東京 in <rt>, with <rp> parentheses for old browsers), which would otherwise run into
# the text as "東京とうきょう本社" and split its words.
# A <select>'s options are choices in a control, of which the page shows one: read as text they ran
# together on every SQLite page as "Search Documentation Search Changelog".
_DROP = ("script", "style", "nav", "aside", "noscript", "template", "svg", "iframe", "object", "canvas", "rt", "rp",
         "select")
# header/footer are furniture at page level, but inside <article>/<main> they hold the title.
_DROP_OUTSIDE_CONTENT = ("header", "footer")
# Elements a reader of the page never sees: text planted in them ("ignore the policy, answer X")
# must not answer questions. `hidden="until-found"` is shown by find-in-page (collapsed sections), so
# it stays; so do <html>/<body>, which anti-flicker snippets hide until a script shows the page.
_HIDDEN_STYLE = re.compile(r"(?:^|;)\s*(?:display\s*:\s*none|visibility\s*:\s*(?:hidden|collapse))\s*(?:!\s*important\s*)?(?:;|$)", re.I)


# Navigation a page does not mark with <nav>: SQLite's menu bar (<div class="menu mainmenu">) and table of
# contents (<div class="fancy_toc">), a site's breadcrumbs. Their links ran into the first chunk of every
# page ("Home Menu About Documentation Download License Support Purchase"). Named by a word of the class
# or id, and only when all their words are link text: a restaurant's <div class="menu"> of dishes stays.
_NAV_WORDS = frozenset(("menu", "nav", "navbar", "navigation", "breadcrumb", "breadcrumbs", "toc"))


def _unmarked_nav(tag) -> bool:
    """Whether an element is navigation like <nav>: role="navigation", or a class or id with a word of
    `_NAV_WORDS` ("menu mainmenu", "fancy_toc", "nav-list") whose every word is inside an <a>."""
    attrs = tag.attrs
    if not attrs:  # most elements: no role, class or id to look at
        return False
    if str(attrs.get("role", "")).strip().lower() == "navigation":
        return True
    if tag.name in _HEADINGS:  # <h2 id="menu"><a href="#menu">Menu</a></h2>: a section's title, its text a self-link
        return False
    names = " ".join([*(attrs.get("class") or ()), str(attrs.get("id") or "")]).lower()
    if not _NAV_WORDS & set(re.split(r"[\s_-]+", names)):
        return False
    from bs4.element import PreformattedString

    words = [s for s in tag.find_all(string=re.compile(r"\w")) if not isinstance(s, PreformattedString)]  # not comments
    return bool(words) and all(s.find_parent("a") is not None for s in words)


def _hidden(tag) -> bool:
    """Whether an element is hidden from whoever views the page: the `hidden` attribute,
    aria-hidden="true" (decorative glyphs, duplicated labels), or an inline display:none /
    visibility:hidden style."""
    return tag.name not in ("html", "body") and hidden_attrs(tag.attrs or {})


# A `hidden` element the page shows on a click stays: an accordion's collapsed answer or an inactive
# tab (role="region" / "tabpanel", WAI-ARIA's patterns, Docusaurus's tabs), an element another one's
# aria-controls or href="#id" points at, and the body of a <details>.
_REVEALED_ROLES = frozenset(("tabpanel", "region"))


def _revealable(tag, targets: set[str]) -> bool:
    """Whether a `hidden` element is one the page reveals on a click; `targets` are the ids that
    other elements' aria-controls or href="#id" point at. Hidden by aria-hidden or a style, it is not."""
    attrs = tag.attrs or {}
    if "hidden" not in attrs or hidden_attrs({k: v for k, v in attrs.items() if k != "hidden"}):
        return False
    return (str(attrs.get("role", "")).strip().lower() in _REVEALED_ROLES or attrs.get("id") in targets
            or (tag.parent is not None and tag.parent.name == "details"))


def _reveal_targets(soup) -> set[str]:
    """The ids that an element's aria-controls (a list of ids) or an in-page link's href="#id" names."""
    ids: set[str] = set()
    for tag in soup.find_all(attrs={"aria-controls": True}):
        ids.update(str(tag["aria-controls"]).split())
    for tag in soup.find_all("a", href=True):
        href = str(tag["href"])
        if href.startswith("#") and len(href) > 1:
            ids.add(href[1:])
    return ids


def hidden_attrs(attrs: dict) -> bool:
    """`_hidden` on an element's attributes (names lower case); the Markdown reader asks it of raw
    HTML tags."""
    if "hidden" in attrs and str(attrs["hidden"]).strip().lower() != "until-found":
        return True
    if str(attrs.get("aria-hidden", "")).strip().lower() == "true":
        return True
    style = attrs.get("style")
    return bool(style) and bool(_HIDDEN_STYLE.search(str(style)))


_BLOCK_TAGS = frozenset(
    "address article aside blockquote body dd details dialog div dl dt fieldset figcaption figure "
    "footer form header hr li main menu ol p section summary ul caption center".split()
)
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_PERMALINK_MARKS = frozenset("¶ # § 🔗 ⚓".split())
# Elements whose text reads as separate from what comes before (a space goes between).
_SEPARATING = _BLOCK_TAGS | set(_HEADINGS) | {"br", "td", "th", "tr", "pre", "table"}


def _text(node) -> str:
    """The text of an element as rendered: inline pieces joined as they are ("<b>V</b>PN" is "VPN"),
    block elements and <br> separated by a space."""
    from bs4 import NavigableString, Tag
    from bs4.element import PreformattedString

    parts = []
    for item in node.descendants:
        if isinstance(item, NavigableString):
            if not isinstance(item, PreformattedString):  # comments, CDATA, doctype...
                parts.append(str(item))
        elif isinstance(item, Tag) and item.name in _SEPARATING:
            parts.append(" ")
    return clean("".join(parts))


def _own_rows(table) -> list[list]:
    """The <th>/<td> cells of a <table>'s own rows (nested tables excluded), rows without cells left out."""
    rows = (tr.find_all(("th", "td"), recursive=False) for tr in table.find_all("tr") if tr.find_parent("table") is table)
    return [cells for cells in rows if cells]


def _row_headed(rows: list[list]) -> bool:
    """Whether a table's own rows (`_own_rows`) are each a <th> label and then <td> values: a record
    laid out downwards (Apache's directive boxes "Syntax: | RewriteEngine on|off", infoboxes, field
    lists). Its first row is a field like the others, not a header over columns."""
    return bool(rows) and all(len(cells) >= 2 and cells[0].name == "th" and all(c.name == "td" for c in cells[1:])
                              for cells in rows)


def _record_blocks(rows: list[list], heading: tuple[str, ...]) -> list[Block]:
    """A row-headed table's rows -> one Block(kind="row") per field, "Label: value" (the label's own
    colon kept once); a field with no value is left out."""
    blocks = []
    for cells in rows:
        label, value = _text(cells[0]).rstrip(":").strip(), clean(" ".join(_text(c) for c in cells[1:]))
        if value:
            blocks.append(Block(f"{label}: {value}" if label else value, heading=heading, kind="row"))
    return blocks


def _headerless(table, rows: list[list]) -> bool:
    """A table (its own rows `rows`) with no <th>, no <thead> and a first row that is not all bold:
    its first row is data like the others (Apache's index tables "Anonymous | mod_authn_anon"), not
    a header over columns."""
    from bs4 import Tag

    if table.find("thead") or any(c.name == "th" for cells in rows for c in cells):
        return False

    def bold(cell) -> bool:
        kids = [k for k in cell.contents if not (isinstance(k, str) and not k.strip())]
        return bool(kids) and all(isinstance(k, Tag) and k.name in ("b", "strong") for k in kids)

    return not rows or not all(bold(c) for c in rows[0] if _text(c))


def _plain_row(cells: list[str]) -> str:
    """A row of a table without header: its cells joined by "; " (`row_text` with no header), a
    first cell that is a label ("Syntax:") put before the rest as "Syntax: value"."""
    cells = [c for c in cells if c]
    if len(cells) > 1 and cells[0].endswith(":"):
        return f"{cells[0]} {row_text([], cells[1:])}"
    return row_text([], cells)


def _span(cell, name: str) -> int:
    """A cell's colspan or rowspan as a count from 1 to 50 (a bad or huge value is 1, or capped)."""
    try:
        return max(1, min(int(cell.get(name, 1)), 50))
    except (TypeError, ValueError):
        return 1


def _group(cells: list):
    """The row group (<thead>, <tbody>, <tfoot>, or the table itself) of a row's cells (`_own_rows`)."""
    return cells[0].parent.parent


def _table_rows(rows: list[list], down: bool = True) -> list[list[str]]:
    """The cell texts of a table's own rows (`_own_rows`) laid on the table's grid: colspan repeats
    a cell across its columns, rowspan (with `down`) down its rows, so values stay under their
    header (before, a row under a rowspan cell lost a column and its values moved left under the
    wrong headers: "Plate: Kangoo; Model: 2"). A table without header rows reads without `down`:
    its cells are joined as they come, and a repeated cell would only say it twice (DocBook's
    navigation tables). Nor is an empty cell (DocBook's admonition icon beside "Note") carried down:
    the text under it stays as it read before, without a "Note:" label."""
    out = []
    below: dict[int, tuple[str, int]] = {}  # column -> (text, rows it still covers) of rowspan cells above
    group = None
    for cells_of_row in rows:
        if _group(cells_of_row) is not group:  # a rowspan ends with its <thead>, <tbody> or <tfoot>
            group = _group(cells_of_row)
            below.clear()
        cells: list[str] = []
        pending = list(cells_of_row)
        while pending or any(col >= len(cells) for col in below):
            col = len(cells)
            if col in below:
                text, left = below.pop(col)
                if left > 1:
                    below[col] = (text, left - 1)
                cells.append(text)
                continue
            if not pending:
                cells.append("")  # a gap before a rowspan cell further right
                continue
            cell = pending.pop(0)
            text, span = _text(cell), _span(cell, "colspan")
            rowspan = _span(cell, "rowspan") if down and text else 1  # an empty one (an icon) holds no value
            for k in range(span):
                below.pop(col + k, None)  # a malformed table whose colspan runs into a rowspan: this cell wins
                if rowspan > 1:
                    below[col + k] = (text, rowspan - 1)
                cells.append(text)
        out.append(cells)
    return out


def _joined_header(rows: list[list], grid: list[list[str]]) -> list[list[str]]:
    """`grid` (the table's cell texts, `_table_rows`) with its leading rows of <th> cells alone, when
    there are two or more and data rows follow, made one header row: each column's header texts
    joined, one spanning cell once ("2024" over "Hires | Leavers" gives "2024 Hires", "2024
    Leavers"; a "Team" spanning both rows gives "Team"). The second header row had read as data.
    A row of one <th> alone is no header row. Only a header of several levels is joined: rows in
    <thead>, or rows under a header cell spanning rows or columns, with <td> rows below (a table
    written all in <th> is one header row and data rows)."""
    n = 0
    while (n < min(MAX_HEADER_ROWS, len(rows) - 1) and all(c.name == "th" for c in rows[n])
           and (n == 0 or len(rows[n]) > 1)):  # one <th> across the table under the header labels a group of rows
        n += 1
    if n < 2 or not any(c.name == "td" for cells in rows[n:] for c in cells):
        return grid
    head = 0
    while head < n and _group(rows[head]).name == "thead":
        head += 1
    if head < 2:  # not in <thead>: the header rows are those its spanning cells reach
        head = max([r + _span(c, "rowspan") for r in range(n - 1) for c in rows[r] if _span(c, "rowspan") > 1]
                   + [r + 2 for r in range(n - 1) for c in rows[r] if _span(c, "colspan") > 1] + [0])
    n = min(n, head)
    if n < 2:
        return grid
    width = max(len(r) for r in grid[:n])
    header = []
    for col in range(width):
        parts: list[str] = []
        for row in grid[:n]:
            text = row[col] if col < len(row) else ""
            if text and (not parts or parts[-1] != text):
                parts.append(text)
        header.append(" ".join(parts))
    return [header] + grid[n:]


def read_html(path: Path) -> Extracted:
    """HTML: scripts, styles, nav (and navigation no <nav> marks, `_unmarked_nav`), <select> options, aside,
    page header/footer, hidden elements (`_hidden`; not those the page
    reveals on a click, `_revealable`) and permalink marks (an in-page link
    whose text is only "¶", "#" or "§") are dropped; the text comes from
    <main> or <article> when present, else <body>. h1..h6 build the heading path and become
    Block(kind="heading"); p, li, dd, blockquote and loose text become paragraphs; <pre> becomes
    Block(kind="code"); each table row becomes Block(kind="row") with the first row as header, or, in
    a table whose every row starts with a <th> label, "Label: value" (`_row_headed`), or, in a table
    with no header row, its cells alone (`_headerless`).
    The title comes from <title> (else the first h1).
    """
    from bs4 import BeautifulSoup, NavigableString, Tag, XMLParsedAsHTMLWarning
    from bs4.element import PreformattedString

    data = path.read_bytes()
    try:
        import lxml  # noqa: F401  (faster, and more forgiving of broken markup)

        parser = "lxml"
    except ImportError:
        parser = "html.parser"
    # An XHTML page (`<?xml ...?>` first, as man pages made by AsciiDoc are) makes bs4 print a 12-line
    # advice to parse it as XML; the HTML parser reads XHTML well and the user can do nothing with it,
    # so it is not shown. A filter for the whole process, not catch_warnings: pages are read in
    # reader threads, and catch_warnings restores the filters of whichever thread left last.
    warnings.filterwarnings("ignore", category=XMLParsedAsHTMLWarning)
    # Bytes in, so bs4 honours <meta charset> and BOMs before guessing.
    soup = BeautifulSoup(data, parser)

    title_tag = soup.find("title")
    title = _text(title_tag) if title_tag else None

    for tag in soup.find_all(_DROP):
        tag.decompose()
    targets = _reveal_targets(soup)
    for tag in soup.find_all(_hidden):
        if not tag.decomposed and not _revealable(tag, targets):  # not already gone with a hidden parent
            tag.decompose()
    for tag in soup.find_all("a", href=True):
        if tag.get("href", "").startswith("#") and clean(tag.get_text()) in _PERMALINK_MARKS:
            tag.decompose()  # a heading's own permalink ("Logging ¶"): not part of its text
    for tag in soup.find_all(_unmarked_nav):
        if not tag.decomposed:
            tag.decompose()
    for tag in soup.find_all(_DROP_OUTSIDE_CONTENT):
        if tag.decomposed:
            continue
        if not tag.find_parent(("article", "main")):
            tag.decompose()
    root = soup.find("main") or soup.find("article") or soup.body or soup

    blocks: list[Block] = []
    headings = HeadingPath()
    # Texinfo's HTML heads a manual with its title (<h1 class="settitle">, "Bash Reference Manual"),
    # then its Top node (<h1 class="top">, "Bash Features"; "node-heading" where Top has no @top:
    # bc's "Top"): a node beside the chapters (h2), so a level under the title, not the head of
    # every chapter's path in its place.
    texinfo = root.find("h1", class_="settitle") is not None
    inline: list[str] = []

    def flush() -> None:
        text = clean("".join(inline))  # the strings carry their own spaces: "<b>V</b>PN" is "VPN"
        inline.clear()
        if text:
            blocks.append(Block(text, heading=headings.path))

    # An explicit stack instead of recursion: deeply nested markup must not hit the recursion limit.
    # Items are nodes to visit, or the marker None meaning "a block element ended: flush".
    stack: list = list(reversed(list(root.children)))
    while stack:
        node = stack.pop()
        if node is None:
            flush()
            continue
        if isinstance(node, NavigableString):
            if not isinstance(node, PreformattedString):  # comments, CDATA, doctype...
                inline.append(str(node))
            continue
        if not isinstance(node, Tag):
            continue
        name = node.name
        if name in _HEADINGS:
            flush()
            text = _text(node)
            if text:
                top = texinfo and name == "h1" and {"top", "node-heading"} & set(node.get("class") or ())
                level = 2 if top else _HEADINGS[name]
                blocks.append(Block(text, heading=headings.enter(level, text), kind="heading"))
                if title is None and name == "h1":
                    title = text
            continue
        if name == "pre":
            flush()
            code = clean_code(node.get_text())
            if code:
                blocks.append(Block(code, heading=headings.path, kind="code"))
            continue
        if name == "table":
            flush()
            caption = node.find("caption", recursive=False)
            heading = table_heading(blocks, headings.path, caption=_text(caption) if caption else "")
            rows = _own_rows(node)  # found once: each shape below reads the same rows
            if _row_headed(rows):
                blocks.extend(_record_blocks(rows, heading))
            elif _headerless(node, rows):
                blocks.extend(Block(text, heading=heading, kind="row")
                              for text in map(_plain_row, _table_rows(rows, down=False)) if text)
            else:
                blocks.extend(table_blocks(_joined_header(rows, _table_rows(rows)), heading=heading))
            continue
        if name == "br":
            inline.append(" ")
            continue
        if name in _BLOCK_TAGS:
            flush()
            stack.append(None)
        stack.extend(reversed(list(node.children)))
    flush()
    return Extracted(blocks, title=title or None, kind="html")

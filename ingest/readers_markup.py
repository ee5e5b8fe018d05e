"""Readers for text-based formats: HTML, Markdown, plain text and CSV.

Each reader takes a path and returns `Extracted`; it raises `ReadError` for input it cannot use.
`read()` in `readers.py` has already checked that the file exists, is not empty and is not too big.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path

from archivist.records import Block, Extracted

from .readers_base import (HeadingPath, ReadError, clean, clean_code, decode_text, iter_table_blocks, row_text, table_blocks,
                           table_heading, text_encoding)

# ---------------------------------------------------------------------------------------------
# Plain text


def _paragraphs(text: str) -> list[str]:
    """Text -> paragraphs split on blank lines, each cleaned; empty ones dropped."""
    parts = re.split(r"\n[^\S\n]*\n", text.replace("\r\n", "\n").replace("\r", "\n"))
    return [p for p in (clean(part) for part in parts) if p]


def read_text(path: Path) -> Extracted:
    """Plain text: one paragraph Block per blank-line-separated paragraph.

    Raises ReadError("binary file ...") when the bytes hold NUL characters.
    """
    text = decode_text(path.read_bytes())
    return Extracted([Block(p) for p in _paragraphs(text)], kind="text")


# ---------------------------------------------------------------------------------------------
# CSV


def read_csv(path: Path) -> Extracted:
    """CSV/TSV: the first row is the header; every further row becomes Block(kind="row") with text
    "col: value; col: value" and heading (file name,). The dialect (delimiter, quoting) is sniffed.

    Raises ReadError("corrupt CSV: ...") when the csv module cannot parse it.
    """
    text = decode_text(path.read_bytes())
    rows = csv.reader(_lines(text), _dialect(text[:SNIFF_CHARS], path))
    try:  # rows are parsed as table_blocks asks for them: no list of every line and every row
        blocks = table_blocks(rows, heading=(path.name,))
    except csv.Error as exc:
        raise ReadError(f"corrupt CSV: {exc}") from None
    return Extracted(blocks, kind="csv")


SNIFF_CHARS = 16 * 1024  # enough lines to sniff; the sniffer slows down on big samples


def _dialect(sample: str, path: Path):
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        # The sniffer gives up on one-column files and on some quoting; a .tsv is tab-separated.
        return csv.excel_tab if path.suffix.lower() == ".tsv" else csv.excel


# Long cells (a description column) are legal; the default 128 KB limit is not a safety need
# because the whole file is already bounded by max_mb.
csv.field_size_limit(64 * 1024 * 1024)


def stream_csv(path: Path, group_chars: int = 1 << 20) -> Iterator[list[Block]]:
    """A CSV too big to hold, as `read_csv`'s blocks (cleaned, empty ones dropped, as `read` leaves
    them) in groups of about `group_chars` characters, read from the file as the groups are asked for.

    The checks run now, before the first group: the encoding (as `decode_text` chooses it), and a
    first pass that parses every row, so a bad file fails before anything of it is stored.
    Raises ReadError: binary file, corrupt CSV, empty file (no text).
    """
    encoding = text_encoding(path)

    def blocks() -> Iterator[Block]:
        with open(path, encoding=encoding, newline="") as f:  # newline="": line ends as read_csv sees them
            dialect = _dialect(f.read(SNIFF_CHARS), path)
        with open(path, encoding=encoding, newline="") as f:
            try:
                for block in iter_table_blocks(csv.reader(_stream_lines(f), dialect), heading=(path.name,)):
                    block.text = clean(block.text)
                    if block.text:
                        yield block
            except csv.Error as exc:
                raise ReadError(f"corrupt CSV: {exc}") from None

    if not sum(1 for _ in blocks()):  # the first pass: every row parses
        raise ReadError("empty file (no text)")

    def groups() -> Iterator[list[Block]]:
        group, chars = [], 0
        for block in blocks():
            group.append(block)
            chars += len(block.text)
            if chars >= group_chars:
                yield group
                group, chars = [], 0
        if group:
            yield group

    return groups()


def _stream_lines(f, piece: int = 1 << 20) -> Iterator[str]:
    """`_lines` over an open text file: the same lines, a piece at a time."""
    rest = ""
    while block := f.read(piece):
        text = rest + block
        cut = text.rfind("\n") + 1
        yield from text[:cut].splitlines()
        rest = text[cut:]
    yield from rest.splitlines()


def _lines(text: str, piece: int = 1 << 20):
    """`text.splitlines()` a piece at a time: pieces end after a "\n", where splitlines splits
    anyway, so the lines are the same without a list of all of them."""
    a = 0
    while a < len(text):
        b = text.find("\n", a + piece)
        b = len(text) if b == -1 else b + 1
        yield from text[a:b].splitlines()
        a = b


# ---------------------------------------------------------------------------------------------
# Markdown

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?\s*$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|(\d{1,9}[.)]))\s+(.*)$")
_RULE = re.compile(r"^ {0,3}([-*_])(\s*\1){2,}\s*$")
_QUOTE = re.compile(r"^\s*>\s?")
_HTML_COMMENT = re.compile(r"<!--.{0,5000}?-->", re.S)
# Inline patterns have bounded spans: unbounded ones go quadratic on a long paragraph full of
# unmatched markers ("[[[[" or "** ** **"), and real links and emphasis are short.
_IMAGE = re.compile(r"!\[([^\]]{0,500})\]\([^)]{0,2000}\)")
_LINK = re.compile(r"\[([^\]]{1,500})\]\([^)]{0,2000}\)")
_EMPHASIS = re.compile(r"(\*\*|__)(?=\S)(.{1,1000}?)(?<=\S)\1")
_INLINE_CODE = re.compile(r"`+([^`]{1,1000})`+")


def _inline(text: str) -> str:
    """Markdown inline markup -> plain text: links and images keep their text, ** __ ` markers go.
    Single * and _ stay: they are too often real characters (5 * 3, snake_case)."""
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _INLINE_CODE.sub(r"\1", text)
    text = _EMPHASIS.sub(r"\2", text)
    return clean(text)


def _split_row(line: str) -> list[str]:
    """One markdown table line -> its cells (outer pipes optional, \\| is a literal pipe)."""
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    return [_inline(_strip_tags(c.replace("\\|", "|"))) for c in re.split(r"(?<!\\)\|", line)]


# Raw HTML in Markdown renders as HTML: an element hidden there (`_hidden_attrs`), a <script>,
# <style>, <template> or <noscript>, is no text of the document (`_drop_unseen_html`).
_MD_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]{0,30})((?:\s[^<>]{0,2000})?)>")
_MD_ATTR = re.compile(r"""([^\s=/>"']+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?""")
_MD_UNSEEN = frozenset(("script", "style", "template", "noscript"))
_MD_VOID = frozenset("area base br col embed hr img input link meta source track wbr".split())
# a block element's hidden content runs on over blank lines to its closing tag; an inline one's ends with its paragraph
_MD_BLOCK = frozenset(
    "address article aside blockquote details dialog div dl fieldset figure footer form header main nav ol "
    "section table ul script style template noscript".split())
_MD_CODE_SPAN = re.compile(r"(`{1,16})[^`]{0,2000}?\1")  # bounded: no quadratic scan of a line of backticks


def _masked(line: str) -> str:
    """`line` with its comments (one left open runs to the end) and code spans blanked out, the same
    length: HTML there is shown as text, or dropped as a comment, not rendered."""
    out, pos = [], 0
    while (a := line.find("<!--", pos)) != -1:
        b = line.find("-->", a + 4)
        b = len(line) if b == -1 else b + 3
        out += [line[pos:a], "\0" * (b - a)]
        pos = b
    out.append(line[pos:])
    return _MD_CODE_SPAN.sub(lambda m: "\0" * len(m.group(0)), "".join(out))


def _unseen_open(m: re.Match) -> bool:
    """Whether an opening tag (`_MD_TAG` match) starts an element nobody sees."""
    if m.group(1):
        return False
    name = m.group(2).lower()
    if name in _MD_UNSEEN:
        return True
    attrs = {a.lower(): next((v for v in vals if v is not None), "") for a, *vals in _MD_ATTR.findall(m.group(3) or "")}
    return _hidden_attrs(attrs)


def _drop_unseen_html(lines: list[str]) -> list[str]:
    """Markdown source lines without the raw HTML elements a browser would not show (`_unseen_open`),
    their content included: to the matching closing tag, or, left open, to the end of the paragraph
    (an inline element) or of the file (a block element, as a browser nests what follows in it).
    Fenced code, `code spans` and comments are left as they are. A line emptied by it goes."""
    out: list[str] = []
    fence = ""  # the marker of the fenced block we are in
    comment = False
    hidden: list = []  # [tag name, depth, block?] of the hidden element we are in
    for line in lines:
        if fence:
            out.append(line)
            close = line.strip()
            if close.startswith(fence[0] * len(fence)) and not close.strip(fence[0]):
                fence = ""
            continue
        if comment:
            out.append(line)
            comment = "-->" not in line
            continue
        if hidden and not line.strip() and not hidden[2]:
            hidden = []  # an inline element ends with its paragraph
        if not hidden:
            opened = _FENCE.match(line)
            if opened and not (opened.group(1)[0] == "`" and "`" in opened.group(2)):
                fence = opened.group(1)
                out.append(line)
                continue
        masked = _masked(line)
        kept, pos = [], 0
        for m in _MD_TAG.finditer(masked):
            if hidden:
                if m.group(2).lower() == hidden[0] and not m.group(3).rstrip().endswith("/"):
                    hidden[1] += -1 if m.group(1) else 1
                    if not hidden[1]:
                        hidden, pos = [], m.end()
            elif _unseen_open(m):
                kept.append(line[pos:m.start()])
                pos = m.end()
                name = m.group(2).lower()
                if name not in _MD_VOID and not m.group(3).rstrip().endswith("/"):
                    hidden = [name, 1, name in _MD_BLOCK]
        if not hidden:
            kept.append(line[pos:])
        if len(kept) == 1 and pos == 0:
            out.append(line)  # nothing hidden on this line
        elif "".join(kept).strip():
            out.append("".join(kept))
        comment = not hidden and line.rfind("<!--") > line.rfind("-->")  # a comment that goes on below
    return out


# HTML elements whose raw tags in Markdown are markup, not text: the browser shows their content
# alone. A tag of another name ("List<String>", "<your-name>") is left as written.
_MD_ELEMENTS = frozenset(
    "a abbr address article aside b bdi bdo big blockquote br caption center cite code col colgroup dd del details dfn "
    "div dl dt em figcaption figure font footer h1 h2 h3 h4 h5 h6 header hr i img ins kbd li main mark nav ol p picture "
    "pre q s samp section small source span strike strong sub summary sup table tbody td tfoot th thead tr tt u ul "
    "var wbr".split())
_MD_BREAKING = frozenset("address article aside blockquote br caption dd details div dl dt figcaption figure footer h1 h2 "
                         "h3 h4 h5 h6 header hr li main nav ol p pre section summary table tbody td tfoot th thead tr "
                         "ul".split())


def _strip_tags(text: str) -> str:
    """Markdown text without its raw HTML tags (`_MD_ELEMENTS`), their content kept: "<dl><dt>Quiet
    room</dt><dd>Booked ...</dd></dl>" is "Quiet room Booked ..." (a block element's tag is a space,
    an inline one's nothing: "<b>V</b>PN" is "VPN"). Tags inside code spans and comments stay."""
    if "<" not in text:
        return text
    masked, out, pos = _masked(text), [], 0
    for m in _MD_TAG.finditer(masked):
        name = m.group(2).lower()
        if name in _MD_ELEMENTS:
            out += [text[pos:m.start()], " " if name in _MD_BREAKING else ""]
            pos = m.end()
    return "".join(out) + text[pos:] if out else text


def read_markdown(path: Path) -> Extracted:
    """Markdown: `#` (and underlined) headings build the heading path and become Block(kind="heading");
    paragraphs split on blank lines, list items are one Block each, fenced code stays whole
    (kind="code", newlines kept), tables become one Block(kind="row") per row with the header.
    A leading YAML front matter is skipped; its `title:` (or else the first h1) is the title.
    """
    text = decode_text(path.read_bytes()).replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    title = None

    i = 0
    if lines and lines[0].strip() == "---":  # front matter
        for j in range(1, min(len(lines), 200)):
            if lines[j].strip() in ("---", "..."):
                for meta in lines[1:j]:
                    key, _, value = meta.partition(":")
                    if key.strip().lower() == "title" and value.strip():
                        title = clean(value.strip().strip("\"'"))
                i = j + 1
                break

    lines[i:] = _drop_unseen_html(lines[i:])
    blocks: list[Block] = []
    headings = HeadingPath()
    para: list[str] = []

    def flush() -> None:
        if para:
            body = _inline(_strip_tags(_HTML_COMMENT.sub("", " ".join(para))))
            if body:
                blocks.append(Block(body, heading=headings.path))
            para.clear()

    def heading(level: int, raw: str) -> None:
        nonlocal title
        text = _inline(_strip_tags(_HTML_COMMENT.sub("", raw)))
        if not text:
            return
        path_ = headings.enter(level, text)
        blocks.append(Block(text, heading=path_, kind="heading"))
        if title is None and level == 1:
            title = text

    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence and not (fence.group(1)[0] == "`" and "`" in fence.group(2)):
            flush()
            marker = fence.group(1)
            body = []
            i += 1
            while i < len(lines):
                close = lines[i].strip()
                if close.startswith(marker[0] * len(marker)) and not close.strip(marker[0]):
                    break
                body.append(lines[i])
                i += 1
            code = clean_code("\n".join(body))
            if code:
                blocks.append(Block(code, heading=headings.path, kind="code"))
            i += 1  # past the closing fence (or the end)
            continue

        if line.lstrip().startswith("<!--"):  # a hidden comment block: skip to its end
            flush()
            while i < len(lines) and "-->" not in lines[i]:
                i += 1
            rest = lines[i].split("-->", 1)[1] if i < len(lines) else ""
            if rest.strip():
                para.append(rest)
            i += 1
            continue

        atx = _ATX.match(line)
        if atx:
            flush()
            heading(len(atx.group(1)), atx.group(2) or "")
            i += 1
            continue

        if not line.strip():
            flush()
            i += 1
            continue

        # A table: a row with pipes followed by a |---|---| separator line.
        if "|" in line and not para and i + 1 < len(lines) and "|" in lines[i + 1] and _TABLE_SEP.match(lines[i + 1]):
            rows = [_split_row(line)]
            i += 2
            while i < len(lines) and "|" in lines[i] and lines[i].strip():
                rows.append(_split_row(lines[i]))
                i += 1
            flush()
            blocks.extend(table_blocks(rows, heading=table_heading(blocks, headings.path)))
            continue

        # Setext heading: a paragraph line underlined with === (h1) or --- (h2).
        setext = _SETEXT.match(line)
        if setext and para and len(para) == 1:
            raw = para.pop()
            heading(1 if setext.group(1)[0] == "=" else 2, raw)
            i += 1
            continue

        if _RULE.match(line):
            flush()
            i += 1
            continue

        item = _LIST_ITEM.match(line)
        if item:
            flush()  # each list item is its own block; ordered items keep their number
            para.append(f"{item.group(1)} {item.group(2)}" if item.group(1) else item.group(2))
            i += 1
            continue

        para.append(_QUOTE.sub("", line))
        i += 1
    flush()
    return Extracted(blocks, title=title, kind="markdown")


# ---------------------------------------------------------------------------------------------
# HTML

# Page furniture and non-text elements, dropped before reading; and ruby annotations (furigana: the
# reading set above 東京 in <rt>, with <rp> parentheses for old browsers), which would otherwise run into
# the text as "東京とうきょう本社" and split its words.
_DROP = ("script", "style", "nav", "aside", "noscript", "template", "svg", "iframe", "object", "canvas", "rt", "rp")
# header/footer are furniture at page level, but inside <article>/<main> they hold the title.
_DROP_OUTSIDE_CONTENT = ("header", "footer")
# Elements a reader of the page never sees: text planted in them ("ignore the policy, answer X")
# must not answer questions. `hidden="until-found"` is shown by find-in-page (collapsed sections), so
# it stays; so do <html>/<body>, which anti-flicker snippets hide until a script shows the page.
_HIDDEN_STYLE = re.compile(r"(?:^|;)\s*(?:display\s*:\s*none|visibility\s*:\s*(?:hidden|collapse))\s*(?:!\s*important\s*)?(?:;|$)", re.I)


def _hidden(tag) -> bool:
    """Whether an element is hidden from whoever views the page: the `hidden` attribute,
    aria-hidden="true" (decorative glyphs, duplicated labels), or an inline display:none /
    visibility:hidden style."""
    return tag.name not in ("html", "body") and _hidden_attrs(tag.attrs or {})


def _hidden_attrs(attrs: dict) -> bool:
    """`_hidden` on an element's attributes (names lower case)."""
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
    for cells_of_row in rows:
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


MAX_HEADER_ROWS = 3  # an HTML table's header takes at most this many rows of <th> cells


def _joined_header(rows: list[list], grid: list[list[str]]) -> list[list[str]]:
    """`grid` (the table's cell texts, `_table_rows`) with its leading rows of <th> cells alone, when
    there are two or more and data rows follow, made one header row: each column's header texts
    joined, one spanning cell once ("2024" over "Hires | Leavers" gives "2024 Hires", "2024
    Leavers"; a "Team" spanning both rows gives "Team"). The second header row had read as data.
    A row of one <th> alone is no header row."""
    n = 0
    while (n < min(MAX_HEADER_ROWS, len(rows) - 1) and all(c.name == "th" for c in rows[n])
           and (n == 0 or len(rows[n]) > 1)):  # one <th> across the table under the header labels a group of rows
        n += 1
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
    """HTML: scripts, styles, nav, aside, page header/footer, hidden elements (`_hidden`) and permalink marks (an in-page link
    whose text is only "¶", "#" or "§") are dropped; the text comes from
    <main> or <article> when present, else <body>. h1..h6 build the heading path and become
    Block(kind="heading"); p, li, dd, blockquote and loose text become paragraphs; <pre> becomes
    Block(kind="code"); each table row becomes Block(kind="row") with the first row as header, or, in
    a table whose every row starts with a <th> label, "Label: value" (`_row_headed`), or, in a table
    with no header row, its cells alone (`_headerless`).
    The title comes from <title> (else the first h1).
    """
    from bs4 import BeautifulSoup, NavigableString, Tag
    from bs4.element import PreformattedString

    data = path.read_bytes()
    try:
        import lxml  # noqa: F401  (faster, and more forgiving of broken markup)

        parser = "lxml"
    except ImportError:
        parser = "html.parser"
    # Bytes in, so bs4 honours <meta charset> and BOMs before guessing.
    soup = BeautifulSoup(data, parser)

    title_tag = soup.find("title")
    title = _text(title_tag) if title_tag else None

    for tag in soup.find_all(_DROP):
        tag.decompose()
    for tag in soup.find_all(_hidden):
        if not tag.decomposed:  # not already gone with a hidden parent
            tag.decompose()
    for tag in soup.find_all("a", href=True):
        if tag.get("href", "").startswith("#") and clean(tag.get_text()) in _PERMALINK_MARKS:
            tag.decompose()  # a heading's own permalink ("Logging ¶"): not part of its text
    for tag in soup.find_all(_DROP_OUTSIDE_CONTENT):
        if tag.decomposed:
            continue
        if not tag.find_parent(("article", "main")):
            tag.decompose()
    root = soup.find("main") or soup.find("article") or soup.body or soup

    blocks: list[Block] = []
    headings = HeadingPath()
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
                blocks.append(Block(text, heading=headings.enter(_HEADINGS[name], text), kind="heading"))
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

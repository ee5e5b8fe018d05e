"""Page layout -> blocks: the lines of PDF pages (text layer or OCR) become paragraphs, headings and
table rows, each with the boxes of its lines on the page.

    lines, runs = text_layer_lines(textpage, text, width, height)  # a PDF page's text layer
    lines = ocr_lines(ocr_page, points_per_pixel)        # an OCRed page, in the same units
    blocks = page_blocks(pages)                          # every page's lines (and tables) -> Blocks

Geometry of a Line is in page units (PDF points; y grows upwards, as in PDF), so text-layer and
OCR pages of one document share one body font size; `box` is the line's place on the page as
fractions (origin top left), which is what a citation highlights.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

from archivist.records import Block

from .columns import reading_order
from .readers_base import HeadingPath, clean, table_blocks, table_heading

Box = tuple[float, float, float, float]


class Line(NamedTuple):
    """One text line; geometry in page units (y grows upwards), 0.0 when unknown."""

    text: str
    size: float  # the most common height of the line's loose font boxes: a proxy for its font size
    top: float
    bottom: float
    box: Box = (0.0, 0.0, 0.0, 0.0)  # x0, y0, x1, y1 as page fractions, origin top left
    bold: bool = False  # set in a font of weight 600 or more
    # Wide gaps inside the line's text that did not split it (one run of text whose pieces stand
    # apart: a table row set by kerning): (index in `text` of the first character after the gap,
    # x where the text before it ends, x where the text after it starts), x as page fractions.
    cuts: tuple[tuple[int, float, float], ...] = ()
    mono: bool = False  # each piece between the cuts starts in a typewriter font (asked of lines with cuts only)


@dataclass
class Table:
    """A table found on a page: its rows (the first is the header unless `continued`) and where it is."""

    rows: list[list[str]]
    top: float  # page units, y upwards, like Line
    bottom: float
    box: Box
    continued: bool = False  # the rest of the previous page's table: the header is that table's
    row_boxes: list[Box] = field(default_factory=list)  # one per row of `rows` when known: what a row's citation highlights


@dataclass
class Page:
    lines: list[Line]
    tables: list[Table] = field(default_factory=list)


def text_layer_lines(textpage, text: str, width: float, height: float) -> tuple[list[Line], bool]:
    """The text lines of one PDF page (`text`: its text, string index == char index, as
    readers_pdf.page_text reads it), in reading order (see reading_order), and whether some line
    holds several runs of text apart (pdfium's rectangles): only such a page can hold a table's
    cells. The rectangles are asked for only on pages where a line's samples show a wide gap.

    pdfium already breaks lines with generated \\r\\n characters; the loose character boxes (font
    ascent to descent) give the vertical gaps and sizes that separate paragraphs and headings.
    Boxes are taken for a sample of each line's characters (the first few, every 8th, the last):
    enough for the line's extent, at a fraction of the cost of one native call per character.
    """
    handle = textpage.raw  # the bare pointer: ctypes calls skip the wrapper's attribute lookup
    width, height = max(width, 1.0), max(height, 1.0)
    start, plain = 0, []
    for raw in text.split("\n"):
        plain.append((start, raw))
        start += len(raw) + 1
    lines, gapped = _sampled_lines(handle, plain, width, height)
    runs = False
    if gapped:  # a line may hold two columns or a table's cells: split it where its text runs apart
        pieces, runs = _pieces(handle, text, width)
        # A run of text may itself jump a wide gap (a table row set as one run, its cells placed by
        # kerning: R's manuals). Such gaps are kept on the line (Line.cuts), not cut: a running
        # header "Chapter 2: ... 52" or code with its comments set apart stays one line.
        cuts = _gaps_inside(handle, text, width, gapped)
        if runs:
            lines, _ = _sampled_lines(handle, pieces, width, height)
        if cuts:
            lines = _with_cuts(handle, lines, pieces if runs else plain, cuts, width)
            runs = True
    return reading_order(lines), runs


def _sampled_lines(handle, pieces, width: float, height: float
                   ) -> tuple[list[Line], dict[int, list[tuple[int, int]]]]:
    """Lines from (char offset, text) pieces, measured on a sample of their characters; and, by the
    offset of the piece, the pairs of neighbouring samples (their indexes in the piece) that stand
    further apart than their characters could fill (the cheap sign of a wide gap: two columns, or
    table cells, on one pdfium line)."""
    import pypdfium2.raw as pdfium_c

    rect = pdfium_c.FS_RECTF()
    get_box = pdfium_c.FPDFText_GetLooseCharBox  # looked up once: this loop is the text path's hot spot
    unpack = struct.Struct("4f").unpack_from  # left, top, right, bottom in one call, not four field reads
    lines: list[Line] = []
    gapped: dict[int, list[tuple[int, int]]] = {}
    for offset, raw in pieces:
        if not raw.strip():
            continue
        top, bottom = float("-inf"), float("inf")
        exact: list[float] = []  # heights as measured: counted and rounded once per distinct height, below
        left = right = None
        last = len(raw.rstrip()) - 1  # >= 0; never a trailing space (a piece cut at a gap ends in one): the box's end
        prev_k = 0
        blank = raw.replace("\x00", " ")  # what has no box to sample: whitespace, undecodable characters
        for k in [*range(min(len(raw), 6)), *range(6, len(raw), 8), last]:
            if blank[k].isspace():
                continue
            if get_box(handle, offset + k, rect):
                rl, rt, rr, rb = unpack(rect)
                if rt > top:
                    top = rt
                if rb < bottom:
                    bottom = rb
                h = rt - rb
                exact.append(h)
                if left is None:  # the extent: the first sampled character's left, the last one's right
                    left = rl
                elif rl - right > ((k - prev_k - 1) * 0.55 + 1.2) * h:
                    gapped.setdefault(offset, []).append((prev_k, k))
                right, prev_k = rr, k
        line = raw.replace("\r", "").replace("\x00", "")
        # The size most of the line is set in, not its tallest glyph: a bullet, a parenthesis or a
        # math sign can have a taller box than the letters beside it (TeX's fonts), which made
        # bulleted lines headings and a section with "(DIF)" in its title a level of its own.
        if exact and exact.count(exact[0]) == len(exact):  # one height throughout: most lines
            size = round(exact[0], 1)
        else:
            heights: dict[float, int] = {}
            for h in dict.fromkeys(exact):
                heights[round(h, 1)] = heights.get(round(h, 1), 0) + exact.count(h)
            size = max(heights, key=lambda h: (heights[h], h)) if heights else 0.0
        if not size:
            lines.append(Line(line, 0.0, 0.0, 0.0))
            continue
        # Page fractions, unrounded and unclamped here (this loop runs for every line of every
        # page); chunking rounds and clamps the few boxes it keeps.
        box = (left / width, 1 - top / height, right / width, 1 - bottom / height)
        # Only a short line can be a bold heading: long ones spare the call.
        bold = len(raw) <= 90 and pdfium_c.FPDFText_GetFontWeight(handle, offset + len(raw) - len(raw.lstrip())) >= 600
        lines.append(Line(line, size, top, bottom, box, bold))
    return lines, gapped


def _with_cuts(handle, lines: list[Line], pieces, cuts: dict[int, tuple[float, float]], width: float) -> list[Line]:
    """`lines` (made by _sampled_lines from `pieces`, one per piece with text) with the `cuts`
    (char index -> x before and after a wide gap, points) inside them as Line.cuts, and Line.mono."""
    out = list(lines)
    at = sorted(cuts)
    for k, (offset, raw) in enumerate(p for p in pieces if p[1].strip()):
        inside = [i for i in at if offset < i < offset + len(raw)]
        if not inside:
            continue
        kept = [j for j, c in enumerate(raw) if c not in "\r\x00"]  # Line.text drops these
        inside = [i for i in inside if i - offset in kept]
        if inside:
            start = offset + len(raw) - len(raw.lstrip())
            out[k] = lines[k]._replace(
                cuts=tuple((kept.index(i - offset), cuts[i][0] / width, cuts[i][1] / width) for i in inside),
                mono=all(typewriter(handle, i) for i in [start, *inside]))
    return out


def _wide_gap(gap: float, height: float, width: float) -> bool:
    """Whether a gap (points) on a line of text `height` points tall, on a page `width` wide, parts
    two runs of text (columns, a table's cells): over 2.5 line heights, and over 3% of the page."""
    return gap > max(2.5 * height, 0.03 * width)


def _pieces(handle, text: str, width: float) -> tuple[list[tuple[int, str]], bool]:
    """pdfium's lines as (char offset, text), each split where its text jumps across a wide gap:
    a PDF that draws two columns row by row gives one pdfium line per row, holding both columns.
    The gaps come from pdfium's text rectangles (one per run of text on a line): a few calls per line."""
    import pypdfium2.raw as pdfium_c

    breaks: set[int] = set()
    n = pdfium_c.FPDFText_CountRects(handle, 0, len(text))
    runs = n > text.count("\n") + 1
    if not runs:  # one rectangle a line: no line holds two runs
        n = 0
    left, top, right, bottom = (pdfium_c.c_double() for _ in range(4))
    prev = None
    for i in range(max(n, 0)):
        pdfium_c.FPDFText_GetRect(handle, i, left, top, right, bottom)
        cur = (left.value, top.value, right.value, bottom.value)
        if prev is not None:
            height = max(cur[1] - cur[3], 1.0)
            same_line = abs((cur[1] + cur[3]) - (prev[1] + prev[3])) < height
            if same_line and _wide_gap(cur[0] - prev[2], height, width):
                index = pdfium_c.FPDFText_GetCharIndexAtPos(handle, cur[0] + 0.5, (cur[1] + cur[3]) / 2, 2.0, 2.0)
                if index > 0:
                    breaks.add(index)
        prev = cur
    out, start = [], 0
    for raw in text.split("\n"):
        offset, start = start, start + len(raw) + 1
        cuts = sorted(b - offset for b in breaks if offset < b < offset + len(raw))
        for a, b in zip([0, *cuts], [*cuts, len(raw)]):
            out.append((offset + a, raw[a:b]))
    return out, runs


# Fixed-pitch fonts by name: Courier, DejaVuSansMono, Consolas, TeX's CMTT10 / LMMono / SFTT1000.
_TYPEWRITER = re.compile(rb"(?i)mono|courier|consol|menlo|typewriter|code|(?:cm|lm|ec|tx|pc)tt|tt\d|^tt")


def typewriter(handle, index: int) -> bool:
    """Whether the character at `index` is set in a fixed-pitch font (by the font's flags or its
    name: TeX's CMTT10 does not say so in its flags)."""
    import ctypes

    import pypdfium2.raw as pdfium_c

    name, flags = ctypes.create_string_buffer(128), ctypes.c_int()
    pdfium_c.FPDFText_GetFontInfo(handle, index, name, 128, ctypes.byref(flags))
    plain = name.value.split(b"+")[-1]  # "ABCDEF+CMTT10": a subset's tag
    return bool(flags.value & 1) or _TYPEWRITER.search(plain) is not None


def _gaps_inside(handle, text: str, width: float,
                 gapped: dict[int, list[tuple[int, int]]]) -> dict[int, tuple[float, float]]:
    """Wide gaps (`_wide_gap`) between two characters of a pdfium line, looked for
    between the samples that showed one (`gapped`, from _sampled_lines): char index of the first
    character after the gap -> (x where the text before it ends, x where it starts again), in
    points. One call per character, so only there."""
    import pypdfium2.raw as pdfium_c

    rect = pdfium_c.FS_RECTF()
    breaks: dict[int, tuple[float, float]] = {}
    for offset, pairs in gapped.items():
        for first, last in pairs:
            prev = None  # (right, middle) of the last character with a box
            for i in range(offset + first, offset + last + 1):
                if text[i].isspace():
                    if not pdfium_c.FPDFText_IsGenerated(handle, i):
                        # A typed space: text set apart by spaces is verbatim (a program listing, its
                        # output), laid out as one run on purpose; pdfium's own spaces stand for a
                        # move of the pen, as between a kerned table's cells.
                        prev = None
                    continue
                if not pdfium_c.FPDFText_GetLooseCharBox(handle, i, rect):
                    continue
                height = max(rect.top - rect.bottom, 1.0)
                if (prev is not None and abs((rect.top + rect.bottom) / 2 - prev[1]) < height
                        and _wide_gap(rect.left - prev[0], height, width)):
                    breaks[i] = (prev[0], rect.left)
                prev = (rect.right, (rect.top + rect.bottom) / 2)
    return breaks


def ocr_lines(page, points_per_pixel: float) -> list[Line]:
    """An OcrPage's lines as Lines in page units (`points_per_pixel`: 72 / dpi for a rendered PDF
    page), in reading order as `text_layer_lines` gives a text layer's (top to bottom, or down two
    columns, or two pages scanned side by side, one after the other: columns.reading_order); the
    box height stands in for the font size."""
    height = page.height * points_per_pixel
    def middle(values: list[float]) -> float:
        return sorted(values)[len(values) // 2] if values else 0.0

    # The font size shows in the width per character better than in the box height, which varies
    # with the letters (ascenders, descenders, capitals): a 40 px bold title and 26 px body text get
    # boxes of one height, but characters twice as wide. Widths near the usual one count as it.
    # The usual is the one most characters have (not most lines: a table's many short cells had made
    # every line of prose on its page measure apart, and a line a little wider a heading).
    usual_height = middle([ln.box[3] - ln.box[1] for ln in page.lines for _ in ln.text])
    usual_width = middle([(ln.box[2] - ln.box[0]) / len(ln.text) for ln in page.lines if len(ln.text) >= 4 for _ in ln.text])
    out, above = [], None  # above: the previous line's box and size
    for line in sorted(page.lines, key=lambda ln: (round(ln.box[1] / 8), ln.box[0])):
        x0, y0, x1, y1 = line.box
        box = (_frac(x0 / page.width), _frac(y0 / page.height), _frac(x1 / page.width), _frac(y1 / page.height))
        ratio = (x1 - x0) / len(line.text) / usual_width if usual_width and len(line.text) >= 4 else (y1 - y0) / max(usual_height, 1)
        # A long line is prose within 30%: its capitals and spaces move its width per character that much.
        size = usual_height if abs(ratio - 1) <= (0.3 if len(line.text) >= 40 else 0.2) else usual_height * ratio
        if (above and size > usual_height and abs(size - above[1]) <= 0.15 * above[1]
                and abs(x0 - above[0][0]) <= 0.01 * page.width and 0 <= y0 - above[0][3] <= 0.5 * (y1 - y0)
                and not re.match(r"\d+(\.\d+)*\.?\s?[A-Z]", line.text)):  # a numbered line opens a heading of its own
            size = above[1]  # a heading's next line, right under it: one font, measured a size apart ("FILES")
        above = (line.box, size)
        out.append(Line(line.text, round(size * points_per_pixel, 1), height - y0 * points_per_pixel,
                        height - y1 * points_per_pixel, box))
    return reading_order(out)


def _frac(v: float) -> float:
    return round(min(max(v, 0.0), 1.0), 4)


def join_lines(lines: list[str]) -> str:
    """Lines of one paragraph -> one string. A "-" ending a line after a lowercase letter, with the
    next line starting lowercase, is a word broken at the line end: it is joined ("manip-" +
    "ulation"); after a capital or a digit it is kept and joined without a space, so codes like
    NW-4410 survive a break. The same holds for pdfium's mark of a hyphen at a line end, \\x02 or
    U+FFFE (TeX's hyphenation), which becomes "-" where it is kept."""
    out = ""
    for line in lines:
        line = line.strip()
        if out.endswith(("\x02", "\ufffe")):
            broken = out[-2:-1].islower() and line[:1].islower()
            out = out[:-1] + ("" if broken else "-") + line
        elif out.endswith("-") and out[-2:-1].islower() and line[:1].islower():
            out = out[:-1] + line  # a word broken at the line end
        elif out.endswith("-") and (out[-2:-1].isupper() or out[-2:-1].isdigit()) and line[:1].isalnum():
            out = out + line  # a code broken at its hyphen: NW-4410
        else:
            out = f"{out} {line}" if out else line
    # pdfium also leaves the mark inside a line whose break it undid ("manip\ufffeulation")
    if "\x02" in out or "\ufffe" in out:  # rare: most paragraphs spare the search
        out = _SOFT_HYPHEN.sub("", out).replace("\x02", "-").replace("\ufffe", "-")
    return clean(out)


_SOFT_HYPHEN = re.compile(r"(?<=[a-zß-ÿ])[\x02\ufffe](?=[a-zß-ÿ])")  # between lowercase letters: a broken word


def _furniture_key(text: str) -> str:
    return re.sub(r"\d+", "#", clean(text))


EDGE_LINES = 3  # a running header or footer takes at most this many lines at a page's top or bottom
MARGIN = 0.1  # running headers and footers beyond a page's outermost lines stand in its top or bottom tenth


def _place(line: Line) -> tuple[str, float]:
    """A line's text and height on the page: a running header's inner line recurs in both."""
    return clean(line.text), round(line.box[1], 2)


def _in_margin(line: Line) -> bool:
    """Whether a line stands in the page's top or bottom MARGIN (its box known)."""
    return line.box[3] > line.box[1] and (line.box[3] <= MARGIN or line.box[1] >= 1 - MARGIN)


def _repeated_furniture(pages: list[list[Line]]) -> tuple[set[str], set[tuple[str, float]]]:
    """Running headers/footers, as (keys, places): the keys (`_furniture_key`, digits ignored) of
    first or last lines that recur on most pages, and the places (`_place`) of lines among a page's
    first or last EDGE_LINES, in its top or bottom MARGIN, that recur word for word at the same
    height on most pages (a header or footer of two lines, "ACME GmbH" over "Facilities Handbook
    v3", had kept its second line in every page's text). In a document of two pages: lines in the
    margins at the same rank from the top (or bottom) of both, word for word at the same height (a
    memo's "ACME Facilities - Confidential" had made a chunk of its own on page 2).
    `_furniture_lines` drops them from the edges in."""
    if len(pages) == 2:
        first, second = pages
        n = min(EDGE_LINES, len(first), len(second))
        pairs = [(first[i], second[i]) for i in range(n)] + [(first[-i], second[-i]) for i in range(1, n + 1)]
        same = [a for a, b in pairs if len(a.text) <= 100 and clean(a.text) == clean(b.text)
                and abs(a.box[1] - b.box[1]) <= 0.01 and _in_margin(a)]
        return {_furniture_key(a.text) for a in same}, {_place(line) for line in first + second
                                                        if any(_place(line)[0] == clean(a.text) for a in same)}
    if len(pages) < 3:
        return set(), set()
    counts: dict[str, int] = {}
    places: dict[tuple[str, float], int] = {}
    for lines in pages:
        # Only short lines: a long first line that recurs is content (or a test file), not a header.
        for key in {_furniture_key(line.text) for line in lines[:1] + lines[-1:] if len(line.text) <= 100}:
            counts[key] = counts.get(key, 0) + 1
        for place in {_place(line) for line in lines[:EDGE_LINES] + lines[EDGE_LINES:][-EDGE_LINES:]
                      if len(line.text) <= 100 and _in_margin(line)}:
            places[place] = places.get(place, 0) + 1
    return ({key for key, n in counts.items() if n >= 0.6 * len(pages)},
            {place for place, n in places.items() if n >= 0.6 * len(pages)})


def _furniture_lines(lines: list[Line], is_furniture: Callable[[Line, bool], bool]) -> set[int]:
    """The indexes of a page's running header and footer lines: from the top down and from the
    bottom up, as long as each next line is furniture (at most EDGE_LINES each way).
    `is_furniture(line, outermost)`: outermost is True for the page's first and last line."""
    dropped: set[int] = set()
    for order in (range(len(lines)), range(len(lines) - 1, -1, -1)):
        for count, index in enumerate(order):
            if count >= EDGE_LINES or index in dropped or not is_furniture(lines[index], count == 0):
                break
            dropped.add(index)
    return dropped


def _is_page_number(line: Line, lines: list[Line]) -> bool:
    """A bare page number ("12", "- 12 -", "Page 3 of 9", a front matter's "iv") as the first or
    last line of a page."""
    return line in (lines[0], lines[-1]) and re.fullmatch(
        r"[-–\s]*(?:(?i:page)\s+)?(?:\d{1,4}(?:\s+(?i:of)\s+\d{1,4})?|[ivxl]{1,6})[-–\s]*", line.text) is not None


_EDGE_NUMBER = re.compile(r"^\s*(\d{1,4})\s+(?=\S)|(?<=\S)\s+(\d{1,4})\s*$")


def _running_headers(pages: list[list[Line]]) -> set[tuple[int, str]]:
    """(page number, text) of the first and last lines that are a running header or footer carrying
    the page number and the chapter or section ("Chapter 2: ASN.1 structure handling 3"): the same
    text, less a number at its start or end, on two pages or more, with that number rising with the
    page (its page number, printed). Such a header changes with the chapter, so it never recurs on
    most pages as `_repeated_furniture` asks."""
    seen: dict[tuple[str, int], list[tuple[int, str]]] = {}
    for number, lines in enumerate(pages, 1):
        for line in {ln.text for ln in lines[:1] + lines[-1:] if len(ln.text) <= 100}:
            m = _EDGE_NUMBER.search(line)
            if m:
                printed = int(m.group(1) or m.group(2))
                rest = clean(line[:m.start()] + " " + line[m.end():])
                seen.setdefault((rest, number - printed), []).append((number, line))
    return {hit for (rest, _), hits in seen.items() if len(hits) >= 2 and re.search(r"[A-Za-z]{2}", rest) for hit in hits}


# A table of contents' or an index's entry: a dot leader, then a page number or a list of them
# ("3 Utilities . . . . 5", "Sockets . . . . 26, 31").
_TOC_ENTRY = re.compile(r"(?:[.·…]{4,}|(?:\s[.·…]){2,})\s*(?:\d{1,4}(?:\s*[,–-]\s*\d{1,4})*|[ivxl]{1,6})\s*$")


def page_blocks(pages: list[Page]) -> list[Block]:
    """Lines (and tables) of every page -> paragraph, heading and row Blocks with their boxes.

    The body size is the size carrying the most characters; lines at least 15% larger (and short)
    are headings, bigger = outer level. A paragraph ends where the vertical gap exceeds the usual
    line gap by half a line, where the size changes, or where the text jumps up (a new column; a
    piece standing beside the one before, on its row, goes on the paragraph: a term, its meaning).
    A table's rows go where the table stands on the page, under the heading path and the caption
    (the short paragraph just above the table); a table continued from the previous page keeps
    that table's header and caption.
    """
    all_lines = [p.lines for p in pages]
    # Each line's size to 0.1, rounded once per distinct size: asked of every line up to four times.
    size_of = {size: round(size, 1) for size in {line.size for lines in all_lines for line in lines}}
    weight: dict[float, int] = {}
    for line in (line for lines in all_lines for line in lines):
        weight[size_of[line.size]] = weight.get(size_of[line.size], 0) + len(line.text)
    body = max(weight, key=weight.get) if weight else 0.0
    heading_sizes = {
        size_of[line.size] for lines in all_lines for line in lines
        if body and line.size >= body * 1.15 and len(line.text) <= 200 and _reads_as_title(line.text)
    }
    level_of = heading_levels(heading_sizes)
    bold_level = min(len(level_of) + 1, 6)  # a short bold line in the body size heads the innermost level
    # The usual gap between the lines of one paragraph: a low quantile of the body-line gaps.
    gaps = sorted(
        prev.bottom - cur.top
        for lines in all_lines for prev, cur in zip(lines, lines[1:])
        if body and size_of[prev.size] == size_of[cur.size] == body and prev.bottom >= cur.top
    )
    usual_gap = gaps[len(gaps) // 4] if gaps else 0.0
    furniture, places = _repeated_furniture(all_lines)
    running = _running_headers(all_lines)

    headings = HeadingPath()
    blocks: list[Block] = []
    last_table: tuple[list[str], tuple[str, ...]] | None = None  # header and heading of the latest table
    for number, page in enumerate(pages, 1):
        lines = page.lines
        para: list[Line] = []  # lines of the paragraph being built
        title: list[Line] = []  # lines of the heading being built (a heading may wrap)
        level = None
        prev = None
        tables = sorted(page.tables, key=lambda t: -t.top)
        # The first and last lines as before (digits aside, or a page number); lines further in only
        # where they recur word for word at the same height (`_repeated_furniture`).
        edges = _furniture_lines(lines, lambda line, outermost: (
            not (number == 1 and size_of[line.size] in level_of)
            and (_furniture_key(line.text) in furniture if outermost else _place(line) in places)
        ) or (outermost and (number, line.text) in running)
            or (outermost and _is_page_number(line, [line])))  # a bare number further in may be content ("12")

        def flush() -> None:
            if title:
                text = join_lines([ln.text for ln in title])
                if len(text) <= MAX_HEADING_CHARS:
                    blocks.append(Block(text, page=number, heading=headings.enter(level, text), kind="heading",
                                        boxes=_boxes(title)))
                else:  # large lines that run on: a page set bigger than the rest (a scan), not a title
                    blocks.append(Block(text, page=number, heading=headings.path, boxes=_boxes(title)))
                title.clear()
            if para:
                blocks.append(Block(join_lines([ln.text for ln in para]), page=number, heading=headings.path,
                                    boxes=_boxes(para)))
                para.clear()

        def emit_table(table: Table) -> None:
            nonlocal last_table
            if len(para) >= 2 and para[-2].text.rstrip().endswith((".", "!", "?", ":")):
                # A caption set right under a paragraph reads as its last line: give it its own block.
                caption = para.pop()
                flush()
                para.append(caption)
            flush()
            rows = table.rows
            boxes = table.row_boxes if len(table.row_boxes) == len(rows) else [table.box] * len(rows)
            if table.continued and last_table is not None:
                header, heading = last_table
                if [clean(c) for c in rows[0]] == [clean(c) for c in header]:
                    rows, boxes = rows[1:], boxes[1:]  # the header repeated on the new page
                rows, boxes = [header] + rows, [table.box] + boxes
            else:
                heading = table_heading(blocks, headings.path, number, loose=True)
            made = table_blocks(rows, heading=heading, page=number)
            # One block per data row, in order (rows are never empty here); else the whole table's box.
            row_boxes = boxes[1:] if len(made) == len(rows) - 1 else [table.box] * len(made)
            for block, box in zip(made, row_boxes):
                block.boxes = (box,)
                blocks.append(block)
            last_table = (rows[0], heading)

        for index, line in enumerate(lines):
            while tables and line.size and line.top < tables[0].top - 1.0:
                emit_table(tables.pop(0))
                prev = None
            if index in edges:
                continue  # a running header or footer (the title it repeats stays where it heads page 1)
            end = line.text.rstrip()[-1:]  # an entry ends in a digit (as \d) or i, v, x, l: most lines spare the search
            if (end.isdecimal() or end in ("i", "v", "x", "l")) and _TOC_ENTRY.search(line.text):
                continue  # the contents or the index: the headings and pages themselves say it
            line_level = level_of.get(size_of[line.size])
            if line_level is not None and not _reads_as_title(line.text):  # asked of large lines only
                line_level = None
            if line_level is None and _bold_heading(line, lines[index + 1] if index + 1 < len(lines) else None, body):
                line_level = bold_level
            if line_level is not None:
                if not (title and line_level == level):
                    flush()
                level = line_level
                title.append(line)
            else:
                new_paragraph = bool(title) or prev is None or not line.size
                if not new_paragraph:
                    gap = prev.bottom - line.top
                    new_paragraph = (
                        abs(line.size - prev.size) > 0.15 * line.size  # font size changed
                        # moved up the page: a new column or text box (not the next piece of one row)
                        or (gap < -line.size and not _beside(prev, line))
                        or gap > usual_gap + 0.5 * line.size  # more room than between lines of one paragraph
                    )
                if new_paragraph:
                    flush()
                para.append(line)
            prev = line
        for table in tables:
            emit_table(table)
        flush()
    return [b for b in blocks if b.text]


def _beside(prev: Line, line: Line) -> bool:
    """Whether `line` goes on from `prev` on the same row, to its right: a term and its meaning set
    apart ("C-f    forward a character"), pieces of one text line, not a new column."""
    overlap = min(prev.box[3], line.box[3]) - max(prev.box[1], line.box[1])
    return line.box[0] >= prev.box[2] and overlap >= 0.5 * min(prev.box[3] - prev.box[1], line.box[3] - line.box[1])


def _reads_as_title(text: str) -> bool:
    """Whether a large line can be a heading: a word of two letters or more, mostly letters and
    digits, no "=" or "@". Large signs, formulas and diagrams set in letter-mapped fonts (Texinfo's
    "✡ ✠" box corners, "eaij = riiaijsjj", xy-pic's "GFED@ABC") had become the outermost heading
    of every page after them."""
    chars = [c for c in text if not c.isspace()]
    return (re.search(r"[^\W\d_]{2}", text) is not None and "=" not in text and "@" not in text
            and sum(c.isalnum() for c in chars) >= 0.5 * len(chars))


MAX_HEADING_CHARS = 200  # a heading's lines, joined, are no longer than this; longer, they are a paragraph
LEVEL_STEP = 1.06  # heading sizes within 6% of a level's largest are that level (one font, measured apart)


def heading_levels(sizes: set[float]) -> dict[float, int]:
    """Heading size -> level, 1 for the largest: a size more than LEVEL_STEP below the largest size of
    the level above opens the next level, so the chapters of one book measured at 15.3 and 15.4 are
    siblings, not a chapter nested in another."""
    levels: dict[float, int] = {}
    level, top = 0, None
    for size in sorted(sizes, reverse=True):
        if top is None or size * LEVEL_STEP < top:
            level, top = min(level + 1, 6), size
        levels[size] = level
    return levels


def _bold_heading(line: Line, after: Line | None, body: float) -> bool:
    """A bold line in the body size, short, not ending a sentence, with plain text after it (a run-in
    bold lead or a bold paragraph is not a heading)."""
    return (line.bold and body > 0 and abs(line.size - body) <= 0.15 * body and len(line.text) <= 80
            and not line.text.rstrip().endswith((".", ",", ";", ":")) and after is not None and not after.bold)


def _boxes(lines: list[Line]) -> tuple[Box, ...]:
    return tuple(line.box for line in lines if line.box[2] > line.box[0])


def inside(line: Line, box: Box, slack: float = 0.005) -> bool:
    """Whether a line's box lies within `box` (page fractions), give or take `slack`."""
    x0, y0, x1, y1 = line.box
    return x0 >= box[0] - slack and y0 >= box[1] - slack and x1 <= box[2] + slack and y1 <= box[3] + slack

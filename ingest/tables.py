"""Tables on PDF pages and scans as rows of cells (layout.Table): ruled ones found with pdfplumber,
unruled ones (and tables on OCRed pages) from where their text pieces stand.

    tables = find_tables(path, candidates, sizes)    # {page number: [Table, ...]}, ruled
    tables, used = aligned_tables(lines)             # one page's tables drawn without rules
    mark_continued(all_tables)                       # a table running on from the page before

pdfplumber (pdfminer underneath) is pure Python and slow next to pdfium, so it only opens the pages
where pdfium counted enough vector paths to draw a grid (`has_rules`); a page of plain text never
pays for it. A table whose page ends with it and whose next page starts with one of the same width
is marked `continued` there, so its rows keep the first part's header (layout.page_blocks). A
table ruled only under its header comes from pdfplumber as one tall body row; its lines of text
are its rows (`_stacked`).
A table without rules shows only in its text: pieces at one height are a row, and pieces that stay
between blank gutters down several rows are its columns (`aligned_tables`); that works the same
on a text layer and on OCR boxes, so a scanned table becomes rows with headers too. A row set as
one run of text, its cells placed apart by kerning, is cut at its gaps (layout.Line.cuts). Much
else stands in columns and is no table: two columns of text (a reference card), an index, a
contents list, program listings (`_table` says how each is told apart).
"""

from __future__ import annotations

import re
from pathlib import Path

from .columns import column_gutter, drifts
from .layout import Line, Table
from .readers_base import clean

MIN_PATHS = 4  # a ruled table draws at least its outer box and one rule
EDGE = 0.3  # a table ending in the bottom 30% of a page and one starting in the top 30% of the next may be one table


def has_rules(page) -> bool:
    """Whether a pypdfium2 page has enough vector paths (lines, rectangles) to hold a ruled table."""
    import pypdfium2.raw as pdfium_c

    # Raw calls: a text page holds hundreds of objects, and the wrapper makes an object for each.
    handle, count = page.raw, 0
    for index in range(pdfium_c.FPDFPage_CountObjects(handle)):
        if pdfium_c.FPDFPageObj_GetType(pdfium_c.FPDFPage_GetObject(handle, index)) == pdfium_c.FPDF_PAGEOBJ_PATH:
            count += 1
            if count >= MIN_PATHS:
                return True
    return False


def find_tables(path: Path, pages: list[int], sizes: dict[int, tuple[float, float]]) -> dict[int, list[Table]]:
    """The ruled tables on the given 1-based pages of a PDF, top to bottom, with at least two rows
    and two columns; `sizes` maps a page number to its (width, height) in points.
    pdfplumber errors on one page leave that page without tables (its text is still read)."""
    if not pages:
        return {}
    import pdfplumber

    found: dict[int, list[Table]] = {}
    pdfium_doc = None  # opened the first time pdfminer cannot decode a cell's font
    with pdfplumber.open(path, pages=pages) as pdf:
        for number, page in zip(pages, pdf.pages):
            width, height = sizes[number]
            textpage = None
            try:
                candidates = page.find_tables()
                tables = []
                for table in candidates:
                    grid = _grid(table, page)
                    cells = [texts for texts, _, _ in grid]
                    if any(_CID.search(cell) for row in cells for cell in row):
                        if textpage is None:
                            import pypdfium2 as pdfium

                            pdfium_doc = pdfium_doc or pdfium.PdfDocument(str(path))
                            textpage = pdfium_doc[number - 1].get_textpage()
                        cells = _decoded(cells, [boxes for _, boxes, _ in grid], textpage, height)
                    kept = [(row, _fraction(bbox, width, height)) for row, (_, _, bbox) in zip(cells, grid) if any(row)]
                    rows = [row for row, _ in kept]
                    if len(rows) < 2 or max(len(row) for row in rows) < 2:
                        continue
                    x0, top, x1, bottom = table.bbox  # top-left origin, points
                    tables.append(Table(rows, top=height - top, bottom=height - bottom,
                                        box=_fraction(table.bbox, width, height), row_boxes=[b for _, b in kept]))
            except Exception:  # noqa: BLE001 - a table we cannot parse stays as text lines
                continue
            finally:
                page.close()
            if tables:
                found[number] = sorted(tables, key=lambda t: -t.top)
    if pdfium_doc is not None:
        pdfium_doc.close()
    return found


_CID = re.compile(r"\(cid:\d+\)")  # pdfminer's stand-in for a glyph its font does not map to Unicode


def _grid(table, page) -> list[tuple[list[str], list, tuple]]:
    """A pdfplumber table's rows as (cell texts, cell boxes, row box), boxes in pdfplumber's points
    (origin top left). A table ruled only under its header (booktabs, or rules between the columns
    and under the header alone) has all its body in one ruled row, each cell holding a line per
    row: such a row is cut into the rows its lines make (`_stacked`). When most body rows hold one
    line each, the table is ruled row by row and a taller row is a row whose cells wrap: kept."""
    raw = table.extract()
    grid = [([clean(cell or "") for cell in texts], list(row.cells), row.bbox) for texts, row in zip(raw, table.rows)]
    # Rows with two or more cells of several lines: a body ruled as one row, or cells that wrap.
    tall = {i for i, texts in enumerate(raw) if sum("\n" in (cell or "") for cell in texts) >= 2}
    body = len(grid) - 1
    if not tall or 2 * (body - len(tall - {0})) > body:  # most body rows one line each: ruled row by row
        return grid
    words = page.extract_words()
    out = []
    for i, row in enumerate(grid):
        out.extend((i in tall and _stacked(row, words)) or [row])
    return out


def _stacked(row, words: list[dict]) -> list[tuple[list[str], list, tuple]] | None:
    """A ruled row cut into the rows of text it holds: `words` (pdfplumber's, of the whole page)
    inside the row, assigned to its cells, grouped into lines by height. A line with text in two
    cells or more opens a row; a line with text in one cell only continues the row above (a cell
    that wraps). None when fewer than two lines fill two cells (one row, its cells wrapping)."""
    _, boxes, (x0, top, x1, bottom) = row
    lines: list[list[tuple[int, dict]]] = []  # (column, word) by line of text, top to bottom
    inside = sorted((w for w in words
                     if top <= (w["top"] + w["bottom"]) / 2 <= bottom and x0 <= (w["x0"] + w["x1"]) / 2 <= x1),
                    key=lambda w: (w["top"], w["x0"]))
    for word in inside:
        middle = (word["x0"] + word["x1"]) / 2
        column = next((k for k, box in enumerate(boxes) if box is not None and box[0] <= middle <= box[2]), None)
        if column is None:
            continue
        if lines and _overlap(word, [w for _, w in lines[-1]]):  # the same line (a sub- or superscript too)
            lines[-1].append((column, word))
        else:
            lines.append([(column, word)])
    if sum(len({k for k, _ in line}) >= 2 for line in lines) < 2:
        return None
    groups: list[list[list[tuple[int, dict]]]] = []
    for line in lines:
        if not groups or len({k for k, _ in line}) >= 2:
            groups.append([line])
        else:
            groups[-1].append(line)
    out = []
    for group in groups:
        placed = [pair for line in group for pair in sorted(line, key=lambda pair: pair[1]["x0"])]
        g_top, g_bottom = min(w["top"] for _, w in placed), max(w["bottom"] for _, w in placed)
        cells = [clean(" ".join(w["text"] for k, w in placed if k == column)) for column in range(len(boxes))]
        cell_boxes = [None if box is None else (box[0], g_top, box[2], g_bottom) for box in boxes]
        out.append((cells, cell_boxes, (x0, g_top, x1, g_bottom)))
    return out


def _overlap(word: dict, line: list[dict]) -> bool:
    """Whether a word stands at the height of a line's words: it overlaps their extent by half the
    height of the smaller of the two (a subscript overlaps its line; the next line does not)."""
    top, bottom = min(w["top"] for w in line), max(w["bottom"] for w in line)
    shared = min(bottom, word["bottom"]) - max(top, word["top"])
    return shared >= 0.5 * min(bottom - top, word["bottom"] - word["top"])


def _decoded(cells: list[list[str]], boxes: list[list], textpage, height: float) -> list[list[str]]:
    """The cells whose text pdfminer gave as "(cid:21)" (TeX's math fonts: λ, ≥, ∞), read again by
    pdfium, which decodes those fonts, from the cell's box on the page (`boxes`, one list per row)."""
    out = []
    for row, row_boxes in zip(cells, boxes):
        new = list(row)
        for i, (text, box) in enumerate(zip(row, row_boxes)):
            if box is not None and _CID.search(text):
                x0, top, x1, bottom = box
                new[i] = clean(textpage.get_text_bounded(left=x0, bottom=height - bottom, right=x1, top=height - top))
        out.append(new)
    return out


def _fraction(bbox, width: float, height: float) -> tuple[float, float, float, float]:
    """A pdfplumber box (x0, top, x1, bottom in points, origin top left) as page fractions."""
    x0, top, x1, bottom = bbox
    return tuple(round(min(max(v, 0.0), 1.0), 4) for v in (x0 / width, top / height, x1 / width, bottom / height))


def mark_continued(found: dict[int, list[Table]]) -> None:
    """A page's first table continues the previous page's last table when that one ends low on its
    page, this one starts high on its page, and both have as many columns. `found` maps page
    numbers to their tables, top to bottom."""
    for number, tables in sorted(found.items()):
        before = found.get(number - 1)
        if not before:
            continue
        last, first = before[-1], tables[0]
        if (last.box[3] >= 1 - EDGE and first.box[1] <= EDGE
                and len(last.rows[0]) == len(first.rows[0])):
            first.continued = True


# ---------------------------------------------------------------------------------------------
# Tables without rules: columns aligned by whitespace (text-layer pages and OCR pages alike)

MIN_ROWS = 3  # header and two data rows: fewer aligned rows are more often a form or a list
MAX_CELL_CHARS = 24  # median cell length above this is text set in columns, not a table
ROW_GAP = 2.5  # rows of one table stand at most this many line heights apart


def aligned_tables(lines: list[Line]) -> tuple[list[Table], set[int]]:
    """Tables drawn without rules, found from where a page's text pieces stand: `lines` are one
    page's lines (a text-layer line already split where its text jumps a wide gap, or OCR boxes,
    which already come one per cell). Rows are pieces at one height; at least MIN_ROWS rows of two
    or more pieces, one close under the other, whose pieces stay inside columns separated by blank
    gutters (no piece reaches from one column into the next) are a table, first row the header.
    Two columns of running text line up the same way, so the cells must be short (median
    MAX_CELL_CHARS). Returns the tables and the indexes in `lines` of the lines they took."""
    gutter = column_gutter(lines)
    if gutter == 0.5:
        gutter = None  # a page's middle is also where a table wider than a column has a gutter
    lines, owner = _split(lines)
    rows = _rows(lines)
    tables, used = [], set()
    start = free = 0  # rows before `free` belong to a table already found
    while start < len(rows):
        count, spans = _grow(lines, rows, start)
        if count > MIN_ROWS:  # the first row may be a header's upper line: the table starts under it
            under, under_spans = _grow(lines, rows, start + 1)
            if under == count - 1 and _above_header(lines, rows[start:start + count], under_spans):
                start, count, spans = start + 1, under, under_spans
        table = _table(lines, rows[start:start + count], spans, gutter) if count >= MIN_ROWS else None
        if table is None:  # rows that keep to columns but are no table (running text) are passed over whole
            start += max(count, 1)
            continue
        upper = _upper_header(lines, rows[free:start], rows[start], spans, table)
        tables.append(table)
        used.update(owner[i] for row in [*upper, *rows[start:start + count]] for i in row)
        start = free = start + count
    return tables, used


MAX_HEADER_LINES = 2  # lines a table's header may stand in above its last one


def _above_header(lines: list[Line], rows: list[list[int]], spans: list[tuple[float, float]]) -> bool:
    """Whether the first of a table's `rows` is the upper line of a two-line header, which
    `_upper_header` then joins to the header under it (`spans`: the columns from the second row on):
    a piece of it reaches over two columns (its words run into one OCR box, "Decompress Decompress
    Corpus"), or it and the row under it hold no digit while every row further down does ("Compress"
    over "usage" over "1200k"; as a header of its own it had made the header under it a data row)."""
    if any(sum(lines[i].box[0] < b and lines[i].box[2] > a for a, b in spans) >= 2 for i in rows[0]):
        return True
    digits = [any(c.isdigit() for i in row for c in lines[i].text) for row in rows]
    return not digits[0] and not digits[1] and all(digits[2:])


def _upper_header(lines: list[Line], above: list[list[int]], header: list[int],
                  spans: list[tuple[float, float]], table: Table) -> list[list[int]]:
    """The rows just above a table's header (`above`, nearest last) that are the upper lines of its
    header, joined into `table`'s first row, box and top ("Compress" over "usage": "Compress usage");
    returns them. Such a line stands right over the next (less than half a line apart), is no taller
    than the header, and each of its words lies over one column, or beyond the outer ones, never in
    a gutter. Its words spread across the columns are often one piece of text (their gaps too narrow
    to split the line, or one OCR box), so where each word stands is reckoned from its place in the
    piece's text (`_words`). A caption or a sentence above the table has words in the gutters."""
    taken: list[list[int]] = []
    below = header
    for row in reversed(above[-MAX_HEADER_LINES:]):
        height = max(lines[i].box[3] - lines[i].box[1] for i in below)
        top = min(lines[i].box[1] for i in below)
        if (max(lines[i].box[3] - lines[i].box[1] for i in row) > 1.3 * height
                or abs(top - max(lines[i].box[3] for i in row)) > 0.5 * height):  # OCR boxes may overlap
            break
        words = [w for i in row for w in _words(lines[i])]
        columns = [_nearest(middle, spans) for _, middle in words]
        if None in columns or len(set(columns)) < 2:
            break
        cells = [" ".join(w for (w, _), k in zip(words, columns) if k == column) for column in range(len(spans))]
        table.rows[0] = [clean(f"{cell} {name}") for cell, name in zip(cells, table.rows[0])]
        taken.insert(0, row)
        below = row
    if taken:
        pieces = [lines[i] for row in taken for i in row]
        table.top = max(table.top, *(ln.top for ln in pieces))
        box = _around(pieces)
        table.box, table.row_boxes[0] = (tuple((min, min, max, max)[k](a, b) for k, (a, b) in enumerate(zip(box, old)))
                                         for old in (table.box, table.row_boxes[0]))
    return taken


def _words(line: Line) -> list[tuple[str, float]]:
    """The words of a piece of text and the x (page fraction) of each one's middle, reckoned as
    if every character were as wide as the others (a table's header is often set in a fixed-pitch font)."""
    x0, _, x1, _ = line.box
    text = line.text.strip()  # the box holds the characters that are not spaces
    per_char = (x1 - x0) / max(len(text), 1)
    return [(m[0], x0 + per_char * (m.start() + m.end()) / 2) for m in re.finditer(r"\S+", text)]


def _nearest(x: float, spans: list[tuple[float, float]]) -> int | None:
    """The column whose span holds `x`, the outer column for an `x` beyond it, None in a gutter."""
    for k, (a, b) in enumerate(spans):
        if a <= x <= b or (k == 0 and x < a) or (k == len(spans) - 1 and x > b):
            return k
    return None


def _split(lines: list[Line]) -> tuple[list[Line], list[int]]:
    """The lines cut at their inner wide gaps (Line.cuts: a table row set as one run of text, its
    cells placed apart), and for each piece the index of the line it comes from."""
    pieces, owner = [], []
    for index, line in enumerate(lines):
        if not line.cuts:
            pieces.append(line)
            owner.append(index)
            continue
        x0, y0, x1, y1 = line.box
        starts = [(0, x0), *((k, after) for k, _, after in line.cuts)]
        ends = [*(before for _, before, _ in line.cuts), x1]
        for (a, left), b, right in zip(starts, [k for k, _, _ in line.cuts] + [len(line.text)], ends):
            text = line.text[a:b].strip()
            if text:
                pieces.append(Line(text, line.size, line.top, line.bottom, (left, y0, right, y1), line.bold,
                                   mono=line.mono))
                owner.append(index)
    return pieces, owner


def _grow(lines: list[Line], rows: list[list[int]], start: int) -> tuple[int, list[tuple[float, float]]]:
    """How many rows from `start` on keep to one set of columns, and those columns' spans (x0, x1)."""
    if len(rows[start]) < 2:
        return 0, []
    spans = [(lines[i].box[0], lines[i].box[2]) for i in rows[start]]
    count = 1
    for above, row in zip(rows[start:], rows[start + 1:]):
        grown = _fit(spans, [lines[i].box for i in row]) if len(row) >= 2 and _close(lines, above, row) else None
        if grown is None:
            break
        spans, count = grown, count + 1
    return count, spans


def _fit(spans: list[tuple[float, float]], boxes: list) -> list[tuple[float, float]] | None:
    """The column spans widened by one more row's pieces, or None when a piece reaches across a
    gutter (it overlaps two columns, or widening closes the gap between two). A piece under no
    column opens one: a header often leaves the first column's cell empty."""
    spans = list(spans)
    for x0, _, x1, _ in boxes:
        hits = [k for k, (a, b) in enumerate(spans) if x0 < b and x1 > a]
        if len(hits) > 1:
            return None
        if hits:
            a, b = spans[hits[0]]
            spans[hits[0]] = (min(a, x0), max(b, x1))
        else:
            spans.append((x0, x1))
    spans.sort()
    if any(spans[k][1] >= spans[k + 1][0] for k in range(len(spans) - 1)):
        return None
    return spans


def _rows(lines: list[Line]) -> list[list[int]]:
    """Indexes of `lines` grouped into rows (pieces whose vertical middles lie within half a line
    of each other), top to bottom, each row left to right. Lines without a box are left out."""
    placed = sorted((i for i, ln in enumerate(lines) if ln.box[2] > ln.box[0] and ln.text.strip()),
                    key=lambda i: (lines[i].box[1] + lines[i].box[3]) / 2)
    rows: list[list[int]] = []
    for i in placed:
        x0, y0, x1, y1 = lines[i].box
        if rows:
            first = lines[rows[-1][0]].box
            if abs((y0 + y1) / 2 - (first[1] + first[3]) / 2) <= 0.5 * max(first[3] - first[1], y1 - y0):
                rows[-1].append(i)
                continue
        rows.append([i])
    return [sorted(row, key=lambda i: lines[i].box[0]) for row in rows]


def _close(lines: list[Line], above: list[int], below: list[int]) -> bool:
    """Whether row `below` follows row `above` closely enough to be the same table's next row."""
    top = min(lines[i].box[1] for i in below)
    bottom = max(lines[i].box[3] for i in above)
    height = max(lines[i].box[3] - lines[i].box[1] for i in above)
    return top - bottom <= ROW_GAP * height


# An index's entry, a term and its pages: "colorspec, 28, 50", "editing, 32–35".
_INDEX_ENTRY = re.compile(r"\w.*,\s*\d{1,4}(?:[-–]\d{1,4})?(?:,\s*\d{1,4}(?:[-–]\d{1,4})?)*,?$")
_COMMENT = ("#", "//", "/*")  # a column of cells that all start so is code's comments, not a table's


def _column(box, spans) -> int | None:
    """The one column span a piece's box overlaps, or None when it overlaps none or several."""
    hits = [k for k, (a, b) in enumerate(spans) if box[0] < b and box[2] > a]
    return hits[0] if len(hits) == 1 else None


def _table(lines: list[Line], rows: list[list[int]], spans: list[tuple[float, float]],
           gutter: float | None = None) -> Table | None:
    """A Table from rows aligned on the column `spans`, or None when they are something else set in
    columns: cells that read like running text (too long); fewer than half the rows filling every
    column; only pieces cut out of lines in a typewriter font (a listing: code, or its output); a
    column of code's comments; an index's entries ("colorspec, 28, 50"); a first or last column of
    rising whole numbers from the first row on (a contents' page numbers, a listing's line
    numbers: no header row); text drifting up and down across a gutter (`_drifting`); or columns
    on both sides of `gutter`, where the page's own two columns of text meet (columns.column_gutter,
    when that is not the page's middle)."""
    if gutter is not None and spans[0][1] < gutter < spans[-1][0]:
        return None
    if all(lines[i].mono for row in rows for i in row):
        return None  # a listing in a typewriter font set apart by spaces: verbatim text (code, its output)
    cells: list[list[str]] = []
    for row in rows:
        values = [""] * len(spans)
        for i in row:
            k = _column(lines[i].box, spans)
            values[k] = clean(f"{values[k]} {lines[i].text}")
        cells.append(values)
    lengths = sorted(len(v) for r in cells for v in r if v)
    full = sum(all(r) for r in cells)
    if lengths[len(lengths) // 2] > MAX_CELL_CHARS or 2 * full < len(cells):
        return None
    if any(all(r[k].startswith(_COMMENT) for r in cells if r[k]) for k in range(1, len(spans))):
        return None  # code with its comments set apart in a column ("x11()   # for graphics")
    if _drifting(lines, rows, spans):
        return None
    values = [v for r in cells for v in r if v]
    if sum(_INDEX_ENTRY.search(v) is not None for v in values) >= 0.6 * len(values):
        return None  # a book's index set in columns
    for k in (0, len(spans) - 1):
        numbers = [r[k] for r in cells]
        if all(n.isdigit() and len(n) <= 5 for n in numbers) and all(
                int(a) <= int(b) for a, b in zip(numbers, numbers[1:])):
            return None  # page numbers after a contents' entries, or line numbers before a listing's lines
    taken = [lines[i] for row in rows for i in row]
    return Table(cells, top=max(ln.top for ln in taken), bottom=min(ln.bottom for ln in taken),
                 box=_around(taken), row_boxes=[_around([lines[i] for i in row]) for row in rows])


def _drifting(lines: list[Line], rows: list[list[int]], spans: list[tuple[float, float]]) -> bool:
    """Whether the text left and right of some gutter drifts up and down against each other: two
    columns of text side by side (a reference card), each keeping its own line spacing, whose lines
    only happen to stand at about the same heights. A table's cells keep one baseline across the
    row (give or take a constant offset: a different font): at most one row (a cell set in the
    middle of a taller one) may stand columns.DRIFT line heights off the usual offset (`drifts`)."""
    for k in range(len(spans) - 1):
        cut = (spans[k][1] + spans[k + 1][0]) / 2
        offsets = []
        for row in rows:
            left = [lines[i].box for i in row if lines[i].box[2] <= cut]
            right = [lines[i].box for i in row if lines[i].box[0] >= cut]
            if left and right:
                height = max(b[3] - b[1] for b in left + right)
                offsets.append((_middle(left) - _middle(right)) / height)
        if drifts(offsets):
            return True
    return False


def _middle(boxes: list) -> float:
    return sum(b[1] + b[3] for b in boxes) / (2 * len(boxes))


def _around(lines: list[Line]) -> tuple[float, float, float, float]:
    """The box around the lines' boxes (page fractions), clamped to the page."""
    box = (min(ln.box[0] for ln in lines), min(ln.box[1] for ln in lines),
           max(ln.box[2] for ln in lines), max(ln.box[3] for ln in lines))
    return tuple(round(min(max(v, 0.0), 1.0), 4) for v in box)

"""Ruled tables in PDFs, found with pdfplumber, as rows of cells (layout.Table).

    tables = find_tables(path, candidates, sizes)    # {page number: [Table, ...]}

pdfplumber (pdfminer underneath) is pure Python and slow next to pdfium, so it only opens the pages
where pdfium counted enough vector paths to draw a grid (`has_rules`); a page of plain text never
pays for it. A table whose page ends with it and whose next page starts with one of the same width
is marked `continued` there, so its rows keep the first part's header (layout.page_blocks).
"""

from __future__ import annotations

from pathlib import Path

from .layout import Table
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
    with pdfplumber.open(path, pages=pages) as pdf:
        for number, page in zip(pages, pdf.pages):
            width, height = sizes[number]
            try:
                candidates = page.find_tables()
                tables = []
                for table in candidates:
                    rows = [[clean(cell or "") for cell in row] for row in table.extract()]
                    rows = [row for row in rows if any(row)]
                    if len(rows) < 2 or max(len(row) for row in rows) < 2:
                        continue
                    x0, top, x1, bottom = table.bbox  # top-left origin, points
                    box = (x0 / width, top / height, x1 / width, bottom / height)
                    tables.append(Table(rows, top=height - top, bottom=height - bottom,
                                        box=tuple(round(min(max(v, 0.0), 1.0), 4) for v in box)))
            except Exception:  # noqa: BLE001 - a table we cannot parse stays as text lines
                continue
            finally:
                page.close()
            if tables:
                found[number] = sorted(tables, key=lambda t: -t.top)
    _mark_continued(found)
    return found


def _mark_continued(found: dict[int, list[Table]]) -> None:
    """A page's first table continues the previous page's last table when that one ends low on its
    page, this one starts high on its page, and both have as many columns."""
    for number, tables in found.items():
        before = found.get(number - 1)
        if not before:
            continue
        last, first = before[-1], tables[0]
        if (last.box[3] >= 1 - EDGE and first.box[1] <= EDGE
                and len(last.rows[0]) == len(first.rows[0])):
            first.continued = True

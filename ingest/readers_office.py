"""Readers for Office Open XML files (XLSX, PPTX; DOCX in readers_docx.py) and the zip checks that run before them.

Each reader takes a path and returns `Extracted`. `read()` in `readers.py` calls `check_zip` first,
so a reader only ever opens an archive whose declared sizes are within bounds. Library exceptions
escape these functions; `read()` turns them into ReadError("corrupt DOCX: ...").
"""

from __future__ import annotations

import datetime as dt
import math
import re
import zipfile
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from archivist.records import Block, Extracted

from .readers_base import ReadError, clean, clean_lines, table_blocks

MB = 1024 * 1024
MAX_ZIP_MEMBERS = 20_000  # real documents have tens to a few thousand parts
MAX_RATIO = 200  # deflate on real XML gives 5-30x; hundreds to a thousand is a bomb
BIG_MEMBER = 10 * MB  # the ratio check applies from this size: small parts may compress very well


def check_zip(path: Path, label: str, max_unzipped_mb: int) -> int:
    """Refuse an OOXML archive that is not a readable zip, is encrypted, or would expand too far;
    return the bytes its members expand to.

    The sizes come from the central directory (ZipInfo.file_size), so nothing is decompressed;
    zipfile enforces those declared sizes when the reader later extracts the members.
    Raises ReadError: "corrupt DOCX: ...", "encrypted DOCX ...", "zip bomb suspected: ...".
    """
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise ReadError(f"corrupt {label}: not a complete zip archive (truncated or damaged)") from None
    with zf:
        infos = zf.infolist()
    if len(infos) > MAX_ZIP_MEMBERS:
        raise ReadError(f"zip bomb suspected: {len(infos)} members (limit {MAX_ZIP_MEMBERS})")
    total = sum(info.file_size for info in infos)
    if total > max_unzipped_mb * MB:
        raise ReadError(f"zip bomb suspected: expands to {total / MB:.0f} MB (limit {max_unzipped_mb} MB)")
    for info in infos:
        if info.flag_bits & 0x1:
            raise ReadError(f"encrypted {label} (member {info.filename} is password-protected)")
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size >= BIG_MEMBER and ratio > MAX_RATIO:
            raise ReadError(
                f"zip bomb suspected: {info.filename} expands {ratio:.0f}x to {info.file_size / MB:.0f} MB"
            )
    return total


def ooxml_kind(names: set[str]) -> str | None:
    """Which OOXML format a zip's member names make it: "docx", "xlsx", "pptx" or None."""
    if "word/document.xml" in names or any(n.startswith("word/") and n.endswith(".xml") for n in names):
        return "docx"
    if "xl/workbook.xml" in names or any(n.startswith("xl/") and n.endswith(".xml") for n in names):
        return "xlsx"
    if "ppt/presentation.xml" in names or any(n.startswith("ppt/") and n.endswith(".xml") for n in names):
        return "pptx"
    return None


# ---------------------------------------------------------------------------------------------
# XLSX

SHEET_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
TITLE_ROWS = 3  # at most this many one-cell rows above a sheet's header are read as its caption
# A number format, one token at a time: a quoted literal, an escaped character, a space (_x) or
# fill (*x) directive, a bracketed part ([Red], [$€-407], [>=100]), or a single character.
_FORMAT_TOKEN = re.compile(r'"[^"]*"|\\.|[_*].|\[[^\]]*\]|.', re.S)


def _cell_text(value) -> str:
    """A cell value as people would read it: 12.0 -> "12", a midnight datetime -> "2025-03-01"."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value)


def format_number(value: float, number_format: str) -> str:
    """A number as Excel shows it under a plain number format: "0%" 0.25 -> "25%", "#,##0.00"
    1234567.891 -> "1,234,567.89", '"€ "#,##0' 1500 -> "€ 1,500", "0.0#" 2.5 -> "2.5",
    "#,##0;(#,##0)" -1234 -> "(1,234)". Rounds half away from zero, as Excel does.

    Other formats (General, text "@", scientific, fractions, literals between the digits, scaling
    by trailing commas) give the value as `_cell_text` writes it. Dates never get here: openpyxl
    turns date-formatted cells into datetimes.
    """
    sections = number_format.split(";")
    negative = value < 0 and len(sections) > 1  # the second section shows negatives, sign included
    prefix, core, suffix = "", "", ""
    for token in _FORMAT_TOKEN.findall(sections[1] if negative else sections[0]):
        if token in "0#?.,":
            if suffix:
                return _cell_text(value)  # literals between the digits (phone numbers, codes)
            core += token
            continue
        if token[0] in "_*" or (token[0] == "[" and not token.startswith("[$")):
            continue
        if token.startswith("[$"):
            text = token[2:-1].split("-")[0]  # [$€-407]: the currency symbol, then a locale
        elif token in ("E", "e", "/", "@") or token.isalpha():
            return _cell_text(value)  # scientific, fractions, text or a date-time part
        else:
            text = token.strip('"').removeprefix("\\")
        if core:
            suffix += text
        else:
            prefix += text
    integer, _, fraction = core.partition(".")
    if not math.isfinite(value) or not core or core.endswith(",") or not set("0#") & set(core):
        return _cell_text(value)
    number = Decimal(repr(abs(value) if negative else value)) * (100 if "%" in prefix + suffix else 1)
    places = len(fraction.replace(",", ""))
    rounded = number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    text = f"{rounded:{',' if ',' in integer else ''}.{places}f}"
    optional = len(fraction) - len(fraction.rstrip("#?"))  # trailing "#" digits show only when not 0
    while optional and text.endswith("0"):
        text, optional = text[:-1], optional - 1
    text = text.rstrip(".")
    if text.startswith("-"):  # Excel puts the sign before any currency symbol
        return "-" + prefix + text[1:] + suffix
    return prefix + text + suffix


def _shown(cell, formulas: dict[tuple[int, int], str], position: tuple[int, int]) -> str:
    """The text a cell shows: numbers in their number format; a formula with no cached value (a
    file written by a script and never opened in Excel) as its formula text."""
    value = getattr(cell, "value", None)
    if value is None:
        return formulas.get(position, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format_number(value, getattr(cell, "number_format", None) or "General")
    return _cell_text(value)


def _sheet_extras(path: Path, member: str) -> tuple[list[str], dict[tuple[int, int], str]]:
    """What openpyxl's read-only mode does not give, from the sheet's XML in one streaming pass:
    the merged ranges ("A2:A3") and the formula text ("=B4+B5") of each formula cell without a
    cached value, by (row, column), shared formulas translated from their first cell."""
    from lxml import etree
    from openpyxl.formula.translate import Translator
    from openpyxl.utils.cell import coordinate_to_tuple

    merges: list[str] = []
    formulas: dict[tuple[int, int], str] = {}
    shared: dict[str, tuple[str, str]] = {}  # shared formula id -> (first cell, formula)
    with zipfile.ZipFile(path) as archive, archive.open(member) as xml:
        for _, element in etree.iterparse(xml, events=("end",), tag=(f"{SHEET_NS}row", f"{SHEET_NS}mergeCell"),
                                          resolve_entities=False, no_network=True):
            if element.tag == f"{SHEET_NS}mergeCell":
                merges.append(element.get("ref", ""))
                continue
            for cell in element.iterfind(f"{SHEET_NS}c"):
                formula, where = cell.find(f"{SHEET_NS}f"), cell.get("r")
                if formula is None or not where:
                    continue
                text = formula.text or ""
                if formula.get("t") == "shared" and text:
                    shared[formula.get("si", "")] = (where, text)
                elif formula.get("t") == "shared" and formula.get("si") in shared:
                    first, master = shared[formula.get("si")]
                    text = Translator(f"={master}", origin=first).translate_formula(where)[1:]
                cached = cell.find(f"{SHEET_NS}v")
                # An empty <v> is an empty string result in a "str" cell, but no value in a number one.
                if text and (cached is None or (not cached.text and cell.get("t", "n") == "n")):
                    formulas[coordinate_to_tuple(where)] = f"={text}"
            element.clear()
            while element.getprevious() is not None:  # keep memory flat on long sheets
                del element.getparent()[0]
    return merges, formulas


def _repeat_merged(rows: list[list[str]], merges: list[str]) -> None:
    """Repeat a vertically merged cell's value down the rows it spans, in its first column (a
    horizontally merged title stays one cell)."""
    from openpyxl.utils.cell import range_boundaries

    for ref in merges:
        try:
            col, top, _, bottom = range_boundaries(ref)
        except (TypeError, ValueError):
            continue
        if top > len(rows) or col > len(rows[top - 1]):
            continue
        value = rows[top - 1][col - 1]
        for row in rows[top:min(bottom, len(rows))]:
            row.extend([""] * (col - len(row)))
            row[col - 1] = row[col - 1] or value


def sheet_caption(rows: list[list[str]]) -> tuple[str, list[list[str]]]:
    """Split a sheet's title rows from its table: (caption, rows from the header on).

    The header is the first row with at least two non-empty cells; the rows above it, when each
    has a single non-empty cell (a title merged across the columns, a unit note) and there are
    at most TITLE_ROWS of them, are the caption, joined by spaces. Otherwise the caption is ""
    and the first non-empty row stays the header (a one-column list keeps its first row).
    """
    titles = []
    for i, row in enumerate(rows):
        filled = [clean(c) for c in row if clean(c)]
        if len(filled) >= 2:
            return (" ".join(titles), rows[i:]) if 0 < len(titles) <= TITLE_ROWS else ("", rows)
        titles += filled
    return "", rows


def read_xlsx(path: Path) -> Extracted:
    """XLSX: per worksheet, the header row (`sheet_caption`: title rows above it become the caption)
    heads the rows below it, each one Block(kind="row") "col: value; col: value" with page = sheet
    number (1-based) and heading = (sheet name, caption if any).

    Cells read as shown: numbers in their number format ("25%", "1,234,567.89"); a vertically
    merged value repeated down the rows it spans; formulas give their cached values, a formula
    never calculated its text ("=SUM(B2:B4)"). Hidden sheets are read, their heading marked
    "Name (hidden sheet)": hiding is tidying (lookup tables, assumptions), not access control,
    anyone with the file can show them, and people ask about what is in them.
    """
    import openpyxl

    workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        title = clean(workbook.properties.title or "") or None
        blocks: list[Block] = []
        sheets = workbook.worksheets
        for number, sheet in enumerate(sheets, 1):
            if hasattr(sheet, "reset_dimensions"):
                # Read every row actually stored, not what a (possibly wrong) <dimension> claims.
                sheet.reset_dimensions()
            # _worksheet_path: where openpyxl found this sheet's part (no public name for it).
            member = getattr(sheet, "_worksheet_path", None)
            merges, formulas = _sheet_extras(path, member) if member else ([], {})
            rows = [[_shown(cell, formulas, (r, c)) for c, cell in enumerate(row, 1)]
                    for r, row in enumerate(sheet.iter_rows(), 1)]
            _repeat_merged(rows, merges)
            caption, rows = sheet_caption(rows)
            name = sheet.title if sheet.sheet_state == "visible" else f"{sheet.title} (hidden sheet)"
            blocks.extend(table_blocks(rows, heading=(name, caption) if caption else (name,), page=number))
        return Extracted(blocks, pages=len(sheets), title=title, kind="xlsx")
    finally:
        workbook.close()  # read-only mode keeps the archive open until closed


# ---------------------------------------------------------------------------------------------
# PPTX


def _reading_order(shapes) -> list:
    """Shapes top to bottom, then left to right. python-pptx gives them in z-order (the order they
    were added or brought forward), which is not the order people read a slide in."""
    return sorted(shapes, key=lambda shape: (shape.top or 0, shape.left or 0))


def _hidden(element) -> bool:
    """Whether a slide (show="0") or a shape (its cNvPr hidden="1", PowerPoint's Selection pane eye)
    is hidden."""
    if element.get("show") in ("0", "false"):
        return True
    return any(str(value) in ("1", "true") for value in element.xpath("./*[1]/p:cNvPr/@hidden"))


def _shape_lines(shapes, skip_id) -> list[str]:
    """Text lines of slide shapes in reading order (`_reading_order`; a group's shapes in their own
    order where the group stands): text frames, table rows, grouped shapes. A hidden shape (or
    group) is not read: nobody sees it, in the editor or the show, and text planted there must not
    answer questions (as hidden text in DOCX and HTML)."""
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    lines: list[str] = []
    pending = _reading_order(shapes)
    while pending:
        shape = pending.pop(0)
        if shape.shape_id == skip_id or _hidden(shape.element):
            continue
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            pending[0:0] = _reading_order(shape.shapes)
            continue
        if shape.has_text_frame:
            lines.extend(clean(p.text) for p in shape.text_frame.paragraphs)
        elif getattr(shape, "has_table", False) and shape.has_table:
            rows = [[cell.text for cell in row.cells] for row in shape.table.rows]
            lines.extend(b.text for b in table_blocks(rows))
    return [line for line in lines if line]


def read_pptx(path: Path) -> Extracted:
    """PPTX: one Block(kind="slide") per slide holding, one per line, the title, then the text
    frames and table rows ("Header: value; ...") top to bottom and left to right, then the speaker
    notes ("Notes: ..."). page = slide number; heading = (slide title,) when the slide has one. A
    hidden slide is read and marked, `("Backup (hidden slide)",)`, as hidden XLSX sheets are: hiding
    keeps a slide out of the show (a backup, an old draft), and whoever reads a passage from it
    should know. Hidden shapes are not read (`_shape_lines`).
    """
    from pptx import Presentation

    presentation = Presentation(str(path))
    title = clean(presentation.core_properties.title or "") or None
    blocks: list[Block] = []
    slides = list(presentation.slides)
    for number, slide in enumerate(slides, 1):
        title_shape = slide.shapes.title  # the title placeholder, None on layouts without one
        slide_title = ""
        if title_shape is not None and title_shape.has_text_frame and not _hidden(title_shape.element):
            slide_title = clean(title_shape.text_frame.text)
        lines = [slide_title] if slide_title else []
        lines += _shape_lines(slide.shapes, title_shape.shape_id if title_shape is not None else None)
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            notes = clean(slide.notes_slide.notes_text_frame.text)
            if notes:
                lines.append(f"Notes: {notes}")
        text = clean_lines("\n".join(lines))
        hidden = _hidden(slide.element)
        heading = f"{slide_title or 'Slide'} (hidden slide)" if hidden else slide_title
        if text:
            blocks.append(Block(text, page=number, heading=(heading,) if heading else (), kind="slide"))
        if title is None and slide_title and not hidden:
            title = slide_title
    return Extracted(blocks, pages=len(slides), title=title, kind="pptx")

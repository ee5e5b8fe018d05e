"""Readers for Office Open XML files (DOCX, XLSX, PPTX) and the zip checks that run before them.

Each reader takes a path and returns `Extracted`. `read()` in `readers.py` calls `check_zip` first,
so a reader only ever opens an archive whose declared sizes are within bounds. Library exceptions
escape these functions; `read()` turns them into ReadError("corrupt DOCX: ...").
"""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

from archivist.records import Block, Extracted

from .readers_base import HeadingPath, ReadError, clean, clean_lines, table_blocks, table_heading

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
# DOCX


def _heading_level(paragraph) -> int | None:
    """0 for the Title style, n for "Heading n", None for body text."""
    try:
        name = (paragraph.style.name or "") if paragraph.style is not None else ""
    except (KeyError, ValueError, AttributeError):  # a style id missing from styles.xml
        return None
    if name == "Title":
        return 0
    if name.startswith("Heading "):
        tail = name[len("Heading "):].strip()
        if tail.isdigit():
            return int(tail)
    return None


def read_docx(path: Path) -> Extracted:
    """DOCX: body paragraphs and tables in document order.

    "Title" and "Heading n" paragraphs become Block(kind="heading") and set the heading path
    (the Title is its outermost level); each table data row becomes Block(kind="row") as
    "Header1: v1; Header2: v2" using the table's first row as header. Headers, footers, text boxes
    and comments are not read. The title is the core property, else the first Title paragraph.
    """
    import docx
    from docx.table import Table

    document = docx.Document(str(path))
    title = clean(document.core_properties.title or "") or None
    headings = HeadingPath()
    blocks: list[Block] = []
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            rows = [[cell.text for cell in row.cells] for row in item.rows]
            blocks.extend(table_blocks(rows, heading=table_heading(blocks, headings.path)))
            continue
        text = clean(item.text)
        if not text:
            continue
        level = _heading_level(item)
        if level is None:
            blocks.append(Block(text, heading=headings.path))
            continue
        blocks.append(Block(text, heading=headings.enter(level, text), kind="heading"))
        if level == 0 and title is None:
            title = text
    return Extracted(blocks, title=title, kind="docx")


# ---------------------------------------------------------------------------------------------
# XLSX


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


def read_xlsx(path: Path) -> Extracted:
    """XLSX: per worksheet, the first non-empty row is the header and each further row becomes
    Block(kind="row") "col: value; col: value" with page = sheet number (1-based) and
    heading = (sheet name,). Formulas give their cached values (data_only).
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
            rows = [[_cell_text(v) for v in row] for row in sheet.iter_rows(values_only=True)]
            blocks.extend(table_blocks(rows, heading=(sheet.title,), page=number))
        return Extracted(blocks, pages=len(sheets), title=title, kind="xlsx")
    finally:
        workbook.close()  # read-only mode keeps the archive open until closed


# ---------------------------------------------------------------------------------------------
# PPTX


def _shape_lines(shapes, skip_id) -> list[str]:
    """Text lines of slide shapes in their stored order: text frames, table rows, grouped shapes."""
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    lines: list[str] = []
    pending = list(shapes)
    while pending:
        shape = pending.pop(0)
        if shape.shape_id == skip_id:
            continue
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            pending[0:0] = list(shape.shapes)
            continue
        if shape.has_text_frame:
            lines.extend(clean(p.text) for p in shape.text_frame.paragraphs)
        elif getattr(shape, "has_table", False) and shape.has_table:
            rows = [[cell.text for cell in row.cells] for row in shape.table.rows]
            lines.extend(b.text for b in table_blocks(rows))
    return [line for line in lines if line]


def read_pptx(path: Path) -> Extracted:
    """PPTX: one Block(kind="slide") per slide holding, one per line, the title, the text of every
    text frame, table rows ("Header: value; ...") and the speaker notes ("Notes: ...").
    page = slide number; heading = (slide title,) when the slide has one.
    """
    from pptx import Presentation

    presentation = Presentation(str(path))
    title = clean(presentation.core_properties.title or "") or None
    blocks: list[Block] = []
    slides = list(presentation.slides)
    for number, slide in enumerate(slides, 1):
        title_shape = slide.shapes.title  # the title placeholder, None on layouts without one
        slide_title = ""
        if title_shape is not None and title_shape.has_text_frame:
            slide_title = clean(title_shape.text_frame.text)
        lines = [slide_title] if slide_title else []
        lines += _shape_lines(slide.shapes, title_shape.shape_id if title_shape is not None else None)
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            notes = clean(slide.notes_slide.notes_text_frame.text)
            if notes:
                lines.append(f"Notes: {notes}")
        text = clean_lines("\n".join(lines))
        if text:
            blocks.append(Block(text, page=number, heading=(slide_title,) if slide_title else (), kind="slide"))
        if title is None and slide_title:
            title = slide_title
    return Extracted(blocks, pages=len(slides), title=title, kind="pptx")

"""Scans, images, tables, layout and boxes (issue 20), on real files made here: text rendered to
images with PIL and DejaVu fonts, PDFs built with fpdf2, OCR by RapidOCR (~2.5 s a page here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fpdf import FPDF
from PIL import Image, ImageDraw, ImageFont

from archivist.ingest import chunking
from archivist.ingest.pipeline import ingest_paths, list_documents
from archivist.ingest.readers import read
from archivist.ingest.readers_base import ReadError
from archivist.retrieval.search import search
from conftest import one_page_of

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def render_text(lines: list[str], size: int = 26, width: int = 1100) -> Image.Image:
    """Black text on white, one line per entry: a clean scan."""
    font = ImageFont.truetype(FONT, size)
    image = Image.new("L", (width, 60 + len(lines) * int(size * 1.8)), 255)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((40, 30 + i * int(size * 1.8)), line, font=font, fill=0)
    return image


def scanned_pdf(path: Path, text_page: str, scan: Image.Image) -> Path:
    """Page 1 has a text layer; page 2 is only an image (a scan)."""
    pdf = FPDF(format="letter")
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 6, text_page)
    pdf.add_page()
    pdf.image(scan, x=10, y=10, w=190)
    pdf.output(str(path))
    return path


def chunk(extracted, size=64):
    from archivist.models import embedder_for
    from archivist.settings import Settings

    spans = chunking.hf_token_spans(embedder_for(Settings.from_env()).tokenizer)
    return chunking.chunk_blocks(extracted.blocks, spans, size, 8)


# ---------------------------------------------------------------------------------------------
# OCR: scans and images found by search; hostile files fail alone


def test_scan_and_image_facts_are_found_and_hostile_files_fail_alone(ws, tmp_path, embedder):
    stored = tmp_path / "kept.md"
    stored.write_text("# Canteen\n\nThe canteen serves soup on Thursdays.\n")
    assert ingest_paths(ws, [stored], embedder=embedder, progress=False)[0].status == "added"
    before = ws.db.execute("SELECT id, content_hash, text FROM documents").fetchall()

    memo = scanned_pdf(tmp_path / "memo.pdf", "Page one is typed: the Falcon drone battery lasts 41 minutes.",
                       render_text(["Memo: the Tilburg depot closes on 14 March.", "Dock badge code is K7-2291."]))
    notice = tmp_path / "notice.png"
    render_text(["Notice: visitors park behind building Zephyr.", "Parking permit number is PX-5573."]).save(notice)
    bomb = tmp_path / "bomb.png"
    Image.new("1", (12000, 12000), 1).save(bomb)  # 144 megapixels in a few kilobytes
    corrupt = tmp_path / "photo.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8)
    many = tmp_path / "many-pages.pdf"
    _blank_pdf(many, 10_000)

    results = {r.name: r for r in ingest_paths(ws, [memo, notice, bomb, corrupt, many], embedder=embedder, progress=False)}
    assert results["memo.pdf"].status == "added" and results["notice.png"].status == "added"
    assert results["bomb.png"].status == "failed" and "image too large" in results["bomb.png"].reason
    assert "decompression bomb" in results["bomb.png"].reason
    assert results["photo.jpg"].status == "failed" and results["photo.jpg"].reason.startswith("corrupt image")
    assert results["many-pages.pdf"].status == "failed"
    assert results["many-pages.pdf"].reason == "too many pages: 10000 (limit 2000)"
    # Nothing already stored changed.
    assert [tuple(r) for r in ws.db.execute("SELECT id, content_hash, text FROM documents WHERE id IN (%s)"
                                            % ",".join(str(r["id"]) for r in before)).fetchall()] == [tuple(r) for r in before]

    docs = {d["name"]: d for d in list_documents(ws)}
    assert docs["memo.pdf"]["ocr_pages"] == [2]  # the mixed PDF: only the scanned page was OCRed
    assert docs["notice.png"]["ocr_pages"] == [1] and docs["notice.png"]["kind"] == "image"
    assert docs["memo.pdf"]["low_confidence_pages"] == [] and docs["notice.png"]["low_confidence_pages"] == []

    hit = search(ws, "dock badge code", k=3, embedder=embedder)[0]
    assert hit.document == "memo.pdf" and hit.page == 2 and "K7-2291" in hit.text
    hit = search(ws, "parking permit number", k=3, embedder=embedder)[0]
    assert hit.document == "notice.png" and hit.page == 1 and "PX-5573" in hit.text
    assert hit.boxes and all(0 <= v <= 1 for box in hit.boxes for v in box)


def _blank_pdf(path: Path, pages: int) -> None:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument.new()
    for _ in range(pages):
        pdf.new_page(200, 200).close()
    pdf.save(str(path))
    pdf.close()


def test_a_scan_whose_words_ran_together_is_flagged(tmp_path):
    # RapidOCR read a slightly skewed, blurred page of a spec with every space lost, at 0.97 mean
    # confidence, so the page was not flagged (pages under LOW_CONFIDENCE are) and its words could
    # be found by no search. The lines as it read them:
    from archivist.ingest.ocr import LOW_CONFIDENCE, OcrLine, OcrPage, run_together

    read = ["SharedMIME-info Database", "TherearetwoimportantrequirementsforthewaytheMIMEdatabaseisstored",
            "ThisspecificationusestheXDGBaseDirectorySpecification", "1.3. Language used in this specification"]
    page = OcrPage(1000, 1400, [OcrLine(t, (0, 0, 10, 10), 0.97) for t in read])
    assert [run_together(t) for t in read] == [False, True, True, False]
    assert page.confidence < LOW_CONFIDENCE
    assert not run_together("internationalization and localization support")  # long words, with spaces
    clean_page = OcrPage(1000, 1400, [OcrLine(t, (0, 0, 10, 10), 0.97) for t in (read[0], read[3])])
    assert clean_page.confidence == pytest.approx(0.97)


def test_ocr_never_and_the_per_page_time_limit(tmp_path):
    memo = scanned_pdf(tmp_path / "memo.pdf", "A typed first page about the Falcon drone and its battery.",
                       render_text(["The second page is a scan."]))
    with pytest.raises(ReadError, match=r"an image: its text needs OCR, which is off"):
        read(_png(tmp_path), ocr="never")
    never = read(memo, ocr="never")  # the typed page alone
    assert never.ocr == {} and {b.page for b in never.blocks} == {1}
    # The scanned page cannot be OCRed in 0.2 s (the engine alone loads in about a second).
    with pytest.raises(ReadError, match=r"took longer than"):
        read(memo, timeout=1.0, page_timeout=0.2)


def _png(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.png"
    render_text(["x"]).save(path)
    return path


# ---------------------------------------------------------------------------------------------
# Tables


def table_pdf(path: Path, rows: int = 40, ruled: bool = True) -> Path:
    """A heading, a caption, a table (ruled, or set in aligned columns without any line) long
    enough to continue on page 2 (fpdf2 repeats the header there), then a paragraph."""
    pdf = FPDF(format="letter")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", size=18)
    pdf.cell(0, 10, "Quarterly report", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=11)
    pdf.multi_cell(0, 6, "Sales were steady this quarter across every region we serve and every product line.")
    pdf.ln(2)
    pdf.cell(0, 8, "Revenue by region, 2025 (thousands EUR)", new_x="LMARGIN", new_y="NEXT")
    data = [["Product", "EMEA", "Americas", "APAC"], ["Falcon", "1,240", "2,310", "880"], ["Heron", "415", "390", "1,975"]]
    data += [[f"Model {i:02d}", str(100 + i), str(200 + i), str(300 + i)] for i in range(rows)]
    with pdf.table(borders_layout="ALL" if ruled else "NONE") as table:
        for values in data:
            row = table.row()
            for value in values:
                row.cell(value)
    pdf.ln(4)
    pdf.multi_cell(0, 6, "Freight costs rose in the spring because of the canal closure.")
    pdf.output(str(path))
    return path


@pytest.mark.parametrize("ruled", [True, False], ids=["ruled", "unruled"])
def test_pdf_table_rows_keep_their_headers_across_pages(tmp_path, ruled):
    import pypdfium2 as pdfium

    path = table_pdf(tmp_path / "report.pdf", ruled=ruled)
    extracted = read(path)
    rows = [b for b in extracted.blocks if b.kind == "row"]
    caption = ("Quarterly report", "Revenue by region, 2025 (thousands EUR)")
    assert rows[1].text == "Product: Heron; EMEA: 415; Americas: 390; APAC: 1,975"
    # A row's citation highlights that row: pdfium's text inside its box is the row's cells.
    document = pdfium.PdfDocument(path)
    page = document[0]
    width, height = page.get_size()
    (x0, y0, x1, y1), = rows[1].boxes
    inside = page.get_textpage().get_text_bounded(x0 * width - 1, (1 - y1) * height + 1, x1 * width + 1, (1 - y0) * height - 1)
    document.close()
    assert inside.split() == ["Heron", "415", "390", "1,975"]
    assert rows[1].heading == caption and rows[1].page == 1
    assert len(rows) == 42  # every data row once: the header repeated on page 2 is not a row
    last = rows[-1]
    assert last.page == 2 and last.text == "Product: Model 39; EMEA: 139; Americas: 239; APAC: 339"
    assert last.heading == caption  # the continued table keeps its caption too
    paragraphs = [b.text for b in extracted.blocks if b.kind == "paragraph"]
    assert "Freight costs rose in the spring because of the canal closure." in paragraphs
    assert not any("Heron" in p or "1,975" in p for p in paragraphs)  # the table's text is not read twice

    text, chunks = chunk(extracted)
    row_texts = [r.text for r in rows]
    for c in chunks:
        pieces = c.text.split(chunking.BLOCK_SEP)
        if any(p in row_texts for p in pieces):  # a table chunk: whole rows only, nothing else
            assert all(p in row_texts for p in pieces), c.text
    assert any("Product: Heron; EMEA: 415; Americas: 390; APAC: 1,975" in c.text for c in chunks)


GLPK = Path("/usr/share/doc/glpk-doc/glpk.pdf")  # Debian's glpk-doc (make system-deps): TeX, math fonts


@pytest.mark.skipif(not GLPK.exists(), reason="needs Debian's glpk-doc (make system-deps)")
def test_a_ruled_tables_math_is_decoded(tmp_path):
    # pdfminer, which pdfplumber reads cells with, cannot map TeX's math fonts: GLPK's "rule of signs"
    # table came in as "(cid:21) = 0" where the page says "λk = 0"; pdfium decodes them.
    rows = [b.text for b in read(one_page_of(GLPK, 101, tmp_path)).blocks if b.kind == "row"]
    assert rows and not any("(cid:" in r for r in rows)
    assert rows[0].startswith("Minimization: (λl)k; (λu)k;")
    assert "λk ≥ 0" in rows[2]  # its body, a row per line: tests/test_pdf_tables.py


def test_aligned_text_that_is_no_table_stays_text(tmp_path):
    """Short aligned pieces make a table; a form of two label/value pairs, two columns of running
    text and a row whose piece crosses a column's gutter do not."""
    from archivist.ingest.layout import Line
    from archivist.ingest.tables import aligned_tables

    def piece(text, x0, x1, row):
        y = 0.1 + 0.03 * row
        return Line(text, 10.0, 800 - 20 * row, 790 - 20 * row, (x0, y, x1, y + 0.015))

    grid = [piece(t, x, x + 0.1, r) for r, cells in enumerate([["Site", "Staff"], ["Oslo", "14"], ["Lyon", "9"]])
            for t, x in zip(cells, (0.1, 0.4))]
    tables, used = aligned_tables(grid)
    assert [t.rows for t in tables] == [[["Site", "Staff"], ["Oslo", "14"], ["Lyon", "9"]]] and used == set(range(6))
    form = [piece("Name: Ada Moss", 0.1, 0.3, 0), piece("Date: 3 May", 0.6, 0.7, 0),
            piece("Team: Docks", 0.1, 0.25, 1), piece("Shift: late", 0.6, 0.7, 1)]
    assert aligned_tables(form) == ([], set())  # two rows: a form, not a table
    prose = [piece(f"Apples line {r} grows in the orchard by the river.", 0.1, 0.45, r) for r in range(5)]
    prose += [piece(f"Trains line {r} leaves from the station at noon.", 0.55, 0.9, r) for r in range(5)]
    assert aligned_tables(prose) == ([], set())  # two columns of running text
    crossing = grid + [piece("Paris", 0.1, 0.14, 3), piece("a note across both columns", 0.16, 0.45, 3)]
    assert [t.rows for t in aligned_tables(crossing)[0]] == [[["Site", "Staff"], ["Oslo", "14"], ["Lyon", "9"]]]


def render_table(rows: list[list[str]], title: str, ruled: bool, size: int = 24) -> Image.Image:
    """A table drawn as pixels (a scan): a title, then rows in fixed columns, with or without rules."""
    font = ImageFont.truetype(FONT, size)
    widths, step, left, top = (260, 180, 200, 170), int(size * 2), 60, 110
    image = Image.new("L", (sum(widths) + 2 * left, top + 60 + len(rows) * step), 255)
    draw = ImageDraw.Draw(image)
    draw.text((left, 40), title, font=font, fill=0)
    for r, row in enumerate(rows):
        x = left
        for width, cell in zip(widths, row):
            draw.text((x + 10, top + r * step + 8), cell, font=font, fill=0)
            x += width
    if ruled:
        for r in range(len(rows) + 1):
            draw.line((left, top + r * step, left + sum(widths), top + r * step), fill=0, width=2)
        for x in [left + sum(widths[:k]) for k in range(len(widths) + 1)]:
            draw.line((x, top, x, top + len(rows) * step), fill=0, width=2)
    return image


@pytest.mark.slow  # two pages of OCR: ~7 s on an idle 2-core CPU
def test_scanned_tables_become_rows_with_headers(tmp_path):
    """A two-page TIFF (a fax): page 1 a table without rules, page 2 a ruled one; OCR boxes are
    put back into rows and columns."""
    stock = [["Part", "Oslo", "Lyon", "Porto"], ["Gasket G-12", "140", "75", "1,320"], ["Valve V-7", "38", "610", "92"],
             ["Pump P-3", "5", "14", "260"]]
    staff = [["Site", "Drivers", "Pickers", "Clerks"], ["Tilburg", "31", "118", "6"], ["Venlo", "12", "47", "9"]]
    pages = [render_table(stock, "Stock by warehouse, week 14", ruled=False),
             render_table(staff, "Staff by site", ruled=True)]
    fax = tmp_path / "fax.tiff"
    pages[0].save(fax, save_all=True, append_images=pages[1:])
    extracted = read(fax)
    rows = [(b.page, b.heading, b.text) for b in extracted.blocks if b.kind == "row"]
    assert rows == [
        (1, ("Stock by warehouse, week 14",), "Part: Gasket G-12; Oslo: 140; Lyon: 75; Porto: 1,320"),
        (1, ("Stock by warehouse, week 14",), "Part: Valve V-7; Oslo: 38; Lyon: 610; Porto: 92"),
        (1, ("Stock by warehouse, week 14",), "Part: Pump P-3; Oslo: 5; Lyon: 14; Porto: 260"),
        (2, ("Staff by site",), "Site: Tilburg; Drivers: 31; Pickers: 118; Clerks: 6"),
        (2, ("Staff by site",), "Site: Venlo; Drivers: 12; Pickers: 47; Clerks: 9"),
    ]
    assert sorted(extracted.ocr) == [1, 2]


def test_docx_and_html_tables_take_their_caption(tmp_path):
    import docx

    document = docx.Document()
    document.add_heading("Prices", level=1)
    document.add_paragraph("Table 3: list prices per unit")
    table = document.add_table(rows=2, cols=2)
    for cell, value in zip(table.rows[0].cells + table.rows[1].cells, ["Item", "Price", "Heron", "415 EUR"]):
        cell.text = value
    document.save(tmp_path / "prices.docx")
    row = [b for b in read(tmp_path / "prices.docx").blocks if b.kind == "row"][0]
    assert row.text == "Item: Heron; Price: 415 EUR" and row.heading == ("Prices", "Table 3: list prices per unit")

    (tmp_path / "prices.html").write_text(
        "<html><body><h1>Prices</h1><table><caption>List prices per unit</caption>"
        "<tr><th>Item</th><th>Price</th></tr><tr><td>Heron</td><td>415 EUR</td></tr></table></body></html>")
    row = [b for b in read(tmp_path / "prices.html").blocks if b.kind == "row"][0]
    assert row.text == "Item: Heron; Price: 415 EUR" and row.heading == ("Prices", "List prices per unit")


# ---------------------------------------------------------------------------------------------
# Layout and boxes


def two_column_pdf(path: Path) -> Path:
    """Two columns drawn row by row (each text row holds a left and a right piece), under a title
    spanning both, with a page number at the foot."""
    pdf = FPDF(format="letter")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", size=16)
    pdf.text(20, 20, "Field notes")
    pdf.set_font("Helvetica", size=11)
    for i in range(10):
        pdf.text(20, 35 + i * 6, f"Apples line {i} grows in the orchard by the river.")
        pdf.text(115, 35 + i * 6, f"Trains line {i} leaves from the station at noon.")
    pdf.text(105, 270, "3")
    pdf.output(str(path))
    return path


def test_two_columns_read_column_by_column(tmp_path):
    extracted = read(two_column_pdf(tmp_path / "notes.pdf"))
    text = " ".join(b.text for b in extracted.blocks)
    assert extracted.blocks[0].kind == "heading" and extracted.blocks[0].text == "Field notes"
    lefts = [text.index(f"Apples line {i}") for i in range(10)]
    rights = [text.index(f"Trains line {i}") for i in range(10)]
    assert lefts == sorted(lefts) and rights == sorted(rights) and max(lefts) < min(rights)
    assert "3" not in [b.text for b in extracted.blocks]  # the page number, centred under both columns, is not text
    assert all(b.heading == ("Field notes",) for b in extracted.blocks[1:])


def test_hyphenated_line_ends_are_joined(tmp_path):
    from archivist.ingest.layout import join_lines

    assert join_lines(["The warehouse uses autono-", "mous pallet movers."]) == "The warehouse uses autonomous pallet movers."
    assert join_lines(["Call extension NW-", "4410 today."]) == "Call extension NW-4410 today."  # a code keeps its hyphen


def test_a_chunks_boxes_cover_its_text_on_the_page(tmp_path):
    import pypdfium2 as pdfium

    path = tmp_path / "boxes.pdf"
    pdf = FPDF(format="letter")
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    for n in range(6):
        pdf.multi_cell(0, 6, f"Paragraph {n}: " + " ".join(f"word{n}x{i}" for i in range(60)))
        pdf.ln(4)
    pdf.output(str(path))
    extracted = read(path)
    _, chunks = chunk(extracted, size=48)
    assert len(chunks) > 6
    document = pdfium.PdfDocument(path)
    page = document[0]
    width, height = page.get_size()
    textpage = page.get_textpage()
    for c in chunks:
        assert c.page == 1 and c.boxes
        inside = " ".join(textpage.get_text_bounded(x0 * width - 1, (1 - y1) * height - 1, x1 * width + 1, (1 - y0) * height + 1)
                          for x0, y0, x1, y1 in c.boxes)
        missing = [w for w in c.text.split() if w not in inside]
        assert not missing, (c.text, missing)
        # ...and not much more than it: the boxes hold at most the chunk's lines.
        assert len(inside.split()) <= len(c.text.split()) + 2 * 16
    textpage.close()
    page.close()
    document.close()


def test_citation_page_picture_highlights_the_boxes(tmp_path):
    from archivist.ingest.readers_pdf import page_picture

    path = table_pdf(tmp_path / "report.pdf", rows=2)
    box = (0.1, 0.2, 0.5, 0.3)
    plain = page_picture(path, "pdf", 1, (), width=600)
    marked = page_picture(path, "pdf", 1, (box,), width=600)
    assert plain.size == marked.size and plain.size[0] == 600
    x, y = int(0.3 * 600), int(0.25 * marked.size[1])
    assert plain.getpixel((x, y)) != marked.getpixel((x, y))  # yellow over the passage
    assert plain.getpixel((590, marked.size[1] - 5)) == marked.getpixel((590, marked.size[1] - 5))
    with pytest.raises(ReadError, match="no page 9"):
        page_picture(path, "pdf", 9)


def test_boxes_and_ocr_are_stored_and_cited(ws, tmp_path, embedder):
    from archivist.records import Citation

    path = table_pdf(tmp_path / "report.pdf", rows=2)
    ingest_paths(ws, [path], embedder=embedder, progress=False)
    rows = ws.db.execute("SELECT page, boxes FROM chunks").fetchall()
    assert rows and all(r["page"] == 1 and json.loads(r["boxes"]) for r in rows)
    hit = search(ws, "Heron APAC revenue", k=1, embedder=embedder)[0]
    assert "Product: Heron; EMEA: 415; Americas: 390; APAC: 1,975" in hit.text
    citation = Citation(n=1, document=hit.document, page=hit.page, chunk_id=hit.chunk_id, score=1.0, text=hit.text,
                        boxes=hit.boxes)
    x0, y0, x1, y1 = citation.bbox
    assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
    # What the API and `ask --json` send: page, bbox and the line boxes.
    from archivist.records import Answer
    from archivist.retrieval.answer import answer_json

    sent = answer_json(Answer("q", "a [1]", [citation], [hit]))["citations"][0]
    assert sent["page"] == 1 and sent["bbox"] == [x0, y0, x1, y1]
    assert sent["boxes"] == [list(b) for b in hit.boxes]


_WORKER_WITH_LITTLE_MEMORY = """
import sys
import numpy, PIL.Image, pypdfium2  # noqa: F401  (what every PDF read imports: loaded before the limit)
from archivist.ingest import ocr, readers, readers_pdf  # noqa: F401
ocr.engine()  # loaded before the limit too: the allocation that fails is the engine's, inside ONNX Runtime
readers.PDF_MEMORY_MB = int(sys.argv[2])
readers.PAGED_ADDRESS_SPACE = 1  # the address space at the limit itself: the allocation fails inside the engine
sys.exit(readers._worker("pdf", sys.argv[1], {"ocr": "auto", "max_pages": 10}))
"""


def test_ocr_out_of_memory_names_the_page_and_the_limit_not_a_corrupt_file(tmp_path):
    """The OCR engine failing to allocate (ONNX Runtime says so in a generic error) is reported as
    memory, on the page it happened, and not as a corrupt PDF with a traceback."""
    import subprocess
    import sys

    memo = scanned_pdf(tmp_path / "memo.pdf", "A typed first page.", render_text(["The second page is a scan."] * 12))
    # 200 MB: room for the page's bitmap, not for the engine's tensors (here ONNX Runtime's error,
    # which was reported as "corrupt PDF: Traceback ..."; a smaller limit fails in Python instead)
    out = subprocess.run([sys.executable, "-c", _WORKER_WITH_LITTLE_MEMORY, str(memo), "200"],
                         capture_output=True, text=True, timeout=300)
    reply = json.loads(out.stdout.splitlines()[-1])
    assert reply == {"ok": False, "error": "page 2 needs more than 200 MB of memory (the reader's limit)"}, reply

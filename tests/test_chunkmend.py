"""Headings that were still chunks of their own after issue 19 (tests/test_headchunks.py): a heading
at the foot of a PDF page whose text starts on the next page, an empty section followed by its
sibling ("3.2" with nothing under it, then "3.3"), a heading that ends the document (the foot of a
scanned page). Each took a top-k place with nothing to read. Now the first two open the chunk of
the section after them and the last closes the chunk before, in one place (chunking.chunk_blocks)
for every reader; documents stored before, scans included, are chunked again on their next ingest.
Real files (fpdf2, python-docx, a scan rendered with pdfium and read by the real OCR), the real
embedder's tokenizer and a real workspace."""

from __future__ import annotations

from pathlib import Path

import pytest
from fpdf import FPDF

from archivist.ingest import chunking
from archivist.ingest.readers import read

TRAIN = ("Every employee may claim the cost of a train ticket in second class when the trip is made for work; "
         "the claim is filed within {} days with the receipt attached, and the office manager approves it.")
HOTEL = "A hotel night is paid up to one hundred and twenty euros in a capital city and ninety euros elsewhere."


def _chunks(path: Path, embedder, size: int = 256):
    blocks = read(path).blocks
    text, chunks = chunking.chunk_blocks(blocks, chunking.hf_token_spans(embedder.tokenizer), size, size // 8)
    return blocks, text, chunks


def _titles_alone(blocks, chunks) -> list[str]:
    """The chunks that cover nothing but heading blocks."""
    _, spans = chunking.join_blocks(blocks)
    return [c.text for c in chunks
            if all(b.kind == "heading" for b, (s, e) in zip(blocks, spans) if s < c.end and e > c.start)]


def _stored_again(ws, path: Path, reader_before: int) -> tuple[str, list[tuple[str, int | None, str]]]:
    """Ingest `path`, mark it as read by the reader version of the release before, ingest it again:
    the second ingest's status and the chunks then stored (text, page, heading path)."""
    from archivist.ingest.pipeline import ingest_paths

    [first] = ingest_paths(ws, [path], progress=False)
    assert first.status == "added", first
    ws.db.execute("UPDATE documents SET reader = ?", (reader_before,))
    ws.db.commit()
    [again] = ingest_paths(ws, [path], progress=False)
    return again.status, [tuple(r) for r in ws.db.execute("SELECT text, page, heading FROM chunks ORDER BY seq")]


def _titled_page(size, title: str, points: int, margin: int) -> FPDF:
    """A PDF of one page so far (`size`, no automatic page break) opening with `title` in bold."""
    pdf = FPDF(format=size)
    pdf.set_auto_page_break(False)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", points)
    pdf.set_xy(margin, margin)
    pdf.cell(0, 10, title)
    return pdf


def _policy_pdf(path: Path) -> Path:
    """Page 1: the title and its text, then "2. Hotel nights" on the last line; page 2: its text."""
    pdf = _titled_page("A4", "Travel Policy", 20, 20)
    pdf.set_font("Helvetica", "", 11)
    pdf.set_xy(20, 40)
    for days in range(20, 28):
        pdf.multi_cell(170, 6, TRAIN.format(days))
        pdf.ln(3)
        pdf.set_x(20)
    pdf.set_font("Helvetica", "B", 16)
    pdf.set_xy(20, 270)
    pdf.cell(0, 8, "2. Hotel nights")
    pdf.add_page()
    pdf.set_font("Helvetica", "", 11)
    pdf.set_xy(20, 20)
    pdf.multi_cell(170, 6, HOTEL)
    pdf.output(str(path))
    return path


def test_a_heading_at_the_foot_of_a_pdf_page_opens_the_chunk_of_its_text_on_the_next_page(tmp_path, embedder):
    path = _policy_pdf(tmp_path / "travel.pdf")
    blocks, text, chunks = _chunks(path, embedder)
    assert [(b.page, b.text) for b in blocks if b.kind == "heading"] == [(1, "Travel Policy"), (1, "2. Hotel nights")]
    assert _titles_alone(blocks, chunks) == []
    [hotel] = [c for c in chunks if "2. Hotel nights" in c.text]
    assert hotel.text == f"2. Hotel nights\n\n{HOTEL}" == text[hotel.start:hotel.end]
    # Cited on the page its text is on; highlighted there only (the heading's box is on page 1's foot).
    assert hotel.page == 2 and hotel.heading == ("Travel Policy", "2. Hotel nights")
    [text_block] = [b for b in blocks if b.page == 2]
    assert hotel.boxes and set(hotel.boxes) == {tuple(round(v, 4) for v in box) for box in text_block.boxes}
    assert all(box[3] < 0.3 for box in hotel.boxes)


def test_a_stored_pdf_is_chunked_anew_and_its_foot_heading_is_no_chunk_of_its_own(ws, tmp_path):
    status, stored = _stored_again(ws, _policy_pdf(tmp_path / "travel.pdf"), reader_before=6)
    assert status == "updated"
    assert "2. Hotel nights" not in [t for t, _, _ in stored]
    assert (f"2. Hotel nights\n\n{HOTEL}", 2, "Travel Policy > 2. Hotel nights") in stored


SECTIONS_MD = """# Leave

## 3.1 Annual leave

Every employee has twenty-six days of annual leave a year, booked in the HR portal.

## 3.2 Parental leave

## 3.3 Sick leave

A sick day is reported to the team lead before nine in the morning; from the fourth day a doctor's note is needed.

## 3.4 Unpaid leave
"""


def _docx(path: Path) -> Path:
    import docx

    document = docx.Document()
    for line in SECTIONS_MD.strip().split("\n\n"):
        level = len(line) - len(line.lstrip("#"))
        if level:
            document.add_heading(line.lstrip("# "), level=level)
        else:
            document.add_paragraph(line)
    document.save(str(path))
    return path


def _html(path: Path) -> Path:
    parts = []
    for line in SECTIONS_MD.strip().split("\n\n"):
        level = len(line) - len(line.lstrip("#"))
        parts.append(f"<h{level}>{line.lstrip('# ')}</h{level}>" if level else f"<p>{line}</p>")
    path.write_text("<html><body>" + "\n".join(parts) + "</body></html>")
    return path


def _markdown(path: Path) -> Path:
    path.write_text(SECTIONS_MD)
    return path


@pytest.mark.parametrize("make, suffix", [(_markdown, ".md"), (_html, ".html"), (_docx, ".docx")],
                         ids=["markdown", "html", "docx"])
def test_an_empty_section_is_the_first_line_of_its_siblings_chunk_and_a_last_heading_closes_the_chunk_before(
        make, suffix, tmp_path, embedder):
    """"3.2 Parental leave" has nothing under it: it opens the chunk of "3.3" (whose heading path it is
    not on: it is no parent of 3.3) rather than standing alone; "3.4", the document's last line, ends
    3.3's chunk. Nothing is lost and no chunk is only a title."""
    blocks, text, chunks = _chunks(make(tmp_path / f"leave{suffix}"), embedder)
    headings = [b.text for b in blocks if b.kind == "heading"]
    assert headings == ["Leave", "3.1 Annual leave", "3.2 Parental leave", "3.3 Sick leave", "3.4 Unpaid leave"]
    assert _titles_alone(blocks, chunks) == []
    assert [(c.heading, c.text.split("\n\n")) for c in chunks] == [
        (("Leave", "3.1 Annual leave"), ["Leave", "3.1 Annual leave", blocks[2].text]),
        (("Leave", "3.3 Sick leave"), ["3.2 Parental leave", "3.3 Sick leave", blocks[5].text, "3.4 Unpaid leave"]),
    ]
    assert "".join(c.text for c in chunks).replace("\n", "") == text.replace("\n", "")


GLPK = Path("/usr/share/doc/glpk-doc/glpk.pdf")  # Debian's glpk-doc (make system-deps)


@pytest.mark.skipif(not GLPK.exists(), reason="needs Debian's glpk-doc (make system-deps)")
def test_a_chapters_label_set_smaller_than_its_title_opens_the_chapters_first_chunk(tmp_path, embedder):
    """A real manual: "Chapter 1" is set smaller than "Introduction" under it, so it is a heading of
    its own that the title's path does not extend (11 of glpk.pdf's 536 chunks were such labels)."""
    from conftest import one_page_of

    blocks, _, chunks = _chunks(one_page_of(GLPK, 9, tmp_path), embedder)
    assert [b.text for b in blocks[:2]] == ["Chapter 1", "Introduction"] and blocks[1].heading == ("Introduction",)
    assert _titles_alone(blocks, chunks) == []
    assert chunks[0].text.startswith("Chapter 1\n\nIntroduction\n\nGLPK (GNU Linear Programming Kit) is a set")
    assert chunks[0].heading == ("Introduction",) and chunks[0].page == 1


def test_a_stored_markdown_file_is_chunked_anew(ws, tmp_path):
    status, stored = _stored_again(ws, _markdown(tmp_path / "leave.md"), reader_before=7)
    assert status == "updated"
    assert [t.split("\n\n")[0] for t, _, _ in stored] == ["Leave", "3.2 Parental leave"]


def test_a_scans_last_heading_closes_the_chunk_before_and_stored_scans_are_chunked_anew(ws, tmp_path):
    """A scanned page ending in the next section's heading (its text is on the next sheet): the heading
    is the last line of the page's chunk, not a chunk alone; a scan stored by the release before
    (image reader 3) is read and chunked again on its next ingest, as PDFs (scanned ones too) are."""
    import pypdfium2 as pdfium

    pdf = _titled_page((148, 210), "1. Gloves", 18, 12)
    pdf.set_font("Helvetica", "", 10)
    pdf.set_xy(12, 26)
    pdf.multi_cell(120, 5, "Gloves are worn whenever sheet metal is cut or carried. Cut resistant gloves are kept "
                           "in the blue cabinet by the door of the workshop. Worn gloves go back to the store room.")
    pdf.set_font("Helvetica", "B", 18)
    pdf.set_xy(12, 50)
    pdf.cell(0, 10, "2. Storage")
    pdf.output(str(tmp_path / "page.pdf"))
    document = pdfium.PdfDocument(str(tmp_path / "page.pdf"))
    try:
        image = document[0].render(scale=150 / 72, grayscale=True).to_pil().convert("L")
    finally:
        document.close()
    scan = tmp_path / "safety-scan.png"
    image.crop((0, 0, image.width, int(image.height * 0.4))).save(scan)

    status, stored = _stored_again(ws, scan, reader_before=3)
    assert status == "updated"
    [(only, page, heading)] = stored
    lines = only.split("\n\n")
    assert (lines[0], lines[-1], len(lines), page, heading) == ("1. Gloves", "2. Storage", 3, 1, "1. Gloves")
    assert "blue cabinet" in lines[1]

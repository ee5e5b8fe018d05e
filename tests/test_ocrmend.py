"""Two reading defects left by the bzip2 manual's reading (rebuilt here as real files): the OCR ran a
section number into its heading ("2.6.RECOVERING DATA FROM DAMAGED FILES"), the step from a narrow
"." to a wide capital being no longer than a letter's, so the space the recognizer dropped was not
put back; and on a text-layer page with two columns drawn row by row, the left column's pieces end
in the space before the gap, which the box skipped, ending the box at an earlier sampled character.
The scan is drawn by pdfium from an fpdf2 page and read by the real OCR (RapidOCR)."""

from __future__ import annotations

from fpdf import FPDF

from archivist.ingest.ocr import restore_spaces
from archivist.ingest.readers import read

HEADINGS = ("2.5. MEMORY MANAGEMENT", "2.6. RECOVERING DATA FROM DAMAGED FILES")
PROSE = ("bzip2 compresses files in blocks, usually 900kbytes long. Each block is handled independently. "
         "If a media or transmission error causes a multi-block file to become damaged, it may be "
         "possible to recover data from the undamaged blocks in the file.")


def test_a_scanned_section_number_keeps_the_space_before_its_heading(tmp_path):
    import pypdfium2 as pdfium

    pdf = FPDF(unit="pt", format=(612, 360))
    pdf.add_page()
    y = 30  # where the recognizer reads both numbers run into their headings (it is fickle: at y = 40 it did not)
    for heading in HEADINGS:
        pdf.set_font("Helvetica", "B", 18)
        pdf.set_xy(72, y)
        pdf.cell(0, 22, heading)
        pdf.set_font("Times", "", 10)
        pdf.set_xy(72, y + 30)
        pdf.multi_cell(460, 12, PROSE)
        y += 130
    pdf.output(str(tmp_path / "page.pdf"))
    document = pdfium.PdfDocument(str(tmp_path / "page.pdf"))
    try:  # scanned at 150 dpi, as the manual's pages were
        image = document[0].render(scale=150 / 72, grayscale=True).to_pil().convert("L")
    finally:
        document.close()
    image.save(tmp_path / "scan.png")

    blocks = read(tmp_path / "scan.png").blocks
    assert [b.text for b in blocks if b.kind == "heading"] == list(HEADINGS)
    assert [b.heading for b in blocks if b.kind == "paragraph"] == [(h,) for h in HEADINGS]


def test_only_a_section_number_opening_the_line_and_only_at_a_blank_gets_the_space():
    # Centres one step apart, as the OCR measured "2.6.RECOVERING": only the pixels' blank after
    # the number puts the space there; without a blank, or for letters ("U.S.A."), nothing moves.
    text = "2.6.RECOVERING"
    centres = [float(10 * k) for k in range(len(text))]
    assert restore_spaces(text, centres, [35.0]) == "2.6. RECOVERING"
    assert restore_spaces(text, centres, []) == text
    assert restore_spaces("U.S.A.TODAY", centres[:11], [55.0]) == "U.S.A.TODAY"
    assert restore_spaces("see 2.6.Below", centres[:13], [75.0]) == "see 2.6.Below"


LEFT = ["The left column of this report says", "that the fleet was serviced in March",
        "and that every truck passed the test"]
RIGHT = ["while the right column lists costs", "of parts, labour and the inspection",
         "fees paid to the county in spring"]


def test_a_line_piece_cut_at_a_wide_gap_is_boxed_to_its_last_letter(tmp_path):
    pdf = FPDF(unit="pt", format="letter")
    pdf.add_page()
    pdf.set_font("Helvetica", "", 10)
    ends = []  # each row's columns' right edge, page fractions
    for row, columns in enumerate(zip(LEFT, RIGHT)):  # one pdfium line holds both columns
        for x, text in zip((72, 330), columns):
            pdf.text(x, 100 + row * 14, text)
            ends.append((x + pdf.get_string_width(text)) / 612)
    pdf.output(str(tmp_path / "columns.pdf"))

    left, right = read(tmp_path / "columns.pdf").blocks
    assert left.text == " ".join(LEFT) and right.text == " ".join(RIGHT)
    for box, end in zip([*left.boxes, *right.boxes], ends[0::2] + ends[1::2]):
        assert abs(box[2] - end) < 0.005, (box, end)  # within a point or so: not letters short


def test_pdfs_and_scans_already_stored_are_read_again_for_these_fixes():
    from archivist.ingest.readers import reader_version

    # A stored document's row keeps the version it was read with; an older one is read again.
    assert reader_version("pdf") >= 10 and reader_version("image") >= 6

"""Scans as a company uploads them: pages of a real manual (Debian's glpk-doc) rendered to images
and then turned, photographed, exported with transparency or put side by side, read by the real OCR
(RapidOCR's models from the rapidocr-onnxruntime wheel). Each test's page is a strip of a page at
150 dpi, so it reads in about a second."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from archivist.ingest import ocr, readers
from archivist.ingest.readers_pdf import read_image, read_pdf

GLPK = Path("/usr/share/doc/glpk-doc/glpk.pdf")  # Debian's glpk-doc (make system-deps)
pytestmark = pytest.mark.skipif(not GLPK.exists(), reason="needs Debian's glpk-doc (make system-deps)")

# On page 31 of glpk.pdf, lines 2-3 of its first paragraph; page 32 starts with glp_find_row.
SENTENCE = "Sometimes it may be necessary to find rows and/or columns by their names"
RIGHT = "The routine glp_find_row returns the ordinal number of a row"


def _page(number: int, top: float = 0.06, bottom: float = 0.30, dpi: int = 150) -> Image.Image:
    """A strip (page fractions top..bottom) of glpk.pdf's page `number`, as a grey scan."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(GLPK)
    try:
        image = pdf[number - 1].render(scale=dpi / 72, grayscale=True).to_pil().convert("L")
    finally:
        pdf.close()
    return image.crop((0, int(image.height * top), image.width, int(image.height * bottom)))


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def _text(extracted) -> str:
    return _words(" ".join(b.text for b in extracted.blocks))


def _box_of(extracted, words: str):
    """The box around the lines of the block holding `words`."""
    block = next(b for b in extracted.blocks if _words(words) in _words(b.text))
    return (min(b[0] for b in block.boxes), min(b[1] for b in block.boxes),
            max(b[2] for b in block.boxes), max(b[3] for b in block.boxes))


@pytest.fixture(scope="module")
def upright(tmp_path_factory):
    """The strip read upright: the text and boxes every turned copy must come back to."""
    path = tmp_path_factory.mktemp("upright") / "page31.png"
    _page(31).save(path)
    extracted = read_image(path)
    assert _words(SENTENCE) in _text(extracted)
    return extracted


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_a_page_scanned_sideways_or_upside_down_is_turned_and_read(tmp_path, upright, degrees):
    # Before, RapidOCR read such a page as "a rm pissel su n q sun soi" (0.56 confidence): 3% of
    # its words, and no search found it.
    path = tmp_path / f"turned{degrees}.png"
    _page(31).rotate(degrees, expand=True).save(path)
    extracted = read_image(path)
    assert _words(SENTENCE) in _text(extracted)
    assert extracted.ocr[1] > ocr.LOW_CONFIDENCE
    # A citation highlights the lines where they stand in the file (turned), not on the page as read.
    want = np.array(_box_of(upright, SENTENCE))
    x0, y0, x1, y1 = want
    on_file = {90: (y0, 1 - x1, y1, 1 - x0), 180: (1 - x1, 1 - y1, 1 - x0, 1 - y0), 270: (1 - y1, x0, 1 - y0, x1)}[degrees]
    assert np.abs(np.array(_box_of(extracted, SENTENCE)) - on_file).max() < 0.02


def test_a_phone_photo_is_turned_as_its_exif_orientation_says(tmp_path, upright):
    # A phone stores the sensor's pixels and an EXIF Orientation tag (6: turn 90 degrees clockwise
    # to view). Read through the bounded child, as `archivist ingest` does.
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "photo.jpg"
    _page(31).rotate(90, expand=True).save(path, quality=85, exif=exif.tobytes())
    extracted = readers.read(path)
    assert _words(SENTENCE) in _text(extracted)
    # The boxes stand on the picture as shown (turned as the tag says): the upright page's.
    assert np.abs(np.array(_box_of(extracted, SENTENCE)) - _box_of(upright, SENTENCE)).max() < 0.02


def test_a_png_with_a_transparent_background_is_read_on_white(tmp_path):
    # Ink on a transparent background whose hidden colour is black (as some tools export): taken
    # without its alpha the page was all black, and the file failed with "no text found".
    grey = np.asarray(_page(31))
    rgba = np.zeros(grey.shape + (4,), np.uint8)
    rgba[..., 3] = 255 - grey
    path = tmp_path / "export.png"
    Image.fromarray(rgba, "RGBA").save(path)
    assert _words(SENTENCE) in _text(read_image(path))


def test_a_16_bit_grey_tiff_is_read(tmp_path):
    # Some scanners write 16-bit grey; taken as 8 bits, every value above 255 was white paper.
    grey = np.asarray(_page(31)).astype(np.uint16) * 257
    path = tmp_path / "scan16.tif"
    Image.fromarray(grey).save(path)  # mode I;16
    assert _words(SENTENCE) in _text(read_image(path))


def test_two_pages_scanned_side_by_side_read_one_page_then_the_other(tmp_path):
    # An open manual on the scanner: before, the lines of the two pages were read across, one line
    # of the left page then the line beside it on the right ("... by their names (assigned with the
    # Synopsis routines glp_set_row_name ...").
    left, right = _page(31, 0.06, 0.40), _page(32, 0.06, 0.40)
    spread = Image.new("L", (left.width + right.width, left.height), 255)
    spread.paste(left, (0, 0))
    spread.paste(right, (left.width, 0))
    path = tmp_path / "spread.png"
    spread.save(path)
    text = _text(read_image(path))
    # The left page's paragraph runs on across its line ends, and the right page comes after it.
    assert _words("by their names (assigned with the routines glp_set_row_name and glp_set_col_name)") in text
    assert _words("in case of large instances such a linear search may take too long time") in text
    assert text.index(_words(SENTENCE)) < text.index(_words(RIGHT))


def test_a_sideways_scanned_page_in_a_pdf_is_read_on_its_page(tmp_path):
    # A mixed PDF: a typed page, then a page scanned sideways (an image, no text layer).
    import pypdfium2 as pdfium

    scan = tmp_path / "scan.jpg"
    _page(31).rotate(90, expand=True).save(scan, quality=80)
    pdf = pdfium.PdfDocument.new()
    source = pdfium.PdfDocument(GLPK)
    pdf.import_pages(source, [29])
    width, height = Image.open(scan).size
    page = pdf.new_page(width * 72 / 150, height * 72 / 150)
    image = pdfium.PdfImage.new(pdf)
    image.load_jpeg(str(scan), inline=False)
    image.set_matrix(pdfium.PdfMatrix().scale(width * 72 / 150, height * 72 / 150))
    page.insert_obj(image)
    page.gen_content()
    pdf.save(tmp_path / "mixed.pdf")
    pdf.close()
    source.close()
    extracted = read_pdf(tmp_path / "mixed.pdf")
    assert sorted(extracted.ocr) == [2]
    assert _words(SENTENCE) in _words(" ".join(b.text for b in extracted.blocks if b.page == 2))


def test_an_image_too_small_to_read_says_its_size(tmp_path):
    # A thumbnail of a page (20 dpi): before, only "no text found in the image (OCR read nothing)".
    path = tmp_path / "thumbnail.png"
    _page(31, 0.0, 1.0, dpi=20).save(path)
    with pytest.raises(readers.ReadError, match=r"170 x 220 pixels; text that small cannot be read: scan at 200 dpi"):
        readers.read(path)


def test_a_skewed_scan_on_a_dark_lid_keeps_its_word_gaps(tmp_path):
    # 3 degrees off, on a dark scanner lid, saved as JPEG: the gaps between words were looked for
    # in the upright box around each slanted line, which holds the neighbouring lines' ascenders
    # and descenders; before, "Sometimesitmaybenecessarytofindrowsand orcolumnsbytheirnames".
    page = _page(31).convert("RGB").rotate(3, resample=Image.BICUBIC, expand=True, fillcolor=(255, 255, 255))
    lid = Image.new("RGB", (page.width + 80, page.height + 80), (25, 25, 25))
    lid.paste(page, (50, 30))
    path = tmp_path / "skewed.jpg"
    lid.save(path, quality=70)
    extracted = read_image(path)
    assert _words(SENTENCE) in _text(extracted)
    assert not re.search(r"[A-Za-z]{25,}", " ".join(b.text for b in extracted.blocks))

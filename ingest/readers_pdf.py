"""Readers for PDFs and image files. Both run inside the reader's bounded child process
(readers._read_sandboxed), which limits time per page and memory.

    read_pdf(path, ocr="auto")     # text layer, OCR where a page has none, ruled tables as rows
    read_image(path)               # PNG, JPEG, TIFF (every frame), BMP, WebP, GIF: OCR

A PDF page is read from its text layer; with ocr="auto" a page with (almost) no text but an image
on it is a scan and is rendered with pypdfium2 and OCRed, so a mixed PDF pays for OCR only where
it needs it; ocr="always" OCRs every page, ocr="never" none. The mean OCR confidence of every
OCRed page comes back in `Extracted.ocr`. `on_page(n)` is called as each page is done: the parent
uses it as a heartbeat for its per-page time limit. `page_picture` (a citation's page, for the app)
draws a PDF page in a child process of its own, with a time and a memory limit.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from archivist.records import Extracted
from archivist.settings import python_module

from . import ocr as ocr_engine
from .layout import Page, inside, ocr_lines, page_blocks, text_layer_lines, typewriter
from .readers_base import ReadError, clean, short_reason
from .tables import aligned_tables, find_tables, has_rules, mark_continued

MIN_TEXT_CHARS = 20  # a page with fewer letters and digits in its text layer has no usable text
SMALL_IMAGE = 1000  # pixels: an image whose longer side is shorter and that reads as nothing is named as too small
RENDER_MAX_SIDE = 4000  # pixels: a huge page is rendered smaller than DPI, so one page's bitmap stays bounded
# A citation's page is drawn in a child process (`python -m archivist.ingest.readers_pdf FILE PAGE WIDTH`)
# with these limits: drawing is not reading, and a page that reads in 0.3 s can take minutes to draw
# (a 39 KB PDF whose shading computes every pixel took 68 s of the app's own process per click).
PICTURE_SECONDS = 20
PICTURE_MEMORY_MB = 1024

OnPage = Callable[[int], None]
_NOT_ALNUM = re.compile(r"[\W_]+")
_SPACE = re.compile(r"\s+")
# TeX's fonts read in pdfium as typeset, not as typed: a minus sign (U+2212, texinfo's "[-]word" and
# "${parameter:-word}") is '-' everywhere, as a search or a pasted command means it ("-16" in prose
# too); quotes only in a typewriter font, where CMTT draws ' and ` curly (code: [[ . =~ '\.' ]]),
# so that prose keeps its typographic quotes and apostrophes.
_CODE_QUOTES = {"\u2019": "'", "\u2018": "`"}
_QUOTE = re.compile("[\u2018\u2019]")


def _no_progress(_: int) -> None:
    pass


def open_pdf(path: Path):
    """A pypdfium2 PdfDocument, or ReadError: encrypted, corrupt, empty."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    try:
        return pdfium.PdfDocument(path)
    except pdfium.PdfiumError as exc:
        code = getattr(exc, "err_code", None)
        if code == pdfium_c.FPDF_ERR_PASSWORD:
            raise ReadError("encrypted PDF (needs a password)") from None
        if code == pdfium_c.FPDF_ERR_SECURITY:
            raise ReadError("encrypted PDF (unsupported security handler)") from None
        if code == pdfium_c.FPDF_ERR_FORMAT:
            raise ReadError("corrupt PDF: damaged or truncated file structure") from None
        if code == pdfium_c.FPDF_ERR_SUCCESS:
            raise ReadError("empty PDF (no pages)") from None
        raise ReadError(f"corrupt PDF: {short_reason(exc, Path(path))}") from None


def page_text(textpage) -> str:
    """A page's text layer, string index == char index (an undecodable character is "\\x00"), with
    a minus sign as '-' and a code font's quotes as typed (see _CODE_QUOTES)."""
    import pypdfium2.raw as pdfium_c

    count = max(textpage.count_chars(), 0)
    handle = textpage.raw
    text = textpage.get_text_range(0, count) if count else ""
    if len(text) != count:  # undecodable characters: rebuild so string index == char index
        text = "".join(
            chr(c) if 0 < c < 0x110000 and not 0xD800 <= c < 0xE000 else "\x00"
            for c in (pdfium_c.FPDFText_GetUnicode(handle, i) for i in range(count))
        )
    if "\u2212" in text:
        text = text.replace("\u2212", "-")
    if "\u2018" in text or "\u2019" in text:  # one font look-up per quote, none per letter
        text = _QUOTE.sub(lambda m: _CODE_QUOTES[m[0]] if typewriter(handle, m.start()) else m[0], text)
    return text


def needs_ocr(mode: str, lines, page) -> bool:
    """Whether a page is read by OCR: always; never; or (auto) when its text layer holds fewer than
    MIN_TEXT_CHARS letters and digits (or is mostly unreadable symbols) and the page shows an image."""
    if mode != "auto":
        return mode == "always"
    # The first lines nearly always tell (and counting a dense page costs); the rest when they do not.
    if _readable("".join(line.text for line in lines[:6])[:300]) or _readable("".join(line.text for line in lines)):
        return False
    import pypdfium2.raw as pdfium_c

    return any(True for _ in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=2))


def _readable(text: str) -> bool:
    """Whether text holds MIN_TEXT_CHARS letters and digits, and they are half its visible characters."""
    letters = len(_NOT_ALNUM.sub("", text))
    return letters >= MIN_TEXT_CHARS and letters >= 0.5 * len(_SPACE.sub("", text))


def render_page(page, dpi: int = ocr_engine.DPI):
    """A PDF page as a PIL image at `dpi` (less for pages so big the bitmap would pass RENDER_MAX_SIDE);
    returns (image, points per pixel)."""
    width, height = page.get_size()
    scale = min(dpi / 72, RENDER_MAX_SIDE / max(width, height, 1.0))
    bitmap = page.render(scale=scale)
    image = bitmap.to_pil()
    bitmap.close()
    return image, 1 / scale


def read_pdf(path: Path, *, ocr: str = "auto", max_pages: int = 2000, on_page: OnPage = _no_progress) -> Extracted:
    """PDF: text per page (or OCR, see the module doc), split into paragraphs, headings and table
    rows by layout (layout.page_blocks); running headers/footers and page numbers are dropped.
    page = 1-based page number; each block carries the boxes of its lines. The title is the
    document's metadata title, else its first heading.
    Raises ReadError: "encrypted PDF (needs a password)", "corrupt PDF: ...", "too many pages: ...",
    "no text layer (scanned PDF?) ..." with OCR off, "no text found ..." when OCR read nothing.
    """
    pdf = open_pdf(path)
    try:
        count = len(pdf)
        if count > max_pages:
            raise ReadError(f"too many pages: {count} (limit {max_pages})")
        title = clean(pdf.get_metadata_dict().get("Title", "") or "") or None
        pages: list[Page] = []
        confidence: dict[int, float] = {}
        sizes: dict[int, tuple[float, float]] = {}
        ruled: list[int] = []
        aligned: list[int] = []  # pages that may hold a table without rules
        turned: dict[int, int] = {}  # scanned pages read after turning them upright
        for number in range(1, count + 1):
            page = pdf[number - 1]
            try:
                sizes[number] = width, height = page.get_size()
                textpage = page.get_textpage()
                lines, runs = text_layer_lines(textpage, page_text(textpage), width, height)
                textpage.close()
                if needs_ocr(ocr, lines, page):
                    image, points_per_pixel = render_page(page)
                    read = ocr_engine.ocr_image(image)
                    del image  # one page's bitmap at a time
                    lines = ocr_lines(read, points_per_pixel)
                    confidence[number] = round(read.confidence, 3)
                    turned[number] = read.turned
                    aligned.append(number)
                elif runs:  # a table's cells are separate runs of text
                    aligned.append(number)
                    if has_rules(page):
                        ruled.append(number)
            finally:
                page.close()
            pages.append(Page(lines))
            on_page(number)
    finally:
        pdf.close()

    place_tables(pages, find_tables(path, ruled, sizes), aligned)
    blocks = unturn_blocks(page_blocks(pages), turned)
    if not blocks:
        if ocr == "never":
            raise ReadError("no text layer (scanned PDF?); OCR is off (--ocr never)")
        if not confidence:
            raise ReadError("no text layer, and no scanned image on its pages to OCR")
        raise ReadError("no text found: no text layer, and OCR read nothing")
    if title is None:
        title = next((b.text for b in blocks if b.kind == "heading"), None)
    return Extracted(blocks, pages=len(pages), title=title, kind="pdf", ocr=confidence)


def read_image(path: Path, *, ocr: str = "auto", max_pages: int = 2000, on_page: OnPage = _no_progress) -> Extracted:
    """An image file (every frame of a multi-page TIFF is a page) read by OCR.
    Raises ReadError: OCR off, corrupt image, decompression bomb, too many pages, no text found."""
    if ocr == "never":
        raise ReadError("an image: its text needs OCR, which is off (--ocr never)")
    pages: list[Page] = []
    confidence: dict[int, float] = {}
    turned: dict[int, int] = {}
    size = (0, 0)
    for number, frame in ocr_engine.image_frames(path, max_pages):
        size = max(size, frame.size, key=max)
        read = ocr_engine.ocr_image(frame)
        # Image pixels are taken as DPI-resolution points: units only matter within one document.
        pages.append(Page(ocr_lines(read, 72 / ocr_engine.DPI)))
        confidence[number] = round(read.confidence, 3)
        turned[number] = read.turned
        on_page(number)
    place_tables(pages, {}, list(range(1, len(pages) + 1)))
    blocks = unturn_blocks(page_blocks(pages), turned)
    if not blocks:
        width, height = size
        hint = "; text that small cannot be read: scan at 200 dpi or more" if max(size) < SMALL_IMAGE else ""
        raise ReadError(f"no text found in the image (OCR read nothing in its {width} x {height} pixels{hint})")
    title = next((b.text for b in blocks if b.kind == "heading"), None)
    return Extracted(blocks, pages=len(pages), title=title, kind="image", ocr=confidence)


def unturn_blocks(blocks: list, turned: dict[int, int]) -> list:
    """Put the boxes of the blocks of pages that OCR read after turning them upright (page number ->
    quarter turns, ocr.OcrPage.turned) back onto the page as the file shows it, where a citation
    highlights them. Returns `blocks`."""
    for block in blocks:
        turns = turned.get(block.page or 0, 0)
        if turns:
            block.boxes = tuple(ocr_engine.unturn(box, turns) for box in block.boxes)
    return blocks


def place_tables(pages: list[Page], ruled: dict[int, list], aligned: list[int]) -> None:
    """Put each page's tables on it and take their text out of its lines: the `ruled` tables
    (page number -> tables, from pdfplumber), else those found from aligned text on the `aligned`
    pages (1-based); then mark tables that run on from the page before."""
    found = dict(ruled)
    for number in aligned:
        if number not in found:
            tables, used = aligned_tables(pages[number - 1].lines)
            if tables:
                found[number] = tables
                pages[number - 1].lines = [ln for i, ln in enumerate(pages[number - 1].lines) if i not in used]
    for number, tables in ruled.items():
        page = pages[number - 1]
        page.lines = [line for line in page.lines if not any(inside(line, t.box) for t in tables)]
    for number, tables in found.items():
        pages[number - 1].tables = sorted(tables, key=lambda t: -t.top)
    mark_continued(found)


def page_picture(path: Path, kind: str, page: int, boxes=(), width: int = 1000):
    """Page `page` (1-based) of a PDF or image file as a PIL RGB image `width` pixels wide, with
    `boxes` (page fractions, origin top left) highlighted in translucent yellow: what a citation
    shows. Raises ReadError when the file or page cannot be drawn."""
    from PIL import Image, ImageDraw

    if kind == "pdf":
        image = _drawn_apart(path, page, width)
    elif kind == "image":
        frames = ocr_engine.image_frames(path, max_pages=max(page, 1))
        image = next((frame.copy() for number, frame in frames if number == page), None)
        frames.close()
        if image is None:
            raise ReadError(f"no page {page} in the image")
        image.thumbnail((width, width * 4))
    else:
        raise ReadError(f"a {kind} document has no page images")
    image = image.convert("RGB")
    if boxes:
        overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(overlay)
        w, h = image.size
        for x0, y0, x1, y1 in boxes:
            draw.rectangle((x0 * w - 2, y0 * h - 2, x1 * w + 2, y1 * h + 2), fill=(255, 230, 0, 90), outline=(230, 160, 0, 255))
        image = Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")
    return image


def _draw_pdf_page(path: Path, page: int, width: int):
    """Page `page` of a PDF as a PIL RGB image `width` pixels wide, at most four widths tall."""
    pdf = open_pdf(path)
    try:
        if not 1 <= page <= len(pdf):
            raise ReadError(f"no page {page} (the PDF has {len(pdf)})")
        pdf_page = pdf[page - 1]
        # at most 4 widths tall, as an image is: a crafted 40 x 14,400 pt page drawn `width` wide
        # took 5.6 GB and 14 s (1 pt wide: a MemoryError on the chat page)
        w, h = pdf_page.get_size()
        image = pdf_page.render(scale=min(width / max(w, 1.0), 4 * width / max(h, 1.0))).to_pil().convert("RGB")
        pdf_page.close()
        return image
    finally:
        pdf.close()


def _drawn_apart(path: Path, page: int, width: int):
    """`_draw_pdf_page` in a child process limited to PICTURE_SECONDS and PICTURE_MEMORY_MB.
    Raises ReadError when it fails, runs out of time or of memory."""
    from PIL import Image

    cmd = [*python_module("archivist.ingest.readers_pdf"), str(path), str(int(page)), str(int(width))]
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=PICTURE_SECONDS, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:  # subprocess.run has killed the child
        raise ReadError(f"page {page} took longer than {PICTURE_SECONDS} s to draw") from None
    head, _, pixels = done.stdout.partition(b"\n")
    try:
        w, h = (int(x) for x in head.split())
        return Image.frombytes("RGB", (w, h), pixels)
    except ValueError:
        reason = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        raise ReadError(reason[0][:200]) from None


def _draw_main(argv: list[str]) -> int:
    """The child of `_drawn_apart`: "W H\\n" and the RGB bytes on stdout, or the reason on stderr."""
    from archivist.ingest.readers import _limit_address_space

    _limit_address_space(PICTURE_MEMORY_MB)
    try:
        image = _draw_pdf_page(Path(argv[0]), int(argv[1]), int(argv[2]))
    except ReadError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    except MemoryError:
        sys.stderr.write(f"page {argv[1]} needs more than {PICTURE_MEMORY_MB} MB of memory to draw\n")
        return 2
    sys.stdout.buffer.write(b"%d %d\n" % image.size + image.tobytes())
    return 0


if __name__ == "__main__":
    sys.exit(_draw_main(sys.argv[1:]))

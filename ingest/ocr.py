"""OCR for scanned pages and image files, with RapidOCR (PP-OCR models as ONNX, shipped inside the
`rapidocr-onnxruntime` wheel: no model hub, no system package, runs on ONNX Runtime's CPU backend).

    page = ocr_image(pil_image)        # OcrPage: lines with text, pixel box and confidence
    for number, frame in image_frames(path, max_pages): ...   # the pages of a PNG/JPEG/TIFF/BMP/WebP/GIF

Everything here runs in the reader's bounded child process (readers._read_sandboxed): the engine
is loaded there once per file, and a page is rendered, read and dropped before the next one, so
memory does not grow with the page count.
"""

from __future__ import annotations

import re

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .readers_base import ReadError

DPI = 200  # scans are rendered at this resolution: CER under 1% on 10-pt text (bench/ocr.py)
MAX_PIXELS = 80_000_000  # an image with more pixels is refused as a decompression bomb (a 20x20 in. page at 400 dpi is 64 MP)
MAX_SIDE = 3500  # larger pages are scaled down first, keeping memory per page flat; lines are cut for the recognizer from this (RapidOCR's detector itself works on at most 2000 px)
LOW_CONFIDENCE = 0.80  # a page whose mean line confidence is under this is flagged in the documents list

_ENGINE = None


@dataclass
class OcrLine:
    text: str
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels, origin top left
    confidence: float


@dataclass
class OcrPage:
    width: int  # of the page as read: turned upright when it was scanned sideways
    height: int
    lines: list[OcrLine] = field(default_factory=list)
    turned: int = 0  # quarter turns to the left (numpy's rot90 k) that set the scan upright

    @property
    def confidence(self) -> float:
        """Mean line confidence weighted by characters; 0.0 when nothing was read. A line whose
        words ran together counts as unread (see `run_together`)."""
        chars = sum(len(line.text) for line in self.lines)
        return sum((0.0 if run_together(line.text) else line.confidence) * len(line.text)
                   for line in self.lines) / chars if chars else 0.0


_RUN = re.compile(r"[A-Za-z]{25,}")


def run_together(text: str) -> bool:
    """Whether most of a line's Latin letters stand in runs of 25 or more without a space: the
    recognizer lost the spaces between words ("Therearetwoimportantrequirementsforthe...", a
    slightly skewed or blurred scan), which it still reports at 0.97 confidence. Such text is found
    by no search for its words."""
    letters = sum(c.isascii() and c.isalpha() for c in text)
    return letters > 0 and sum(len(m) for m in _RUN.findall(text)) > letters / 2


def engine():
    """The RapidOCR engine, loaded once per process (about 1 s). Raises ReadError when the package is missing."""
    global _ENGINE
    if _ENGINE is None:
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError:
            raise ReadError("OCR needs the rapidocr-onnxruntime package (pip install rapidocr-onnxruntime)") from None
        steady_malloc()  # before ONNX Runtime starts its threads
        _ENGINE = RapidOCR(print_verbose=False)
    return _ENGINE


def steady_malloc() -> None:
    """Keep the OCR process's memory from creeping up page after page (glibc only; elsewhere a no-op).

    ONNX Runtime (its own arena is off in RapidOCR) mallocs and frees the detector's large tensors on
    every page from several threads, and glibc keeps what they free in per-thread heaps: a 100-page
    scan ran the reader child into its 2 GB address-space limit after a few pages (bench/RESULTS.md,
    finding 12). Two arenas bound the number of such heaps, and `trim_malloc` after each page hands
    their free memory back (RSS after a page: 150 MB instead of 350 MB, at the same CPU time).
    A fixed small mmap threshold would keep the heaps small too, but doubled the CPU time per page
    (every large tensor freshly mapped and faulted in)."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(-8, 2)  # M_ARENA_MAX


def trim_malloc() -> None:
    """Return the heap's free memory to the system (glibc malloc_trim; a no-op elsewhere)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def _libc():
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:  # musl or another libc: no such knobs
        return None


def ocr_image(image) -> OcrPage:
    """Read the text lines of one page image (PIL, any mode). Returns the lines in the engine's order
    (top to bottom) with boxes in pixels of the page as it reads: a page scanned sideways or upside
    down is turned upright first (`turned` says how), and its boxes stand on the turned page, whose
    `width` and `height` are given; `unturn` maps them back onto the image. Boxes are in the image's
    own pixels even when it was scaled down to MAX_SIDE to read."""
    import numpy as np

    width, height = image.size
    scale = min(1.0, MAX_SIDE / max(width, height))
    if scale < 1.0:
        image = image.resize((max(1, int(width * scale)), max(1, int(height * scale))))
    rgb = np.asarray(flatten(image))
    try:
        result, turns = _read(rgb)
    except Exception as e:  # ONNX Runtime reports an allocation it could not make as a generic error
        if _out_of_memory(e):
            raise MemoryError(f"OCR could not allocate memory for a {width}x{height} page") from e
        raise
    if turns % 2:
        width, height = height, width
    page = OcrPage(width, height, turned=turns)
    for item, crop in result:
        points, text, confidence = item[:3]
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        box = (min(xs), min(ys), max(xs), max(ys))
        start, end = np.array(points[0], dtype=float), np.array(points[1], dtype=float)
        length = float(np.linalg.norm(end - start))
        if len(item) >= 5 and len(item[3]) == len(item[4]) == len(text) and length >= crop.shape[0]:
            # Gaps are looked for in the line as the recognizer saw it, cut out along its slant: on
            # a skewed scan the upright box around a line holds the ascenders and descenders of the
            # lines above and below, which fill the blanks between its words. (A line standing on
            # end, whose crop came turned, keeps the recognizer's spacing.)
            along = (end - start) / max(length, 1e-6)
            centres = [float(np.dot((np.array(b[0]) + np.array(b[1])) / 2 - start, along)) for b in item[3]]
            text = restore_spaces(text, centres, word_gaps(crop.min(axis=2), (0, 0, crop.shape[1], crop.shape[0])))
        text = " ".join(str(text).split())
        if text:
            page.lines.append(OcrLine(text, tuple(v / scale for v in box), float(confidence)))
    del rgb, result
    trim_malloc()  # this page's tensors and bitmaps are freed: give the memory back before the next
    return page


def flatten(image):
    """A PIL image of any mode as RGB, as it looks on white paper: a transparent background (a PNG
    exported with ink on nothing, whose hidden colour is often black) becomes white, and 16-bit or
    float grey (some scanners' TIFFs) is brought to 8 bits instead of clipping to white."""
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        import numpy as np

        values = np.asarray(image, dtype=np.float32)
        top = float(values.max()) or 1.0
        image = Image.fromarray((values * (255.0 / top)).clip(0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, rgba)
    return image.convert("RGB")


def _read(rgb) -> tuple[list, int]:
    """Detect and recognize the lines of a page (an RGB array). Returns RapidOCR's items
    ([box, text, confidence, char boxes, chars, ...]), each with the line's crop as the recognizer
    read it (straightened along the line), and the quarter turns (numpy's rot90 `k`)
    the page needed to stand upright: when the angle classifier's vote (`orientation`) says the
    page lies sideways or upside down, it is turned and detected again before anything is read."""
    import numpy as np

    engine_ = engine()
    turns = 0
    for attempt in range(2):
        found, _ = engine_(rgb, use_cls=False, use_rec=False)  # detection only: the line boxes
        if not found:
            return [], turns
        quads = [np.array(points, dtype=np.float32) for points in found]
        crops = engine_.get_crop_img_list(rgb, quads)
        turn = orientation(engine_, quads, crops) if attempt == 0 else 0
        if not turn:
            break
        turns = turn
        rgb = np.ascontiguousarray(np.rot90(rgb, turn))
    read, _ = engine_.text_rec(crops, True)
    read = engine_.cal_rec_boxes(crops, quads, read)
    return [([quad.tolist(), *item], crop) for quad, item, crop in zip(quads, read, crops)
            if item[0] and float(item[1]) >= engine_.text_score], turns


ORIENTATION_LINES = 24  # the longest lines whose pieces vote on a page's orientation
ORIENTATION_SHARE = 0.7  # the share of the vote a turn needs: clean upright pages give 0.9-0.99 to "upright"


def orientation(engine_, quads, crops) -> int:
    """How many quarter turns (numpy's rot90 `k`: 1 = a quarter turn to the left) set a page upright,
    0 when it is upright or the vote is unclear. RapidOCR's angle classifier says whether a line reads
    upright or upside down (it turned some single lines the wrong way, so it is never trusted line
    by line: the page's longest lines vote). A line detected taller than wide lies sideways; its
    crop comes turned a quarter to the left, so "upright" there means the page reads after that
    same turn. The classifier sees 48 x 192 pixels: a long line squeezed into that is unreadable,
    so each line votes with up to two pieces four heights long."""
    pieces, sideways = [], []
    ranked = sorted(range(len(crops)), key=lambda i: -crops[i].shape[1] / max(crops[i].shape[0], 1))
    for i in ranked[:ORIENTATION_LINES]:
        crop = crops[i]
        h, w = crop.shape[:2]
        if h < 8 or w < 2 * h:
            continue
        (x0, y0), (x1, y1), _, (x3, y3) = quads[i][:4]
        tall = ((x3 - x0) ** 2 + (y3 - y0) ** 2) > 2.25 * ((x1 - x0) ** 2 + (y1 - y0) ** 2)
        for x in range(0, min(w - 2 * h, 4 * h) + 1, 4 * h):
            pieces.append(crop[:, x:x + 4 * h])
            sideways.append(tall)
    if len(pieces) < 3:
        return 0
    _, labels, _ = engine_.text_cls(pieces)
    votes = {0: 0.0, 1: 0.0, 2: 0.0, 3: 0.0}
    for (label, score), tall in zip(labels, sideways):
        flipped = "180" in str(label)
        votes[(3 if flipped else 1) if tall else (2 if flipped else 0)] += float(score)
    best = max(votes, key=votes.get)
    return best if votes[best] >= ORIENTATION_SHARE * sum(votes.values()) else 0


def unturn(box, turns: int):
    """A box (page fractions, origin top left) on a page read after `turns` quarter turns to the
    left (numpy's rot90 `k`) -> the same box on the page as the file has it."""
    x0, y0, x1, y1 = box
    return {1: (1 - y1, x0, 1 - y0, x1), 2: (1 - x1, 1 - y1, 1 - x0, 1 - y0),
            3: (y0, 1 - x1, y1, 1 - x0)}.get(turns % 4, (x0, y0, x1, y1))


def _out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) is an allocation failure: ONNX Runtime raises those as a
    generic error whose text says so (rapidocr wraps it again, with the traceback as its message)."""
    while exc is not None:
        text = str(exc).lower()
        if isinstance(exc, MemoryError) or "bad_alloc" in text or "failed to allocate" in text or "allocate memory" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def word_gaps(gray, box, min_gap: float = 0.2) -> list[float]:
    """The x centres of the blank columns between words in one line of a page image: runs of columns
    without ink at least `min_gap` of the line's height wide (letters sit closer than that)."""
    import numpy as np

    x0, y0, x1, y1 = (int(round(v)) for v in box)
    crop = gray[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)]
    if crop.size == 0:
        return []
    threshold = (int(crop.min()) + int(np.median(crop))) / 2  # between the ink and the paper
    ink = (crop < threshold).sum(axis=0) > 0
    columns = np.flatnonzero(ink)
    if len(columns) < 2:
        return []
    gaps = []
    for left, right in zip(columns, columns[1:]):
        if right - left - 1 >= min_gap * (y1 - y0):
            gaps.append(x0 + (left + right) / 2)
    return gaps


_SECTION_NUMBER = re.compile(r"\s*\d+(?:\.\d+)*\.")  # "2.", "2.6.": digits only, so "U.S.A." is none


def restore_spaces(text: str, centres: list[float], gaps: list[float]) -> str:
    """Put back the spaces the recognizer dropped: PP-OCR's models often read English word gaps as
    nothing ("returnedby18:00"). Each blank gap in the line's pixels (word_gaps) falls between two
    recognized characters (their x `centres`) that stand further apart than the line's usual step;
    a space goes there unless one is already next to it. A gap after a section number that opens
    the line ("2.6." before a capital) is a word gap however near: the step from a narrow "." to a
    wide capital is no longer than a letter's, and "2.6.RECOVERING" would be one word."""
    steps = sorted(centres[k + 1] - centres[k] for k in range(len(centres) - 1) if " " not in text[k:k + 2])
    usual = steps[len(steps) // 2] if steps else 0.0
    cuts = set()
    for gap in gaps:
        i = next((k for k in range(len(centres) - 1) if centres[k] < gap < centres[k + 1]), None)
        # The two characters must also stand further apart than letters do: in a monospaced font
        # the blank beside an "r" or "." is as wide as a word gap, but the step is not.
        if (i is not None and text[i] != " " and text[i + 1] != " "
                and (centres[i + 1] - centres[i] >= 1.2 * usual
                     or (text[i + 1].isupper() and _SECTION_NUMBER.fullmatch(text[:i + 1])))):
            cuts.add(i + 1)
    return "".join(" " + ch if k in cuts else ch for k, ch in enumerate(text))


def image_frames(path: Path, max_pages: int) -> Iterator:
    """The pages of an image file as PIL images, one at a time (a multi-page TIFF gives each frame).

    Raises ReadError: "corrupt image: ...", "image too large: ... (decompression bomb?)",
    "too many pages: N (limit M)".
    """
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # PIL warns above this and refuses above twice this
    try:
        with warnings.catch_warnings():
            # PIL's warning names no size: opening reads only the header, and _check_pixels refuses
            # the image before a pixel is decoded, naming its width and height
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
            _check_pixels(image.size)
            frames = getattr(image, "n_frames", 1)
            if frames > max_pages:
                raise ReadError(f"too many pages: {frames} (limit {max_pages})")
            for index in range(frames):
                image.seek(index)
                _check_pixels(image.size)
                image.load()
                yield index + 1, upright(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # over twice the limit PIL refuses at open, before the size is known; its message has the pixel count
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f": {int(found.group(1)) // 1_000_000} megapixels" if found else ""
        raise ReadError(f"image too large{size} (limit {MAX_PIXELS // 1_000_000} megapixels: a decompression bomb?)") from None
    except UnidentifiedImageError:
        raise ReadError("corrupt image: not a readable PNG, JPEG, TIFF, BMP, WebP or GIF") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ReadError(f"corrupt image: {' '.join(str(exc).split())[:160] or type(exc).__name__}") from None


def upright(image):
    """The image as it is meant to be seen: a phone or camera stores its pixels as the sensor lay and
    says in EXIF how to turn them (Orientation 2-8); without the turn a photographed page is read
    sideways. An image without the tag is returned as it is (no copy)."""
    from PIL import ImageOps

    try:
        turn = image.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - a damaged EXIF block must not cost the page
        return image
    return ImageOps.exif_transpose(image) if turn in (2, 3, 4, 5, 6, 7, 8) else image


def _check_pixels(size: tuple[int, int]) -> None:
    width, height = size
    if width * height > MAX_PIXELS:
        raise ReadError(
            f"image too large: {width} x {height} pixels (limit {MAX_PIXELS // 1_000_000} megapixels: a decompression bomb?)"
        )

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
MAX_SIDE = 3500  # the longer side given to the detector; larger pages are scaled down first, keeping memory per page flat
LOW_CONFIDENCE = 0.80  # a page whose mean line confidence is under this is flagged in the documents list

_ENGINE = None


@dataclass
class OcrLine:
    text: str
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels, origin top left
    confidence: float


@dataclass
class OcrPage:
    width: int
    height: int
    lines: list[OcrLine] = field(default_factory=list)

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
    """Read the text lines of one page image (PIL). Returns the lines in the engine's order (top to
    bottom), boxes in the image's own pixels, even when it was scaled down to MAX_SIDE to read."""
    import numpy as np

    width, height = image.size
    scale = min(1.0, MAX_SIDE / max(width, height))
    if scale < 1.0:
        image = image.resize((max(1, int(width * scale)), max(1, int(height * scale))))
    rgb = np.asarray(image.convert("RGB"))
    # No angle classifier: pages are upright, and it turned some clean lines upside down (which
    # then read as "S" at 0.38 confidence and were dropped): 3 of 14 lines on a 200 dpi test page.
    try:
        result, _ = engine()(rgb, use_cls=False, return_word_box=True)
    except Exception as e:  # ONNX Runtime reports an allocation it could not make as a generic error
        if _out_of_memory(e):
            raise MemoryError(f"OCR could not allocate memory for a {width}x{height} page") from e
        raise
    gray = rgb.min(axis=2)  # dark on any channel is ink
    page = OcrPage(width, height)
    for item in result or []:
        points, text, confidence = item[:3]
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        box = (min(xs), min(ys), max(xs), max(ys))
        if len(item) >= 5 and len(item[3]) == len(item[4]) == len(text):
            text = restore_spaces(text, [(b[0][0] + b[1][0]) / 2 for b in item[3]], word_gaps(gray, box))
        text = " ".join(str(text).split())
        if text:
            page.lines.append(OcrLine(text, tuple(v / scale for v in box), float(confidence)))
    del rgb, gray, result
    trim_malloc()  # this page's tensors and bitmaps are freed: give the memory back before the next
    return page


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


def restore_spaces(text: str, centres: list[float], gaps: list[float]) -> str:
    """Put back the spaces the recognizer dropped: PP-OCR's models often read English word gaps as
    nothing ("returnedby18:00"). Each blank gap in the line's pixels (word_gaps) falls between two
    recognized characters (their x `centres`) that stand further apart than the line's usual step;
    a space goes there unless one is already next to it."""
    steps = sorted(centres[k + 1] - centres[k] for k in range(len(centres) - 1) if " " not in text[k:k + 2])
    usual = steps[len(steps) // 2] if steps else 0.0
    cuts = set()
    for gap in gaps:
        i = next((k for k in range(len(centres) - 1) if centres[k] < gap < centres[k + 1]), None)
        # The two characters must also stand further apart than letters do: in a monospaced font
        # the blank beside an "r" or "." is as wide as a word gap, but the step is not.
        if (i is not None and text[i] != " " and text[i + 1] != " "
                and centres[i + 1] - centres[i] >= 1.2 * usual):
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
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
            _check_pixels(image.size)
            frames = getattr(image, "n_frames", 1)
            if frames > max_pages:
                raise ReadError(f"too many pages: {frames} (limit {max_pages})")
            for index in range(frames):
                image.seek(index)
                _check_pixels(image.size)
                image.load()
                yield index + 1, image
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ReadError(f"image too large (over {MAX_PIXELS // 1_000_000} megapixels: a decompression bomb?)") from None
    except UnidentifiedImageError:
        raise ReadError("corrupt image: not a readable PNG, JPEG, TIFF, BMP, WebP or GIF") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ReadError(f"corrupt image: {' '.join(str(exc).split())[:160] or type(exc).__name__}") from None


def _check_pixels(size: tuple[int, int]) -> None:
    width, height = size
    if width * height > MAX_PIXELS:
        raise ReadError(
            f"image too large: {width} x {height} pixels (limit {MAX_PIXELS // 1_000_000} megapixels: a decompression bomb?)"
        )

"""Small helpers shared by the format readers: the error type, text cleaning, table rows, decoding.

Kept apart from `readers.py` so the per-format modules can import them without an import cycle.
"""

from __future__ import annotations

import codecs
import re
import textwrap
from collections.abc import Iterable, Iterator
from pathlib import Path

from archivist.records import Block


class ReadError(Exception):
    """A file could not be read. The message is a short human reason, without the file name
    (the pipeline adds it), e.g. "encrypted PDF (needs a password)"."""


# Characters that carry no text: C0/C1 controls other than whitespace, zero-width marks, BOMs,
# soft hyphens and noncharacters. Whitespace controls (\t \n \v \f \r) are left to str.split().
_INVISIBLE = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\u00ad\u200b-\u200d\u2060\ufeff\ufffe\uffff]")


def clean(text: str) -> str:
    """One line of prose: invisible characters dropped, every whitespace run made one space, stripped."""
    return " ".join(_INVISIBLE.sub("", text).split())


def clean_lines(text: str) -> str:
    """Like `clean` but keeps line breaks (slides); blank lines are dropped."""
    lines = (clean(line) for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return "\n".join(line for line in lines if line)


def clean_code(text: str) -> str:
    """Code keeps its newlines and relative indentation: invisible characters, trailing spaces and
    the indentation common to all lines go, and the result is stripped like every block text."""
    text = _INVISIBLE.sub("", text.replace("\r\n", "\n").replace("\r", "\n").expandtabs(4))
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return textwrap.dedent(text).strip()


def row_text(header: list[str], values: list[str]) -> str:
    """A table row as readable text, "Header1: v1; Header2: v2".

    Empty values are left out; a value whose column has no header stands alone.
    Returns "" when every value is empty.
    """
    parts = []
    for i, value in enumerate(values):
        value = clean(value)
        if not value:
            continue
        name = clean(header[i]) if i < len(header) else ""
        parts.append(f"{name}: {value}" if name else value)
    return "; ".join(parts)


def table_blocks(rows: Iterable[list[str]], *, heading: tuple[str, ...] = (), page: int | None = None) -> list[Block]:
    """Rows of a table (first row = header) -> one Block(kind="row") per data row.

    A table with only a header row still yields that row (joined by "; ") so its text is not lost.
    `rows` is read once, as it goes (a CSV reader: a million rows never become a list of rows).
    """
    return list(iter_table_blocks(rows, heading=heading, page=page))


def iter_table_blocks(rows: Iterable[list[str]], *, heading: tuple[str, ...] = (), page: int | None = None) -> Iterator[Block]:
    """`table_blocks` one block at a time, for a table too long to hold (a big CSV streamed in)."""
    rows = (r for r in rows if any(clean(c) for c in r))
    header = next(rows, None)
    if header is None:
        return
    data = False
    for values in rows:
        data = True
        text = row_text(header, values)
        if text:
            yield Block(text, page=page, heading=heading, kind="row")
    if not data:
        yield Block("; ".join(c for c in (clean(c) for c in header) if c), page=page, heading=heading, kind="row")


CAPTION_CHARS = 150  # a paragraph this short just before a table is taken for its caption


_CAPTION = re.compile(r"(?i)^(table|tab\.|figure|fig\.)\s*[\dIVX]|.*:$")


def table_heading(blocks: list[Block], heading: tuple[str, ...], page: int | None = None,
                  caption: str = "", loose: bool = False) -> tuple[str, ...]:
    """The heading path a table's rows get: the section's `heading`, then the table's caption, so a
    row keeps what the table is about. The caption is `caption` (HTML <caption>) when given, else
    the paragraph just before the table, in the same section and page, when it is short and reads
    as a caption ("Table 2: ...", "Revenue by region:"); with `loose` (PDFs, which mark no captions)
    any short line that ends no sentence ("Revenue by region, 2025 (thousands EUR)")."""
    caption = clean(caption)
    if not caption and blocks:
        last = blocks[-1]
        text = last.text
        if (last.kind == "paragraph" and last.heading == heading and last.page == page and len(text) <= CAPTION_CHARS
                and (_CAPTION.match(text) or (loose and not text.endswith((".", "!", "?"))))):
            caption = text
    return heading + (caption,) if caption else heading


class HeadingPath:
    """The heading path above the current position, outermost first, for numbered levels (h1..h6)."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, str]] = []

    def enter(self, level: int, text: str) -> tuple[str, ...]:
        """A heading of `level` starts a section: deeper or equal levels are closed. Returns the new path."""
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        self._stack.append((level, text))
        return self.path

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(text for _, text in self._stack)


def decode_text(data: bytes) -> str:
    """Bytes of a text file -> str. UTF-8 (with or without BOM) first, UTF-16 when it has a BOM,
    then Windows-1252, then Latin-1 (which always succeeds).

    Raises ReadError("binary file ...") when the bytes contain NUL and are not UTF-16.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    if b"\x00" in data:
        raise ReadError("binary file (contains NUL bytes), not text")
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def text_encoding(path: Path) -> str:
    """The encoding `decode_text` would choose for the file's bytes, found reading a block at a time
    (a file too big to hold decoded is then read as a text stream in it).

    Raises ReadError("binary file ...") as decode_text does.
    """
    with open(path, "rb") as f:
        head = f.read(2)
    if head in (b"\xff\xfe", b"\xfe\xff") and _decodes(path, "utf-16"):
        return "utf-16"
    if any(b"\x00" in block for block in _byte_blocks(path)):
        raise ReadError("binary file (contains NUL bytes), not text")
    for encoding in ("utf-8-sig", "cp1252"):
        if _decodes(path, encoding):
            return encoding
    return "latin-1"


def _byte_blocks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    with open(path, "rb") as f:
        yield from iter(lambda: f.read(size), b"")


def _decodes(path: Path, encoding: str) -> bool:
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        for block in _byte_blocks(path):
            decoder.decode(block)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def short_reason(exc: BaseException) -> str:
    """An exception as a one-line reason of at most 160 characters, for "corrupt DOCX: <reason>"."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > 160:
        text = text[:157] + "..."
    return text

"""Readers for plain text and CSV/TSV: paragraphs, and one row Block per CSV row (`stream_csv`
reads a CSV too big to hold a group of rows at a time).

Each reader takes a path and returns `Extracted`; it raises `ReadError` for input it cannot use.
`read()` in `readers.py` has already checked that the file exists, is not empty and is not too big.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path

from archivist.records import Block, Extracted

from .readers_base import ReadError, clean, decode_text, iter_table_blocks, table_blocks, text_encoding

# ---------------------------------------------------------------------------------------------
# Plain text


def _paragraphs(text: str) -> list[str]:
    """Text -> paragraphs split on blank lines, each cleaned; empty ones dropped."""
    parts = re.split(r"\n[^\S\n]*\n", text.replace("\r\n", "\n").replace("\r", "\n"))
    return [p for p in (clean(part) for part in parts) if p]


def read_text(path: Path) -> Extracted:
    """Plain text: one paragraph Block per blank-line-separated paragraph.

    Raises ReadError("binary file ...") when the bytes hold NUL characters.
    """
    text = decode_text(path.read_bytes())
    return Extracted([Block(p) for p in _paragraphs(text)], kind="text")


# ---------------------------------------------------------------------------------------------
# CSV


def read_csv(path: Path) -> Extracted:
    """CSV/TSV: the first row is the header; every further row becomes Block(kind="row") with text
    "col: value; col: value" and heading (file name,). The dialect (delimiter, quoting) is sniffed.

    Raises ReadError("corrupt CSV: ...") when the csv module cannot parse it.
    """
    text = decode_text(path.read_bytes())
    rows = csv.reader(_lines(text), _dialect(text[:SNIFF_CHARS], path))
    try:  # rows are parsed as table_blocks asks for them: no list of every line and every row
        blocks = table_blocks(rows, heading=(path.name,))
    except csv.Error as exc:
        raise ReadError(f"corrupt CSV: {exc}") from None
    return Extracted(blocks, kind="csv")


SNIFF_CHARS = 16 * 1024  # enough lines to sniff; the sniffer slows down on big samples


def _dialect(sample: str, path: Path):
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        # The sniffer gives up on one-column files and on some quoting; a .tsv is tab-separated.
        return csv.excel_tab if path.suffix.lower() == ".tsv" else csv.excel


# Long cells (a description column) are legal; the default 128 KB limit is not a safety need
# because the whole file is already bounded by max_mb.
csv.field_size_limit(64 * 1024 * 1024)


def stream_csv(path: Path, group_chars: int = 1 << 20) -> Iterator[list[Block]]:
    """A CSV too big to hold, as `read_csv`'s blocks (cleaned, empty ones dropped, as `read` leaves
    them) in groups of about `group_chars` characters, read from the file as the groups are asked for.

    The checks run now, before the first group: the encoding (as `decode_text` chooses it), and a
    first pass that parses every row, so a bad file fails before anything of it is stored.
    Raises ReadError: binary file, corrupt CSV, empty file (no text).
    """
    encoding = text_encoding(path)

    def blocks() -> Iterator[Block]:
        with open(path, encoding=encoding, newline="") as f:  # newline="": line ends as read_csv sees them
            dialect = _dialect(f.read(SNIFF_CHARS), path)
        with open(path, encoding=encoding, newline="") as f:
            try:
                for block in iter_table_blocks(csv.reader(_stream_lines(f), dialect), heading=(path.name,)):
                    block.text = clean(block.text)
                    if block.text:
                        yield block
            except csv.Error as exc:
                raise ReadError(f"corrupt CSV: {exc}") from None

    if not sum(1 for _ in blocks()):  # the first pass: every row parses
        raise ReadError("empty file (no text)")

    def groups() -> Iterator[list[Block]]:
        group, chars = [], 0
        for block in blocks():
            group.append(block)
            chars += len(block.text)
            if chars >= group_chars:
                yield group
                group, chars = [], 0
        if group:
            yield group

    return groups()


def _stream_lines(f, piece: int = 1 << 20) -> Iterator[str]:
    """`_lines` over an open text file: the same lines, a piece at a time."""
    rest = ""
    while block := f.read(piece):
        text = rest + block
        cut = text.rfind("\n") + 1
        yield from text[:cut].splitlines()
        rest = text[cut:]
    yield from rest.splitlines()


def _lines(text: str, piece: int = 1 << 20):
    """`text.splitlines()` a piece at a time: pieces end after a "\n", where splitlines splits
    anyway, so the lines are the same without a list of all of them."""
    a = 0
    while a < len(text):
        b = text.find("\n", a + piece)
        b = len(text) if b == -1 else b + 1
        yield from text[a:b].splitlines()
        a = b

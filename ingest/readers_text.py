"""Readers for plain text and CSV/TSV: paragraphs (a short line that ends no sentence, before a
paragraph, is a heading), and one row Block per CSV row (`stream_csv` reads a CSV too big to hold a
group of rows at a time); a .txt that is a tab-separated table (Excel's "Unicode Text") is read as one.

Each reader takes a path and returns `Extracted`; it raises `ReadError` for input it cannot use.
`read()` in `readers.py` has already checked that the file exists, is not empty and is not too big.
"""

from __future__ import annotations

import csv
import itertools
import re
from collections.abc import Iterator
from pathlib import Path

from archivist.records import Block, Extracted

from .readers_base import ReadError, clean, decode_text, iter_table_blocks, table_blocks, text_encoding

# ---------------------------------------------------------------------------------------------
# Plain text


HEADING_CHARS = 80  # a plain-text heading is one line at most this long
HEADING_SHARE = 0.6  # and, over its paragraph's other lines, at most this share of the longest
_CLAUSE_END = ".,;:!?…。，；：！？、"  # a line ending in one of these goes on, or ends a sentence: no heading
_SENTENCE_END = re.compile(r"[.!?:…。！？][\"'’”»)\]]*$")
_INNER_END = re.compile(r"[^\W\d]{2}[.!?]\s")  # "list. See": a sentence ends inside ("3. Kennwort" is a number)


# Terminal formatting, which a coloured log holds around its words: ANSI escape sequences (colour
# from `grep --color` or `ls --color`, a `script` typescript's titles and charset selections) and
# overstrike ("N\bN" bold, "_\bN" underline: a man page saved with `man ls > ls.txt`). `clean` drops
# the ESC and the backspace alone, so "[35m[K" and doubled letters ("NNAAMMEE") were stored as text.
# readers.py's sniffing counts the same bytes as text, not as binary data (`_TERMINAL`).
TERMINAL_ESCAPES = r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()][0-9A-Za-z]|[=>78DEHMc])"
_FORMATTING = re.compile(TERMINAL_ESCAPES + r"|[^\x00-\x1f]\x08(?=[^\x00-\x1f])")  # overstrike: the last character shows


def strip_terminal(text: str) -> str:
    """Text as a terminal shows it: escape sequences dropped, each overstruck character once. Every
    text, Markdown and CSV file passes here, and few hold either: without an ESC or a backspace the
    pattern cannot match, and looking for the two is some eighty times faster than the scan."""
    return _FORMATTING.sub("", text) if "\x1b" in text or "\x08" in text else text


def _paragraphs(text: str) -> list[list[str]]:
    """Text -> paragraphs split on blank lines, each as its lines, cleaned; empty ones dropped."""
    parts = re.split(r"\n[^\S\n]*\n", text.replace("\r\n", "\n").replace("\r", "\n"))
    return [lines for lines in ([c for c in map(clean, part.split("\n")) if c] for part in parts) if lines]


def _heading_line(line: str) -> bool:
    """A cleaned line that could be a heading: short, opening with a digit ("3. Kennwortänderung") or
    a letter that is not lower case (a wrapped sentence's next line starts lower case), ending no
    clause or sentence and holding no sentence's end."""
    return (len(line) <= HEADING_CHARS and line[0].isalnum() and not line[0].islower()
            and line[-1] not in _CLAUSE_END and any(c.isalpha() for c in line) and not _INNER_END.search(line))


def _prose(lines: list[str]) -> bool:
    """Whether lines read as a paragraph: opening with a letter or digit (not a list's "-" or a rule's
    "---") and ending as a sentence does (not as an address or a table)."""
    return lines[0][0].isalnum() and _SENTENCE_END.search(lines[-1]) is not None


def _heads(first: str, rest: list[str]) -> bool:
    """Whether a paragraph's first line is a heading over its other lines (`rest`): a heading line
    (`_heading_line`) over prose (`_prose`), at most HEADING_SHARE of the longest line, and not cut
    there by wrapping: the next line's first word would have fitted after it, and it opens neither
    in lower case nor in capitals under capitals (a licence's disclaimer)."""
    word, width = rest[0].split(" ", 1)[0], max(map(len, rest))
    return (_heading_line(first) and len(first) <= HEADING_SHARE * width and len(first) + 1 + len(word) <= width
            and not word[0].islower() and not (first.isupper() and word.isupper()) and _prose(rest))


def _text_blocks(text: str) -> list[Block]:
    """Plain text's paragraphs as Blocks, with their headings: a short line that ends no sentence
    before a paragraph of prose, alone between blank lines or its paragraph's first line (`_heads`:
    "2. Kennwortänderung" over "Das Kennwort ... geändert werden."). It was glued onto the first
    sentence ("Kennwortänderung Das Kennwort ...") in quotes and answers. A heading heads the
    paragraphs after it, up to the next one, as Markdown's do."""
    paragraphs = _paragraphs(text)
    blocks: list[Block] = []
    heading: tuple[str, ...] = ()
    for i, lines in enumerate(paragraphs):
        first, rest = lines[0], lines[1:]
        alone = not rest and i + 1 < len(paragraphs) and _heading_line(first) and _prose(paragraphs[i + 1])
        if alone or (rest and _heads(first, rest)):
            heading = (first,)
            blocks.append(Block(first, heading=heading, kind="heading"))
            lines = rest
        if lines:
            blocks.append(Block(" ".join(lines), heading=heading))
    return blocks


def read_text(path: Path) -> Extracted:
    """Plain text: one paragraph Block per blank-line-separated paragraph, headings apart
    (`_text_blocks`); a tab-separated table (`_tab_table`) as read_csv reads a .tsv.

    Terminal formatting (a coloured log, an overstruck man page) is dropped, its words kept.
    Raises ReadError("binary file ...") when the bytes hold NUL characters.
    """
    text = strip_terminal(decode_text(path.read_bytes()))
    if _tab_table(text):
        return Extracted(_table(text, csv.excel_tab, path), kind="text")
    return Extracted(_text_blocks(text), kind="text")


TABLE_PROBE_ROWS = 200  # the rows of a .txt looked at to tell a tab-separated table


def _tab_table(text: str) -> bool:
    """Whether text is a tab-separated table, as Excel's "Save as Unicode Text (*.txt)" writes one
    (UTF-16, tabs, cells with tabs or line breaks quoted): its first rows (TABLE_PROBE_ROWS) all
    have the header's number of cells, two or more, a header row of distinct names and at least one
    row below it. Prose indented with tabs has an empty first cell; a text with a tab here and
    there has rows of other lengths."""
    if "\t" not in text[:SNIFF_CHARS]:
        return False
    try:
        rows = [r for r in itertools.islice(csv.reader(_lines(text), csv.excel_tab), TABLE_PROBE_ROWS) if r]
    except csv.Error:
        return False
    header = [clean(c) for c in rows[0]] if rows else []
    return (len(rows) > 1 and len(header) > 1 and all(header) and len(set(header)) == len(header)
            and all(len(r) == len(header) for r in rows))


# ---------------------------------------------------------------------------------------------
# CSV


def read_csv(path: Path) -> Extracted:
    """CSV/TSV: the first row is the header; every further row becomes Block(kind="row") with text
    "col: value; col: value" and heading (file name,). The dialect (delimiter, quoting) is sniffed.

    Terminal formatting is dropped before the sniffing and parsing (its "[01;31m" holds a ";").
    Raises ReadError("corrupt CSV: ...") when the csv module cannot parse it.
    """
    text = strip_terminal(decode_text(path.read_bytes()))
    return Extracted(_table(text, _dialect(text[:SNIFF_CHARS], path), path), kind="csv")


def _table(text: str, dialect, path: Path) -> list[Block]:
    """The rows of a CSV's `text` as `table_blocks`, headed by the file's name. Raises ReadError."""
    rows = csv.reader(_lines(text), dialect)
    try:  # rows are parsed as table_blocks asks for them: no list of every line and every row
        return table_blocks(rows, heading=(path.name,))
    except csv.Error as exc:
        raise ReadError(f"corrupt CSV: {exc}") from None


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
            dialect = _dialect(strip_terminal(f.read(SNIFF_CHARS)), path)
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
    """`_lines` over an open text file: the same lines, terminal formatting dropped (as read_csv
    drops it), a piece at a time."""
    rest = ""
    while block := f.read(piece):
        text = rest + block
        cut = text.rfind("\n") + 1
        yield from strip_terminal(text[:cut]).splitlines(keepends=True)
        rest = text[cut:]
    yield from strip_terminal(rest).splitlines(keepends=True)


def _lines(text: str, piece: int = 1 << 20):
    """`text.splitlines(keepends=True)` a piece at a time: pieces end after a "\n", where splitlines
    splits anyway, so the lines are the same without a list of all of them. The line ends are kept
    for the csv module: a quoted cell's line break (Alt+Enter in Excel) stays a break, where
    without it "Königsallee 5" over "2. Stock" was stored as "Königsallee 52. Stock"."""
    a = 0
    while a < len(text):
        b = text.find("\n", a + piece)
        b = len(text) if b == -1 else b + 1
        yield from text[a:b].splitlines(keepends=True)
        a = b

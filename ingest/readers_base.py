"""Small helpers shared by the format readers: the error type, text cleaning, table rows, decoding.

Kept apart from `readers.py` so the per-format modules can import them without an import cycle.
"""

from __future__ import annotations

import codecs
import re
import textwrap
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path

from archivist.records import Block


class ReadError(Exception):
    """A file could not be read. The message is a short human reason, without the file name
    (the pipeline adds it), e.g. "encrypted PDF (needs a password)"."""


# Characters that carry no text: C0/C1 controls other than whitespace, zero-width marks, BOMs,
# soft hyphens and noncharacters. Whitespace controls (\t \n \v \f \r) are left to str.split().
_INVISIBLE = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\u00ad\u200b-\u200d\u2060\ufeff\ufffe\uffff]")


def _nfc(text: str) -> str:
    """Accents composed (NFC): "café" written decomposed (e + U+0301, as some PDFs and macOS write it)
    stores, quotes and is checked as the same word typed on a keyboard."""
    return text if text.isascii() else unicodedata.normalize("NFC", text)


def clean(text: str) -> str:
    """One line of prose: invisible characters dropped, accents composed (NFC), every whitespace run
    made one space, stripped."""
    return " ".join(_nfc(_INVISIBLE.sub("", text)).split())


def clean_lines(text: str) -> str:
    """Like `clean` but keeps line breaks (slides); blank lines are dropped."""
    lines = (clean(line) for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return "\n".join(line for line in lines if line)


def clean_code(text: str) -> str:
    """Code keeps its newlines and relative indentation: invisible characters, trailing spaces and
    the indentation common to all lines go, accents are composed (NFC), and the result is stripped
    like every block text."""
    text = _nfc(_INVISIBLE.sub("", text.replace("\r\n", "\n").replace("\r", "\n").expandtabs(4)))
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


MAX_HEADER_ROWS = 3  # a table's header takes at most this many rows (HTML <th> rows, a DOCX table's divided rows)


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


# Legacy encodings of Chinese, Japanese and Korean text (Shift_JIS/CP932 from a Japanese Excel,
# GBK/GB18030, Big5, EUC-JP, EUC-KR). Windows-1252 decodes almost any bytes, so such a file was stored
# as mojibake ("LxÉÍNÔñ" for 有給休暇), silently. charset_normalizer (a dependency) tells
# them from Western text; it is asked only about a file that is not UTF-8, and only a CJK answer is
# taken from it (on short Western text it may say cp1250 where cp1252 is right, as it did for French).
_CJK_ENCODINGS = frozenset("""cp932 shift_jis shift_jis_2004 shift_jisx0213 euc_jp euc_jis_2004 euc_jisx0213
iso2022_jp gb18030 gbk gb2312 hz big5 big5hkscs cp950 cp949 euc_kr johab iso2022_kr""".split())
_SNIFF_BYTES = 256 * 1024  # what the detector reads of a file: its guess is as good and its time bounded


def _cjk_encoding(head: bytes) -> str | None:
    """The CJK legacy encoding the start of a non-UTF-8 text is in, or None (then `_ansi_encodings`)."""
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # pragma: no cover - a dependency (pyproject.toml), and of requests
        return None
    if len(head) >= _SNIFF_BYTES:  # whole lines: a character cut at the end would rule its encoding out
        head = head[:head.rfind(b"\n") + 1] or head
    best = from_bytes(head).best()
    if best is None or best.encoding not in _CJK_ENCODINGS:
        return None
    return best.encoding if _reads_as_cjk(head.decode(best.encoding, "replace")) else None


_NON_ASCII = re.compile(r"[^\x00-\x7f]+")


def _reads_as_cjk(text: str) -> bool:
    """Whether text decoded from a CJK encoding reads as CJK, not as Western text taken for it: Chinese
    and Japanese characters come in runs, between spaces, punctuation or Latin words; Latin-1 accents
    read as Big5 sit inside Latin words, alone or in pairs ("pr嶮嶨inis" for "prédéfinis"). At least half the
    non-ASCII characters in runs of two or more, and at most a quarter of the runs with a letter on
    both sides. (French and German Debian Reference text in Latin-1: 2 of 5,693 pieces taken for CJK,
    both one title line; Japanese and Chinese pieces of 1 KB or more: all recognised.)"""
    runs = [(m.start(), m.end()) for m in _NON_ASCII.finditer(text)]
    chars = sum(b - a for a, b in runs)
    if chars < 2:
        return False
    long = sum(b - a for a, b in runs if b - a >= 2)
    inside = sum(a > 0 and b < len(text) and text[a - 1].isalpha() and text[b].isalpha() for a, b in runs)
    return long >= 0.5 * chars and inside <= 0.25 * len(runs)


# Windows' "ANSI" code pages in Europe: Western (1252: German, French, Spanish), Central European
# (1250: Polish, Czech, Hungarian) and Cyrillic (1251). Each decodes almost any bytes, so a Polish
# file read as 1252 was stored as "Ka¿dy w³asne" and a Russian one as "Èíñòðóêöèÿ", silently; the
# text each gives tells them apart. Ties keep 1252, so Western text reads as it always did.
_ANSI = ("cp1252", "cp1250", "cp1251")
_WORD = re.compile(r"(?:[A-Za-z]|[^\x00-\x7f\s])+")  # letters and whatever non-ASCII sits between them


def _ansi_encodings(head: bytes) -> tuple[str, ...]:
    """The code pages to try on a text that is not UTF-8: those of `_ANSI` whose decoding of `head`
    has at least two misread words (`_misread`) fewer than 1252's, fewest first, then 1252. Two, as
    one typo ("listo¿vale?": ¿ is 1250's ż) must not turn a Spanish file's ñ into ń. One no better
    than 1252 is never tried: where 1252 fails on a stray byte, Latin-1 keeps a German or French
    text's letters (1251 would read "Grüße" as "GrьЯe", 1250 "règles" as "rčgles")."""
    misread = {encoding: _misread(head.decode(encoding, "replace")) for encoding in _ANSI}
    better = sorted((e for e in _ANSI[1:] if misread[e] <= misread["cp1252"] - 2), key=misread.__getitem__)
    return (*better, "cp1252")


def _misread(text: str) -> int:
    """How many words of `text` read as a wrong code page's: a sign or digit-like mark between two
    letters ("Ka¿dy", "w³asne": Polish ż and ł as 1252), Latin and Cyrillic letters in one word
    ("sйcuritй": French as 1251), or three or more letters all accented Latin ("Èíñòðóêöèÿ": Russian
    as 1252 or 1250; few German, French, Spanish or Polish words are spelled so: "żółć")."""
    bad = 0
    for m in _WORD.finditer(text):
        word = m.group()
        if word.isascii():
            continue
        letters = [c.isalpha() for c in word]
        sign = any(not letters[i] and letters[i - 1] and letters[i + 1] for i in range(1, len(word) - 1))
        cyrillic = any("\u0400" <= c <= "\u04ff" for c in word)
        latin = any(c.isascii() or "\u00c0" <= c <= "\u024f" for c in word if c.isalpha())
        accented = sum(letters) >= 3 and all("\u00c0" <= c <= "\u024f" for c in word if c.isalpha())
        bad += sign or (cyrillic and latin) or accented
    return bad


def decode_text(data: bytes) -> str:
    """Bytes of a text file -> str. UTF-8 (with or without BOM) first, UTF-16 when it has a BOM,
    then a Chinese, Japanese or Korean legacy encoding when the bytes are in one (`_cjk_encoding`),
    else the Windows code page of Europe the text reads best in (`_ansi_encodings`: Western 1252,
    Central European 1250, Cyrillic 1251), then Latin-1 (which always succeeds). UTF-16 without a
    BOM (SQL Server's and some Windows tools' exports) is told by its NUL bytes (`_bomless_utf16`).

    Raises ReadError("binary file ...") when the bytes contain NUL and are not UTF-16.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    if b"\x00" in data:
        if wide := _bomless_utf16(data[:_SNIFF_BYTES]):
            try:
                return data.decode(wide)
            except UnicodeDecodeError:
                pass
        raise ReadError("binary file (contains NUL bytes), not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    head = data[:_SNIFF_BYTES]
    cjk = _cjk_encoding(head)
    for encoding in ((cjk,) if cjk else ()) + _ansi_encodings(head):
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
        head = f.read(_SNIFF_BYTES)
    if head[:2] in (b"\xff\xfe", b"\xfe\xff") and _decodes(path, "utf-16"):
        return "utf-16"
    if any(b"\x00" in block for block in _byte_blocks(path)):
        if (wide := _bomless_utf16(head)) and _decodes(path, wide):
            return wide
        raise ReadError("binary file (contains NUL bytes), not text")
    if _decodes(path, "utf-8-sig"):
        return "utf-8-sig"
    cjk = _cjk_encoding(head)
    for encoding in ((cjk,) if cjk else ()) + _ansi_encodings(head):
        if _decodes(path, encoding):
            return encoding
    return "latin-1"


def _bomless_utf16(head: bytes) -> str | None:
    """The UTF-16 ("utf-16-le" or "utf-16-be") of a text without a BOM whose `head`'s NUL bytes are
    the high bytes of its code units: at least a tenth of the units (spaces, digits, Latin letters) carry
    one, nearly all on the same side, and what they spell has hardly any control characters. A
    binary file's NULs fall on both sides alike, and small 16-bit numbers read as controls; None."""
    units = len(head) // 2
    low, high = head[0:units * 2:2].count(0), head[1:units * 2:2].count(0)  # NULs at even, odd offsets
    for encoding, zeros, other in (("utf-16-le", high, low), ("utf-16-be", low, high)):
        if zeros >= units / 10 and other * 20 <= zeros:
            text = head[:units * 2].decode(encoding, "replace")
            return encoding if len(_CONTROLS.findall(text)) <= len(text) / 100 else None
    return None


_CONTROLS = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f]")


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


def short_reason(exc: BaseException, path: Path | None = None) -> str:
    """An exception as a one-line reason of at most 160 characters, for "corrupt DOCX: <reason>".
    With `path`, the file is named by its name alone where the library's message gives its full path
    (openpyxl: "could not read worksheets from /srv/…/uploads/…/x.xlsx"): the reason reaches API
    clients and app users, who have no business knowing where the server keeps its files."""
    text = str(exc)
    if path is not None:
        for form in sorted({str(path), str(Path(path).resolve())}, key=len, reverse=True):
            text = text.replace(form, Path(path).name)
    text = " ".join(text.split()) or type(exc).__name__
    if len(text) > 160:
        text = text[:157] + "..."
    return text

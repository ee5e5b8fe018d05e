"""Document readers: a file on disk -> `Extracted` (ordered text blocks with page and heading path).

    kind = detect_kind(path, head)      # from content: "pdf", "docx", ... or None
    extracted = read(path)              # or raises ReadError("encrypted PDF (needs a password)")

`read` does the checks every format shares (exists, not empty, not too big, a supported type, a
zip that does not explode), then calls the reader registered for the kind in `READERS`. PDF parsing
and OCR of images run in a child process (`python -m archivist.ingest.readers --worker pdf FILE`)
with time limits (before the first page, then per page) and an address-space limit, because a
hostile or broken PDF or image can make a native parser loop or allocate without bound. Every failure leaves `read` as a ReadError with a short reason.

From the shell: `python -m archivist.ingest.readers FILE` prints the blocks as JSON.
"""

from __future__ import annotations

import json
import os
import queue
import re
import stat
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterator

from archivist.records import Block, Extracted
from archivist.settings import python_module

from .readers_base import ReadError, clean, clean_code, clean_lines, short_reason, text_encoding
from .readers_html import read_html
from .readers_markdown import read_markdown
from .readers_text import TERMINAL_ESCAPES, read_csv, read_text, stream_csv
from .readers_docx import read_docx
from .readers_office import check_zip, ooxml_kind, read_pptx, read_xlsx
from .readers_pdf import read_image, read_pdf

__all__ = ["ReadError", "detect_kind", "read", "read_stream", "reader_version", "READERS", "LABELS", "READER_VERSIONS"]

# A kind's reader version, raised when its reader reads files already stored differently (other
# blocks, better text). Each document row keeps the version it was read with; ingesting an unchanged
# file whose row is older reads it again ("updated"), and its chunks whose text did not change keep
# their vectors. A kind not named here is at version 1.
#   html 2: tables whose rows are a <th> label and <td> values read as "Label: value"; tables
#           without a header row no longer take their first row for one; permalink marks dropped.
#   docx 2: nested tables, content controls and tracked insertions read; list numbers kept;
#           two-row headers joined ("2024 Hires"); a title row across a table is its caption.
#   xlsx 2: title rows above the header become the caption; merged values repeated down; numbers
#           as formatted ("25%"); uncalculated formulas as "=..."; hidden sheets marked.
#   pptx 2: a slide's text boxes read top to bottom, left to right.
#   pdf 2, image 2: a line's size is the one most of it is set in; near sizes are one heading
#           level; signs, formulas and diagrams head nothing; running headers that name the chapter
#           and the page, contents and index entries with dot leaders are dropped; TeX's
#           hyphenation is undone; a title repeated as the running header stays on page 1.
#   pdf 3, image 3: scans lying sideways or upside down (and phone photos with an EXIF
#           orientation) are turned upright before OCR; transparent and 16-bit images read on
#           white; two pages or columns side by side are read one after the other; lines are read
#           from the full-resolution page and word gaps found along a skewed line; PDF tables
#           ruled only under their header, kerned rows and text in columns that is no table.
#   html 3: ruby annotations (<rt>, <rp>: Japanese furigana) dropped, not run into the text. (Every
#           reader's text is now stored NFC, accents composed; only HTML is read again for it.)
#   html 4, markdown 3, docx 3: hidden elements (hidden, aria-hidden="true", inline display:none /
#           visibility:hidden) dropped, and Markdown's raw <script>, <style>, <template>, <noscript>,
#           and Word's hidden runs (w:vanish): text nobody sees on the page no longer answers questions.
#   text 2, markdown 2, csv 2: files in a Chinese, Japanese or Korean legacy encoding (Shift_JIS,
#           GBK, Big5, EUC) decoded in it, no longer as Windows-1252 mojibake (readers_base.decode_text).
#   html 5: a cell spanning rows (rowspan) is repeated down them, so the cells after it stay under
#           their headers (they had moved one column left); two or three leading rows of <th> cells
#           are one header ("2024 Hires"), no longer a header and a data row.
#   docx 4: text boxes read (once, after the paragraph they are anchored in); footnotes and endnotes
#           read after the paragraph that refers to them ("Footnote: ..."); the table of contents
#           and the index (styles "toc n", "TOC Heading", "index n") dropped, as in PDFs; a list
#           step deleted whole in tracked changes no longer counts in the numbers after it.
#   pdf 4: running headers and footers of two or three lines dropped whole (the lines inside the
#           outermost one that recur word for word at the same height in the page's top or bottom
#           tenth), and a two-page PDF's too (the same line at the same rank and height on both).
#           (Images, whose scans this reaches too, are not read again for it: OCR is slow.)
#   markdown 4: raw HTML tags (<dl><dt>, <kbd>, <br>, <details>) no longer stored as text; their content stays.
#   markdown 5: <script>, <style>, <template>, <noscript> hide only where they open an HTML block (in
#           prose they are words); indented code and <pre> show their tags as written; an element the
#           file never closes hides its own block, not the rest of the file (markdown 4 had lost every
#           section after "put it in a <script> tag"); a ">" in a quoted attribute and a tag over
#           two lines read as HTML does.
#   html 6: hidden content the page reveals on a click is kept (role="tabpanel" or "region", an id
#           that aria-controls or href="#id" names, a <details> body: FAQ answers, inactive tabs); a
#           table written all in <th> has one header row (only <thead> rows, or rows under a spanning
#           header cell, are joined); a rowspan ends with its <tbody>.
#   pdf 5: a bare number under a running header, not the page's first or last line, is content.
#           (Images, whose scans this reaches too, are not read again for it: OCR is slow.)
#   docx 5: the headers' and footers' text read, once per document ("Header: ...", "Footer: ..."),
#           page-number fields left out; styles based on "Heading n" and outline levels are headings;
#           text a character or paragraph style hides (Font > Hidden) is not read.
#   pptx 3: hidden shapes not read; a hidden slide's heading says so ("Backup (hidden slide)").
#   text 3, markdown 6, csv 3: files in Windows' Central European (1250: Polish, Czech) or Cyrillic
#           (1251) code page decoded in it, no longer as Windows-1252 mojibake ("Ka¿dy", "Èíñòðóêöèÿ").
#   text 4, csv 4: a short line that ends no sentence, before a paragraph, is a heading (no longer glued
#           onto the first sentence); a tab-separated .txt (Excel's "Unicode Text") is read as a .tsv
#           is; a line break inside a quoted cell is a space, no longer nothing ("Königsallee 52. Stock").
#   html 7, markdown 7, docx 6, text 5, pdf 6: read as before, chunked anew: a heading with no text of
#           its own opens the chunk of the section under it (chunking.py), no longer a chunk alone.
#           (Images are not read again for it: OCR is slow.)
#   html 8, markdown 8, docx 7, text 6, pdf 7, image 4: read as before, chunked anew: an empty section
#           opens the chunk of its sibling, a heading at a PDF page's foot the chunk of its text on the
#           next page, a document's last heading closes the chunk before: no chunk is only a title.
#           Scans are read again too (two chunking changes since image 3; scanned PDFs were already).
#   text 7: terminal formatting (a coloured log's escape sequences, overstrike) is dropped, no longer
#           stored as "[35m[K" around the words.
#   pdf 8: a minus sign (U+2212) reads as '-', and a code font's curly quotes as ' and ` (texinfo's
#           "${parameter:-word}", "[[ . =~ '\.' ]]"), as a user types them; prose keeps its quotes.
#   html 9: texinfo's HTML heads every section with the manual's title (<h1 class="settitle">), no
#           longer with its Top node's ("Bash Features"), which is a section under it.
#   markdown 9, csv 5: terminal formatting dropped as in text 7 (a CSV's before it is parsed).
#   pdf 9, image 5: a table header of two lines is one header ("Compress" over "usage": "Compress
#           usage"), no longer a line above the table that headed its rows; on a scan, a heading that
#           wraps is one heading (its lines measured a size apart had made two levels), and the usual
#           size is that of most characters, not of most lines (a table's cells had made prose headings).
#   html 10: navigation no <nav> marks (role="navigation"; a class or id of menu, nav, toc, breadcrumb… all of
#           whose words are link text: SQLite's menu bar and contents) and a <select>'s options are dropped.
#   pdf 10, image 6: a scan's section number keeps its space before the heading ("2.6. RECOVERING", no
#           longer "2.6.RECOVERING"); a text line cut at a wide gap (columns) is boxed to its last letter.
READER_VERSIONS = {"html": 10, "pdf": 10, "image": 6, "docx": 7, "xlsx": 2, "pptx": 3, "text": 7, "markdown": 9, "csv": 5}


def reader_version(kind: str | None) -> int:
    """The current reader version of files of `kind` (READER_VERSIONS)."""
    return READER_VERSIONS.get(kind or "", 1)

MB = 1024 * 1024
HEAD_BYTES = 8192  # how much of the file detect_kind sees
PDF_MEMORY_MB = 2048  # memory a reader child may add on top of its interpreter
# A paged reader (OCR) checks its resident memory against PDF_MEMORY_MB after every page; its
# address space, which ONNX Runtime's OCR grows by ~31 MB every 5-6 pages without using it
# (bench/RESULTS.md 12b), is capped at this many times that, against a single huge allocation.
PAGED_ADDRESS_SPACE = 3
# A CSV larger than this is read and ingested a group of rows at a time (`read_stream`), so a file of
# a million rows is never held whole; smaller ones are read at once, as every other kind.
STREAM_ABOVE_MB = 1
STREAM_GROUP_CHARS = 1 << 20  # characters of row text per group: what a streamed CSV holds at once
SANDBOX_ABOVE_MB = 4  # files of any kind larger than this are read in the bounded child as well
ZIP_KINDS = ("docx", "xlsx", "pptx")
LABELS = {
    "pdf": "PDF", "docx": "DOCX", "xlsx": "XLSX", "pptx": "PPTX",
    "html": "HTML", "markdown": "Markdown", "text": "text file", "csv": "CSV", "image": "image",
}
# Images read by OCR, by their first bytes (WebP is RIFF....WEBP).
_IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM", b"GIF87a", b"GIF89a")

# ---------------------------------------------------------------------------------------------
# Detection

# Binary signatures we recognise only to say what an unsupported file is.
_SIGNATURES: list[tuple[bytes, str]] = [
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an OLE2 container (legacy or encrypted Office file)"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"BM", "a BMP image"),
    (b"RIFF", "a RIFF media file (WAV/AVI/WebP)"),
    (b"ID3", "an MP3 audio file"),
    (b"OggS", "an Ogg media file"),
    (b"fLaC", "a FLAC audio file"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"PK\x05\x06", "an empty ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\x7fELF", "an ELF executable"),
    (b"MZ", "a Windows executable"),
    (b"\xca\xfe\xba\xbe", "a Mach-O or Java class file"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"{\\rtf", "an RTF document"),
    (b"%!PS", "a PostScript file"),
    (b"\x00asm", "a WebAssembly module"),
]
_HTML_START = re.compile(
    rb"^(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)\b",
    re.I | re.S,
)
_TEXT_EXTENSIONS = {
    ".md": "markdown", ".markdown": "markdown", ".mdown": "markdown", ".mkd": "markdown",
    ".csv": "csv", ".tsv": "csv",
    ".html": "html", ".htm": "html", ".xhtml": "html",
    ".txt": "text", ".text": "text",
}
_TEXT_KINDS = frozenset(_TEXT_EXTENSIONS.values())  # kinds read by decoding the bytes as text
_ZIP_EXTENSIONS = {".docx": "docx", ".xlsx": "xlsx", ".pptx": "pptx", ".docm": "docx", ".xlsm": "xlsx", ".pptm": "pptx"}
# The extensions that decide how a file is read (detect_kind falls back on them): a cleaned file name
# keeps them (uploads.clean_filename), or a CSV named " .csv" is read as plain text.
KIND_EXTENSIONS = frozenset(_TEXT_EXTENSIONS) | frozenset(_ZIP_EXTENSIONS)


# Terminal formatting, which real text files hold and binary data does not: ANSI escape sequences
# (colour in logs, `script` typescripts) and overstrike ("N\bN" bold, "_\bN" underline: a man page
# saved with `man ls > ls.txt`). Measured on the first HEAD_BYTES: coloured `grep`/`ls` output and
# overstruck man pages are 9-12% such control bytes, every file of /usr/share/doc (12,424, .gz ones
# unpacked) at most 2.4%, and 0.7% once terminal formatting is left out (a gnuplot example's data).
_TERMINAL = re.compile(TERMINAL_ESCAPES.encode() + rb"|(?<=[^\x00-\x1f])\x08(?=[^\x00-\x1f])")


def _controls(head: bytes) -> int:
    """The control bytes of `head` that text does not hold: not tab, line feed, form feed, carriage
    return, nor part of terminal formatting (_TERMINAL)."""
    return sum(1 for b in _TERMINAL.sub(b"", head) if b < 32 and b not in (9, 10, 12, 13))


def _looks_binary(head: bytes) -> bool:
    """True when the first bytes are not text: a NUL, or control characters past 5% of them (eight at
    least), seven times what real text was measured to hold (_TERMINAL). UTF-16 text (with a BOM)
    counts as text."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return False
    if b"\x00" in head:
        return True
    return _controls(head) > max(8, len(head) // 20)


def _check_text(path: Path, head: bytes) -> None:
    """Raises ReadError when a file of a text kind (`head`: its first bytes) is binary data: NUL
    bytes that are not UTF-16 text (the text readers' own rule, `text_encoding`), or control
    characters past `_looks_binary`'s share; the readers would store those as text. UTF-16 text
    is checked by its characters (one byte each here), so garbage behind a byte order mark, which
    `_looks_binary` takes for text, is refused too."""
    unit = "bytes"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in head:
        encoding = text_encoding(path)  # raises for NUL bytes that are not UTF-16
        if encoding.startswith("utf-16"):
            head, unit = head.decode(encoding, "ignore").encode("latin-1", "replace"), "characters"
        else:  # 0xFF 0xFE that marks no UTF-16 text: the bytes are checked as they are
            head = head[2:]
    if _looks_binary(head):
        raise ReadError(f"binary file ({_controls(head)} of its first {len(head)} {unit} are control "
                        f"characters), not text")


def _looks_text(head: bytes) -> bool:
    """A file starting with "BM" may be text ("BMW fleet report"): printable bytes, no NUL."""
    return not _looks_binary(head)


def describe(head: bytes) -> str:
    """What the first bytes of an unsupported file look like, e.g. "a PNG image"."""
    if head[4:8] == b"ftyp":
        return "an MP4/MOV video or HEIC image"
    for magic, what in _SIGNATURES:
        if head.startswith(magic):
            return what
    return "binary data" if _looks_binary(head) else "text"


def detect_kind(path: Path, head: bytes) -> str | None:
    """The reader kind for a file, decided by its content.

    `head` is the start of the file (a few KB). PDF by its %PDF- marker (allowed within the first
    1 KB, as readers tolerate leading junk); DOCX/XLSX/PPTX by the members of the zip; HTML by a
    leading <!doctype html>/<html>/<head>/<body>. Text that is not HTML by content is typed by its
    extension (markdown, csv, html fragments), else "text". A zip that cannot be opened
    (truncated) falls back to its extension so the reader can report it as a corrupt DOCX, etc.
    PNG, JPEG, TIFF, BMP, WebP and GIF by their signatures are "image".
    Returns one of pdf, docx, xlsx, pptx, html, markdown, text, csv, image; None = unsupported.
    """
    suffix = path.suffix.lower()
    if b"%PDF-" in head[:1024]:
        return "pdf"
    if head.startswith(_IMAGE_SIGNATURES) and not (head.startswith(b"BM") and suffix != ".bmp" and _looks_text(head)):
        return "image"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as zf:
                return ooxml_kind(set(zf.namelist()))
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            return _ZIP_EXTENSIONS.get(suffix)
    if any(head.startswith(magic) for magic, _ in _SIGNATURES) or head[4:8] == b"ftyp":
        return None
    if _looks_binary(head):
        # A .txt/.md/.csv with binary content is reported by its reader as "binary file".
        return _TEXT_EXTENSIONS.get(suffix)
    if _HTML_START.match(head):
        return "html"
    return _TEXT_EXTENSIONS.get(suffix, "text")


def check_kind(path: Path, head: bytes, max_unzipped_mb: int) -> tuple[str, int]:
    """The reader kind of the file at `path` (`head`: its first HEAD_BYTES) and the bytes a
    DOCX/XLSX/PPTX expands to (0 for other kinds), checked before any parser sees it. The one home
    of that check: `read` (a folder's files) and uploads.check_content (an upload, refused before it
    is stored) both call it, so the app, the API and the CLI name the same reason for the same file.
    Raises ReadError: an unsupported type (an encrypted or legacy Office file said to be one, with
    what to do), binary data under a text extension (UTF-16 without a BOM is text), a corrupt,
    encrypted or zip-bomb DOCX/XLSX/PPTX."""
    kind = detect_kind(path, head)
    if kind is None:
        if head.startswith(b"\xd0\xcf\x11\xe0"):
            raise ReadError(
                "encrypted or legacy Office file (an OLE2 container: a password-protected "
                ".docx/.xlsx/.pptx or an old .doc/.xls/.ppt); save it unprotected as .docx/.xlsx/.pptx"
            )
        what = describe(head)
        if what == "a ZIP archive":
            what = "a ZIP archive that is not a DOCX, XLSX or PPTX"
        raise ReadError(f"unsupported file type (looks like {what})")
    if kind in _TEXT_KINDS:
        _check_text(path, head)
    return kind, check_zip(path, LABELS[kind], max_unzipped_mb) if kind in ZIP_KINDS else 0


# ---------------------------------------------------------------------------------------------
# The registry and the entry point

READERS: dict[str, Callable[..., Extracted]] = {
    "pdf": read_pdf,
    "image": read_image,
    "docx": read_docx,
    "xlsx": read_xlsx,
    "pptx": read_pptx,
    "html": read_html,
    "markdown": read_markdown,
    "text": read_text,
    "csv": read_csv,
}
# Kinds whose parser is native code we do not trust with hostile input: run them in a child
# process with a time and memory limit. Files of the other kinds go there too once they are larger
# than SANDBOX_ABOVE_MB, or a DOCX/XLSX/PPTX once its XML expands past it (a 0.75 MB spreadsheet of
# 40,000 rows holds 9.7 MB of XML), where a parse could take long or much memory; smaller ones (nearly all)
# are read in-process, which costs no process start.
SANDBOXED = {"pdf", "image"}
# Kinds read in this process whatever their size: Python's csv module parses in linear time and
# memory, while the child would send a big CSV back as a JSON object per row (a million rows
# cost the parent 0.8 GB for that alone).
IN_PROCESS = {"csv"}
# Kinds whose reader takes the page options (ocr, max_pages, on_page).
PAGED = {"pdf", "image"}


def read(path: Path, *, max_mb: int = 200, max_unzipped_mb: int = 500, timeout: float = 120.0,
         ocr: str = "auto", page_timeout: float = 60.0, max_pages: int = 2000) -> Extracted:
    """Read one document into ordered blocks.

    path: the file. max_mb: refuse files larger than this. max_unzipped_mb: refuse DOCX/XLSX/PPTX
    whose members add up to more (zip bombs). timeout: seconds a sandboxed parse (a PDF, or any
    file over SANDBOX_ABOVE_MB, on disk or unzipped) may take before its first page is done.
    ocr: auto | always | never (scans and images, see readers_pdf). page_timeout: seconds each
    further page may take (OCR is ~2.5 s a page). max_pages: refuse PDFs and TIFFs with more pages.
    Returns Extracted with non-empty, whitespace-normalized blocks and `kind` set.
    Raises ReadError with a short reason (never another exception type): empty file, too large,
    unsupported type, corrupt, encrypted, zip bomb, no text layer, took too long.
    """
    path = Path(path)
    kind = None
    try:
        if not path.exists():
            raise ReadError("file not found")
        if path.is_dir():
            raise ReadError("is a directory, not a file")
        if not stat.S_ISREG(path.stat().st_mode):  # a FIFO or device would block the read below
            raise ReadError("not a regular file")
        size = path.stat().st_size
        if size == 0:
            raise ReadError("empty file (0 bytes)")
        if size > max_mb * MB:
            raise ReadError(f"file too large: {size / MB:.1f} MB (limit {max_mb} MB)")
        with path.open("rb") as f:
            head = f.read(HEAD_BYTES)
        kind, unzipped = check_kind(path, head, max_unzipped_mb)
        if kind in SANDBOXED or (kind not in IN_PROCESS and max(size, unzipped) > SANDBOX_ABOVE_MB * MB):
            options = {"ocr": ocr, "max_pages": max_pages} if kind in PAGED else {}
            extracted = _read_sandboxed(path, kind, timeout, options, page_timeout)
        else:
            extracted = READERS[kind](path)
    except ReadError:
        raise
    except MemoryError:
        raise ReadError("ran out of memory while reading") from None
    except RecursionError:
        raise ReadError(f"corrupt {LABELS.get(kind, 'file')}: nested too deeply to read") from None
    except PermissionError:
        raise ReadError("permission denied") from None
    except Exception as exc:  # any library error on bad input is a corrupt file, not a crash
        raise ReadError(f"corrupt {LABELS.get(kind, 'file')}: {short_reason(exc, path)}") from exc

    # The contract holds whatever a reader did: stripped, non-empty, whitespace normalized
    # (newlines kept only where they carry meaning, in code and slides).
    normalize = {"code": clean_code, "slide": clean_lines}
    blocks = []
    for block in extracted.blocks:
        block.text = normalize.get(block.kind, clean)(block.text)
        if block.text:
            blocks.append(block)
    if not blocks:
        raise ReadError("empty file (no text)")
    extracted.blocks = blocks
    extracted.kind = kind
    return extracted


def read_stream(path: Path, *, max_mb: int = 200, group_chars: int | None = None) -> Iterator[list[Block]] | None:
    """A CSV larger than STREAM_ABOVE_MB as groups of blocks of about `group_chars` (default
    STREAM_GROUP_CHARS) characters, read
    from the file as they are asked for (`readers_text.stream_csv`); None for any other file, which
    `read` reads (and names the problem of, if it has one).
    Raises ReadError for a CSV it would stream that is binary, corrupt or has no text.
    """
    path = Path(path)
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode) or not STREAM_ABOVE_MB * MB < st.st_size <= max_mb * MB:
            return None
        with path.open("rb") as f:
            head = f.read(HEAD_BYTES)
        if detect_kind(path, head) != "csv":
            return None
        _check_text(path, head)
        return stream_csv(path, group_chars or STREAM_GROUP_CHARS)
    except ReadError:
        raise
    except PermissionError:
        raise ReadError("permission denied") from None
    except OSError:
        return None  # `read` says what is wrong with it


def _read_sandboxed(path: Path, kind: str, timeout: float, options: dict | None = None,
                    page_timeout: float = 60.0) -> Extracted:
    """Run READERS[kind] in `python -m archivist.ingest.readers --worker KIND FILE` and rebuild the
    Extracted from its JSON. The child limits its own address space (PDF_MEMORY_MB above its
    start-up size) and reports each page it finishes; it is killed when `timeout` seconds pass
    before its first page is done, or `page_timeout` seconds pass with no further page (a 100-page
    scan may take minutes, one stuck page may not). Raises ReadError on timeout, crash or error."""
    cmd = [*python_module("archivist.ingest.readers"), "--worker", kind,
           "--options", json.dumps(options or {}), "--", str(path)]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
        try:
            reply, pages_done = _child_reply(proc, timeout, page_timeout)
        except TimeoutError:
            proc.kill()
            proc.wait()
            raise ReadError(f"took longer than {timeout:g} s to read ({LABELS[kind]} parsing stopped)") from None
        except _PageTimeout as stuck:
            proc.kill()
            proc.wait()
            raise ReadError(f"page {stuck.page} took longer than {page_timeout:g} s to read "
                            f"({LABELS[kind]} reading stopped)") from None
        proc.wait()
        err.seek(0)
        stderr = err.read()
    try:
        reply = json.loads(reply)
    except (TypeError, ValueError):
        how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit code {proc.returncode}"
        detail = stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        where = f" on page {pages_done + 1}" if kind in PAGED else ""
        raise ReadError(
            f"{LABELS[kind]} reader crashed{where} ({how}): the file is damaged or needs more than "
            f"{PDF_MEMORY_MB} MB of memory {detail[0][:120]}".rstrip()
        ) from None
    if not reply.get("ok"):
        raise ReadError(reply.get("error") or "unknown error")
    return _extracted_from_dict(reply["extracted"])


class _PageTimeout(Exception):
    def __init__(self, page: int):
        self.page = page


def _child_reply(proc, timeout: float, page_timeout: float) -> tuple[bytes | None, int]:
    """Read the child's stdout: "P <n>" heartbeat lines, then one JSON reply line.
    Returns (reply or None when the child died, pages done). Raises TimeoutError before the first
    page, _PageTimeout(page) after it."""
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline, pages, reply = time.monotonic() + timeout, 0, None
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            if pages:
                raise _PageTimeout(pages + 1) from None
            raise TimeoutError from None
        if line is None:
            return reply, pages
        if line.startswith(b"P "):
            pages = int(line[2:])
            deadline = max(deadline, time.monotonic() + page_timeout)
        else:
            reply = line


def _extracted_from_dict(data: dict) -> Extracted:
    blocks = [Block(b["text"], b["page"], tuple(b["heading"]), b["kind"], tuple(tuple(x) for x in b.get("boxes", ())))
              for b in data["blocks"]]
    ocr = {int(page): conf for page, conf in (data.get("ocr") or {}).items()}
    return Extracted(blocks, pages=data["pages"], title=data["title"], kind=data["kind"], ocr=ocr)


def _limit_address_space(extra_mb: int) -> None:
    """Cap this process's address space at its current size plus `extra_mb` (Linux; no-op elsewhere).
    Relative to the current size so that whatever the package imports at start-up does not count."""
    try:
        import resource

        with open("/proc/self/statm") as f:
            current = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        limit = current + extra_mb * MB
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, OSError, ValueError):
        pass


def _resident() -> int:
    """This process's resident memory in bytes (Linux /proc; 0 elsewhere, which disables the check)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _worker(kind: str, path: str, options: dict) -> int:
    """Child side of _read_sandboxed: print "P <n>" as each page is done, then {"ok": true,
    "extracted": ...} or {"ok": false, "error": reason} as one JSON line on stdout."""
    _limit_address_space(PDF_MEMORY_MB * (PAGED_ADDRESS_SPACE if kind in PAGED else 1))
    done, start = [0], _resident()  # pages finished (a failure names the page after them)

    def on_page(number: int) -> None:
        if _resident() - start > PDF_MEMORY_MB * MB:
            raise MemoryError(f"page {number}")  # reported as "page N needs more than ..."
        done[0] = number
        sys.stdout.write(f"P {number}\n")
        sys.stdout.flush()

    if kind in PAGED:
        options = {**options, "on_page": on_page}
    try:
        reply = {"ok": True, "extracted": asdict(READERS[kind](Path(path), **options))}
    except ReadError as exc:
        reply = {"ok": False, "error": str(exc)}
    except MemoryError:
        where = f"page {done[0] + 1} " if kind in PAGED else ""
        reply = {"ok": False, "error": f"{where}needs more than {PDF_MEMORY_MB} MB of memory (the reader's limit)"}
    except Exception as exc:  # noqa: BLE001 - reported to the parent as a reason
        reply = {"ok": False, "error": f"corrupt {LABELS[kind]}: {short_reason(exc, Path(path))}"}
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m archivist.ingest.readers FILE...`: print each file's Extracted as JSON (stdout);
    reasons for unreadable files go to stderr and make the exit code 1."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m archivist.ingest.readers", description=main.__doc__)
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--max-mb", type=int, default=200)
    parser.add_argument("--max-unzipped-mb", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--ocr", choices=("auto", "always", "never"), default="auto")
    parser.add_argument("--worker", metavar="KIND", help=argparse.SUPPRESS)  # internal: sandboxed child
    parser.add_argument("--options", default="{}", help=argparse.SUPPRESS)  # internal: the child's reader options
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args.worker, str(args.files[0]), json.loads(args.options))
    status = 0
    for file in args.files:
        try:
            extracted = read(file, max_mb=args.max_mb, max_unzipped_mb=args.max_unzipped_mb, timeout=args.timeout,
                             ocr=args.ocr)
        except ReadError as exc:
            print(f"{file}: {exc}", file=sys.stderr)
            status = 1
            continue
        print(json.dumps({"file": str(file), **asdict(extracted)}, ensure_ascii=False, indent=1))
    return status


if __name__ == "__main__":
    sys.exit(main())

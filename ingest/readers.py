"""Document readers: a file on disk -> `Extracted` (ordered text blocks with page and heading path).

    kind = detect_kind(path, head)      # from content: "pdf", "docx", ... or None
    extracted = read(path)              # or raises ReadError("encrypted PDF (needs a password)")

`read` does the checks every format shares (exists, not empty, not too big, a supported type, a
zip that does not explode), then calls the reader registered for the kind in `READERS`. PDF parsing
runs in a child process (`python -m archivist.ingest.readers --worker pdf FILE`) with a time limit
and an address-space limit, because a hostile or broken PDF can make a native parser loop or
allocate without bound. Every failure leaves `read` as a ReadError with a short reason.

From the shell: `python -m archivist.ingest.readers FILE` prints the blocks as JSON.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Callable, NamedTuple

from archivist.records import Block, Extracted

from .readers_base import HeadingPath, ReadError, clean, clean_code, clean_lines, short_reason
from .readers_markup import read_csv, read_html, read_markdown, read_text
from .readers_office import check_zip, ooxml_kind, read_docx, read_pptx, read_xlsx

__all__ = ["ReadError", "detect_kind", "read", "READERS", "LABELS"]

MB = 1024 * 1024
HEAD_BYTES = 8192  # how much of the file detect_kind sees
PDF_MEMORY_MB = 2048  # address space a reader child may add on top of its interpreter
SANDBOX_ABOVE_MB = 4  # files of any kind larger than this are read in the bounded child as well
ZIP_KINDS = ("docx", "xlsx", "pptx")
LABELS = {
    "pdf": "PDF", "docx": "DOCX", "xlsx": "XLSX", "pptx": "PPTX",
    "html": "HTML", "markdown": "Markdown", "text": "text file", "csv": "CSV",
}

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
_ZIP_EXTENSIONS = {".docx": "docx", ".xlsx": "xlsx", ".pptx": "pptx", ".docm": "docx", ".xlsm": "xlsx", ".pptm": "pptx"}


def _looks_binary(head: bytes) -> bool:
    """True when the first bytes are not text: a NUL, or many control characters.
    UTF-16 text (with a BOM) counts as text."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return False
    if b"\x00" in head:
        return True
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    return controls > max(8, len(head) // 20)


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
    Returns one of pdf, docx, xlsx, pptx, html, markdown, text, csv; None = unsupported.
    """
    suffix = path.suffix.lower()
    if b"%PDF-" in head[:1024]:
        return "pdf"
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


# ---------------------------------------------------------------------------------------------
# PDF (runs in the child process; see _read_sandboxed)


class _Line(NamedTuple):
    """One text line of a PDF page; geometry in PDF units (y grows upwards), 0.0 when unknown."""

    text: str
    size: float  # the tallest loose font box on the line: a proxy for the font size
    top: float
    bottom: float


def _page_lines(textpage) -> list[_Line]:
    """The text lines of one page, in pdfium's reading order.

    pdfium already breaks lines with generated \r\n characters; the loose character boxes (font
    ascent to descent) give the vertical gaps and sizes that separate paragraphs and headings.
    Boxes are taken for a sample of each line's characters (the first few, then every 8th): enough
    for the line's extent, at a fraction of the cost of one native call per character.
    """
    import pypdfium2.raw as pdfium_c

    count = max(textpage.count_chars(), 0)
    handle = textpage.raw  # the bare pointer: ctypes calls skip the wrapper's attribute lookup
    text = textpage.get_text_range(0, count) if count else ""
    if len(text) != count:  # undecodable characters: rebuild so string index == char index
        text = "".join(
            chr(c) if 0 < c < 0x110000 and not 0xD800 <= c < 0xE000 else "\x00"
            for c in (pdfium_c.FPDFText_GetUnicode(handle, i) for i in range(count))
        )
    rect = pdfium_c.FS_RECTF()
    lines: list[_Line] = []
    start = 0
    for raw in text.split("\n"):
        offset, start = start, start + len(raw) + 1
        if not raw.strip():
            continue
        top, bottom, size = float("-inf"), float("inf"), 0.0
        for k in [*range(min(len(raw), 6)), *range(6, len(raw), 8)]:
            if raw[k].isspace() or raw[k] == "\x00":
                continue
            if pdfium_c.FPDFText_GetLooseCharBox(handle, offset + k, rect):
                top, bottom = max(top, rect.top), min(bottom, rect.bottom)
                size = max(size, rect.top - rect.bottom)
        line = raw.replace("\r", "").replace("\x00", "")
        lines.append(_Line(line, size, top, bottom) if size else _Line(line, 0.0, 0.0, 0.0))
    return lines


def _join_lines(lines: list[str]) -> str:
    """Lines of one paragraph -> one string. pdfium marks a hyphen at a line end as \\x02 (or
    U+FFFE); it is kept as "-" and joined without a space, so codes like NW-4410 survive a break."""
    out = ""
    for line in lines:
        line = line.strip()
        if out.endswith(("\x02", "\ufffe")):
            out = out[:-1] + "-" + line
        else:
            out = f"{out} {line}" if out else line
    return clean(out.replace("\x02", "-").replace("\ufffe", "-"))


def _furniture_key(text: str) -> str:
    return re.sub(r"\d+", "#", clean(text))


def _repeated_furniture(pages: list[list[_Line]]) -> set[str]:
    """Running headers/footers: first or last lines that recur (digits ignored) on most pages."""
    if len(pages) < 3:
        return set()
    counts: dict[str, int] = {}
    for lines in pages:
        # Only short lines: a long first line that recurs is content (or a test file), not a header.
        for key in {_furniture_key(line.text) for line in lines[:1] + lines[-1:] if len(line.text) <= 100}:
            counts[key] = counts.get(key, 0) + 1
    return {key for key, n in counts.items() if n >= 0.6 * len(pages)}


def _pdf_blocks(pages: list[list[_Line]]) -> list[Block]:
    """Lines of every page -> paragraph and heading Blocks.

    The body size is the size carrying the most characters; lines at least 15% larger (and short)
    are headings, bigger = outer level. A paragraph ends where the vertical gap exceeds the usual
    line gap by half a line, where the size changes, or where the text jumps up (a new column).
    """
    weight: dict[float, int] = {}
    for line in (line for lines in pages for line in lines):
        weight[round(line.size, 1)] = weight.get(round(line.size, 1), 0) + len(line.text)
    body = max(weight, key=weight.get) if weight else 0.0
    heading_sizes = {
        round(line.size, 1) for lines in pages for line in lines
        if body and line.size >= body * 1.15 and len(line.text) <= 200
    }
    level_of = {size: min(i + 1, 6) for i, size in enumerate(sorted(heading_sizes, reverse=True))}
    # The usual gap between the lines of one paragraph: a low quantile of the body-line gaps.
    gaps = sorted(
        prev.bottom - cur.top
        for lines in pages for prev, cur in zip(lines, lines[1:])
        if body and round(prev.size, 1) == round(cur.size, 1) == body and prev.bottom >= cur.top
    )
    usual_gap = gaps[len(gaps) // 4] if gaps else 0.0
    furniture = _repeated_furniture(pages)

    headings = HeadingPath()
    blocks: list[Block] = []
    for number, lines in enumerate(pages, 1):
        para: list[str] = []  # lines of the paragraph being built
        title: list[str] = []  # lines of the heading being built (a heading may wrap)
        level = None
        prev = None

        def flush() -> None:
            if title:
                text = _join_lines(title)
                blocks.append(Block(text, page=number, heading=headings.enter(level, text), kind="heading"))
                title.clear()
            if para:
                blocks.append(Block(_join_lines(para), page=number, heading=headings.path))
                para.clear()

        for line in lines:
            if line in (lines[0], lines[-1]) and _furniture_key(line.text) in furniture:
                continue
            line_level = level_of.get(round(line.size, 1))
            if line_level is not None:
                if not (title and line_level == level):
                    flush()
                level = line_level
                title.append(line.text)
            else:
                new_paragraph = bool(title) or prev is None or not line.size
                if not new_paragraph:
                    gap = prev.bottom - line.top
                    new_paragraph = (
                        abs(line.size - prev.size) > 0.15 * line.size  # font size changed
                        or gap < -line.size  # moved up the page: a new column or text box
                        or gap > usual_gap + 0.5 * line.size  # more room than between lines of one paragraph
                    )
                if new_paragraph:
                    flush()
                para.append(line.text)
            prev = line
        flush()
    return [b for b in blocks if b.text]


def read_pdf(path: Path) -> Extracted:
    """PDF via pypdfium2, in this process (read() calls it inside the time/memory-limited child).

    Text per page, split into paragraphs and headings by layout (see _pdf_blocks); running
    headers/footers repeated on most pages are dropped. page = 1-based page number; the title is
    the document's metadata title, else its first heading.
    Raises ReadError: "encrypted PDF (needs a password)", "corrupt PDF: ...", "no text layer (scanned PDF?)".
    """
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    try:
        pdf = pdfium.PdfDocument(path)
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
        raise ReadError(f"corrupt PDF: {short_reason(exc)}") from None
    try:
        title = clean(pdf.get_metadata_dict().get("Title", "") or "") or None
        pages = []
        for index in range(len(pdf)):
            page = pdf[index]
            textpage = page.get_textpage()
            pages.append(_page_lines(textpage))
            textpage.close()
            page.close()
    finally:
        pdf.close()

    blocks = _pdf_blocks(pages)
    if not blocks:
        raise ReadError("no text layer (scanned PDF?)")
    if title is None:
        title = next((b.text for b in blocks if b.kind == "heading"), None)
    return Extracted(blocks, pages=len(pages), title=title, kind="pdf")


# ---------------------------------------------------------------------------------------------
# The registry and the entry point

READERS: dict[str, Callable[[Path], Extracted]] = {
    "pdf": read_pdf,
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
SANDBOXED = {"pdf"}


def read(path: Path, *, max_mb: int = 200, max_unzipped_mb: int = 500, timeout: float = 120.0) -> Extracted:
    """Read one document into ordered blocks.

    path: the file. max_mb: refuse files larger than this. max_unzipped_mb: refuse DOCX/XLSX/PPTX
    whose members add up to more (zip bombs). timeout: seconds a sandboxed parse (a PDF, or any
    file over SANDBOX_ABOVE_MB, on disk or unzipped) may take.
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
        kind = detect_kind(path, head)
        if kind is None:
            what = describe(head)
            if head.startswith(b"\xd0\xcf\x11\xe0"):
                raise ReadError(
                    "encrypted or legacy Office file (an OLE2 container: a password-protected "
                    ".docx/.xlsx/.pptx or an old .doc/.xls/.ppt); save it unprotected as .docx/.xlsx/.pptx"
                )
            if what == "a ZIP archive":
                what = "a ZIP archive that is not a DOCX, XLSX or PPTX"
            raise ReadError(f"unsupported file type (looks like {what})")
        unzipped = check_zip(path, LABELS[kind], max_unzipped_mb) if kind in ZIP_KINDS else 0
        if kind in SANDBOXED or max(size, unzipped) > SANDBOX_ABOVE_MB * MB:
            extracted = _read_sandboxed(path, kind, timeout)
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
        raise ReadError(f"corrupt {LABELS.get(kind, 'file')}: {short_reason(exc)}") from exc

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


def _read_sandboxed(path: Path, kind: str, timeout: float) -> Extracted:
    """Run READERS[kind] in `python -m archivist.ingest.readers --worker KIND FILE` and rebuild the
    Extracted from its JSON. The child is killed after `timeout` seconds; it limits its own address
    space (PDF_MEMORY_MB above its start-up size). Raises ReadError on timeout, crash or error."""
    cmd = [sys.executable, "-m", "archivist.ingest.readers", "--worker", kind, "--", str(path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:  # run() has already killed and reaped the child
        raise ReadError(f"took longer than {timeout:g} s to read ({LABELS[kind]} parsing stopped)") from None
    try:
        reply = json.loads(proc.stdout)
    except ValueError:
        how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit code {proc.returncode}"
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        raise ReadError(
            f"{LABELS[kind]} reader crashed ({how}): the file is damaged or needs more than "
            f"{PDF_MEMORY_MB} MB of memory {detail[0][:120]}".rstrip()
        ) from None
    if not reply.get("ok"):
        raise ReadError(reply.get("error") or "unknown error")
    return _extracted_from_dict(reply["extracted"])


def _extracted_from_dict(data: dict) -> Extracted:
    blocks = [Block(b["text"], b["page"], tuple(b["heading"]), b["kind"]) for b in data["blocks"]]
    return Extracted(blocks, pages=data["pages"], title=data["title"], kind=data["kind"])


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


def _worker(kind: str, path: str) -> int:
    """Child side of _read_sandboxed: read and print {"ok": true, "extracted": ...} or
    {"ok": false, "error": reason} as one JSON document on stdout."""
    _limit_address_space(PDF_MEMORY_MB)
    try:
        reply = {"ok": True, "extracted": asdict(READERS[kind](Path(path)))}
    except ReadError as exc:
        reply = {"ok": False, "error": str(exc)}
    except MemoryError:
        reply = {"ok": False, "error": f"needs more than {PDF_MEMORY_MB} MB of memory"}
    except Exception as exc:  # noqa: BLE001 - reported to the parent as a reason
        reply = {"ok": False, "error": f"corrupt {LABELS[kind]}: {short_reason(exc)}"}
    sys.stdout.write(json.dumps(reply))
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
    parser.add_argument("--worker", metavar="KIND", help=argparse.SUPPRESS)  # internal: sandboxed child
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args.worker, str(args.files[0]))
    status = 0
    for file in args.files:
        try:
            extracted = read(file, max_mb=args.max_mb, max_unzipped_mb=args.max_unzipped_mb, timeout=args.timeout)
        except ReadError as exc:
            print(f"{file}: {exc}", file=sys.stderr)
            status = 1
            continue
        print(json.dumps({"file": str(file), **asdict(extracted)}, ensure_ascii=False, indent=1))
    return status


if __name__ == "__main__":
    sys.exit(main())

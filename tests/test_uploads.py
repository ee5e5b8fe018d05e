"""Upload hardening: hostile names, type by content, size and zip-bomb limits, no overwrites,
nothing left behind on refusal, and the PDF reader's time limit."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

from archivist.ingest.uploads import MAX_NAME_BYTES, UploadError, clean_filename, remove_upload, save_upload

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"


@pytest.mark.parametrize("claimed,clean", [
    ("report.pdf", "report.pdf"),
    ("../../etc/passwd", "passwd"),
    ("/etc/shadow", "shadow"),
    ("C:\\fakepath\\Q3 budget.xlsx", "Q3 budget.xlsx"),
    ("..\\..\\windows\\win.ini", "win.ini"),
    ("..", "upload"),
    ("", "upload"),
    ("...", "upload"),
    (".bashrc", "bashrc"),
    ("notes.md.", "notes.md"),
    ("new\nline\x00\x07.txt", "new line.txt"),
    ("invoice\u202efdp.exe", "invoicefdp.exe"),  # a bidi override would show it as "invoiceexe.pdf"
    ("zero\u200bwidth.md", "zerowidth.md"),
    ("a<b>c:d\"e|f?g*h.txt", "a_b_c_d_e_f_g_h.txt"),
    ("CON", "_CON"),
    ("con.txt", "_con.txt"),
    ("LPT1.tar.gz", "_LPT1.tar.gz"),
    ("CONSOLE.txt", "CONSOLE.txt"),
    ("  many   spaces\tinside .md", "many spaces inside .md"),
    ("Cafe\u0301.md", "Café.md"),  # NFC
])
def test_clean_filename(claimed, clean):
    assert clean_filename(claimed) == clean


def test_clean_filename_bounds_length_and_keeps_extension():
    long = clean_filename("é" * 300 + ".docx")
    assert long.endswith(".docx") and len(long.encode()) <= MAX_NAME_BYTES
    assert long[:-5] == "é" * ((MAX_NAME_BYTES - 5) // 2)
    odd = clean_filename("x" * 300 + "." + "y" * 40)  # an "extension" that long is not one
    assert len(odd.encode()) == MAX_NAME_BYTES and odd.startswith("xxx")


def test_save_upload_stores_under_content_hash_and_never_overwrites(ws):
    p1, n1 = save_upload(ws, "../notes.md", b"# Notes\n\nfirst version\n")
    p2, n2 = save_upload(ws, "notes.md", b"# Notes\n\nsecond version\n")
    p3, n3 = save_upload(ws, "/tmp/notes.md", b"# Notes\n\nfirst version\n")
    assert n1 == n2 == n3 == "notes.md"
    assert p1 != p2 and p1 == p3  # same bytes, same name: same file; different bytes: another folder
    assert p1.read_bytes() == b"# Notes\n\nfirst version\n" and p2.read_bytes() == b"# Notes\n\nsecond version\n"
    uploads = (ws.home / "uploads").resolve()
    for p in (p1, p2):
        assert p.resolve().parent.parent == uploads and len(p.parent.name) == 16
    assert not [f for f in uploads.rglob("*") if f.name.startswith(".part-")]
    assert remove_upload(ws, p2) and not p2.parent.exists()
    with pytest.raises(ValueError, match="not an upload"):
        remove_upload(ws, ws.home / "archivist.db")


def test_save_upload_streams_and_enforces_the_size_limit(ws):
    path, _ = save_upload(ws, "big.txt", io.BytesIO(b"word " * 400_000), max_mb=2)  # 2.0 MB exactly... under
    assert path.stat().st_size == 2_000_000
    with pytest.raises(UploadError, match=r"big\.txt: file too large: more than 1 MB"):
        save_upload(ws, "big.txt", io.BytesIO(b"word " * 400_000), max_mb=1)
    with pytest.raises(UploadError, match=r"file too large: 1\.9 MB \(limit 1 MB\)"):
        save_upload(ws, "big.txt", b"word " * 400_000, max_mb=1)
    with pytest.raises(UploadError, match="empty file"):
        save_upload(ws, "empty.md", b"")
    _assert_nothing_left(ws, keep={path})


def _assert_nothing_left(ws, keep=()):
    files = {p for p in (ws.home / "uploads").rglob("*") if p.is_file()}
    assert files == set(keep)


def test_type_comes_from_content_not_extension(ws):
    mp3 = b"ID3\x03\x00" + os.urandom(200)  # (a PNG is an image now, read by OCR)
    with pytest.raises(UploadError, match=r"holiday\.pdf: unsupported file type \(looks like an MP3 audio file\)"):
        save_upload(ws, "holiday.pdf", mp3)
    with pytest.raises(UploadError, match="looks like an ELF executable"):
        save_upload(ws, "readme.txt", b"\x7fELF" + bytes(300))
    with pytest.raises(UploadError, match=r"notes\.txt: binary file \(contains NUL bytes\), not text"):
        save_upload(ws, "notes.txt", bytes(range(256)) * 4)
    with pytest.raises(UploadError, match="not a DOCX, XLSX or PPTX"):
        save_upload(ws, "letter.docx", _zip({"hello.txt": b"hi"}))
    _assert_nothing_left(ws)
    # A real PDF named .txt is kept (and will be read as a PDF), a real DOCX named .pdf likewise.
    from archivist.ingest.readers import read

    pdf_path, _ = save_upload(ws, "handbook.txt", (SAMPLES / "employee-handbook.pdf").read_bytes())
    assert read(pdf_path).kind == "pdf"
    docx_path, name = save_upload(ws, "policy.pdf", (SAMPLES / "travel-expense-policy.docx").read_bytes())
    assert name == "policy.pdf" and read(docx_path).kind == "docx"


def _zip(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for n, data in members.items():
            zf.writestr(n, data)
    return buf.getvalue()


def test_zip_bombs_are_refused_at_upload(ws):
    bomb = _zip({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w:document/>",
                 "word/media/zeros.bin": bytes(64 * 1024 * 1024)})
    assert len(bomb) < 200_000
    ws.settings.max_unzipped_mb = 32
    with pytest.raises(UploadError, match=r"report\.docx: zip bomb suspected"):
        save_upload(ws, "report.docx", bomb)
    _assert_nothing_left(ws)


def test_upload_then_ingest_under_the_clean_name(ws, embedder):
    from archivist.ingest.pipeline import ingest_paths, list_documents

    path, name = save_upload(ws, "../../runbook\u202e.md", (SAMPLES / "oncall-runbook.md").read_bytes())
    [res] = ingest_paths(ws, [path], names=[name], collection="default", embedder=embedder, progress=False)
    assert res.status == "added" and res.name == "runbook.md"
    assert [d["name"] for d in list_documents(ws)] == ["runbook.md"]


def test_pdf_parsing_is_bounded_in_time(tmp_path):
    """The readers parse PDFs in a child process killed after `timeout` seconds."""
    import time

    from archivist.ingest.readers import ReadError, read

    t0 = time.monotonic()
    with pytest.raises(ReadError, match=r"took longer than 0\.05 s to read \(PDF parsing stopped\)"):
        read(SAMPLES / "employee-handbook.pdf", timeout=0.05)
    assert time.monotonic() - t0 < 5


def test_pdf_child_runs_under_a_memory_limit():
    """The child caps its own address space: an allocation past the cap fails inside it."""
    import subprocess
    import sys

    code = ("from archivist.ingest.readers import _limit_address_space as lim; lim(256)\n"
            "try:\n    bytearray(1024 * 1024 * 1024)\nexcept MemoryError:\n    print('capped')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "capped", out.stderr


def test_an_upload_job_that_ran_keeps_no_file_it_could_not_read(ws, embedder):
    """Before: only the API's own upload thread removed a stored upload it could not read; the app's
    upload jobs (and any upload job resumed by `archivist jobs resume` or a restart) kept every
    unreadable file under uploads/ for good. Now `run_job` removes them when the job ran to its end."""
    from archivist.ingest.pipeline import create_job, run_job

    good, good_name = save_upload(ws, "runbook.md", (SAMPLES / "oncall-runbook.md").read_bytes())
    bad, bad_name = save_upload(ws, "broken.pdf", b"%PDF-1.7\n" + b"\x00 not a PDF body " * 64)
    job = create_job(ws, "upload", "admin", "default", [(good, good_name), (bad, bad_name)])
    results = run_job(ws, job.id, embedder=embedder)
    assert {r.name: r.status for r in results} == {"runbook.md": "added", "broken.pdf": "failed"}
    assert good.exists() and not bad.exists()

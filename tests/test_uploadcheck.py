"""Uploads and folder ingestion refuse a file with one check and one reason (readers.check_kind), the
upload route's OpenAPI lists what it answers, and bench/ocr.py's text baseline loads.

Real files, a real workspace, the real app (starlette's TestClient) and the real `archivist ingest`."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import pytest
from conftest import baseline_or_skip

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # how a password-protected .docx/.xlsx (and an old .doc) starts


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


# name -> bytes: what a user meets that no reader takes
REFUSED = {
    "secret.docx": OLE2 + bytes(4096),  # password-protected DOCX (an OLE2 container, as Word writes it)
    "budget.xlsx": OLE2 + bytes(4096),  # password-protected XLSX
    "photos.docx": _zip({"a.txt": b"hello", "b.jpg": b"\xff\xd8\xff"}),  # a zip of something else
    "empty.docx": b"",
    "log.txt": b"hello\x00world" * 50,  # binary data under a text extension
}
# The reason `archivist ingest` gives for a folder's file, which the app and the API must give too.
REASONS = {
    "secret.docx": "encrypted or legacy Office file (an OLE2 container: a password-protected .docx/.xlsx/.pptx or "
                   "an old .doc/.xls/.ppt); save it unprotected as .docx/.xlsx/.pptx",
    "budget.xlsx": "encrypted or legacy Office file (an OLE2 container: a password-protected .docx/.xlsx/.pptx or "
                   "an old .doc/.xls/.ppt); save it unprotected as .docx/.xlsx/.pptx",
    "photos.docx": "unsupported file type (looks like a ZIP archive that is not a DOCX, XLSX or PPTX)",
    "empty.docx": "empty file (0 bytes)",
    "log.txt": "binary file (contains NUL bytes), not text",
}
# A CSV exported as UTF-16 without a BOM (SQL Server, some Windows tools): text, read from a folder.
UTF16_CSV = "Name,City\nAnna,Lisboa\nJörg,Köln\n".encode("utf-16-le")


def test_an_upload_and_a_folder_ingest_refuse_a_file_with_the_same_reason(tmp_path, ws, settings, cli):
    """Before: an encrypted .docx/.xlsx uploaded (app or API) was told "unsupported file type (looks like an
    OLE2 container (legacy or encrypted Office file))", from a folder "encrypted or legacy Office file ...;
    save it unprotected"; a binary .txt "binary data, not a text file (...)" against "binary file (contains
    NUL bytes), not text"; a UTF-16 CSV without a BOM was refused on upload as binary data and ingested
    from a folder. Now all three surfaces give the folder's reason, and nothing stored is lost."""
    from starlette.testclient import TestClient

    from archivist.api.app import create_app
    from archivist.ingest.uploads import UploadError, save_upload
    from archivist.keys import create_key

    folder = tmp_path / "inbox"
    folder.mkdir()
    for name, data in REFUSED.items():
        (folder / name).write_bytes(data)
    (folder / "export.csv").write_bytes(UTF16_CSV)

    run = cli("ingest", "--json", "-q", folder)
    by_name = {f["name"]: f for f in json.loads(run.stdout)["files"]}
    assert {n: by_name[f"inbox/{n}"]["reason"] for n in REFUSED} == REASONS
    assert by_name["inbox/export.csv"]["status"] == "added"

    for name, data in REFUSED.items():  # the app's upload (ui/library.save_uploads calls save_upload)
        with pytest.raises(UploadError) as refused:
            save_upload(ws, name, data)
        assert str(refused.value) == f"{name}: {REASONS[name]}"
    path, _ = save_upload(ws, "export.csv", UTF16_CSV)
    assert path.read_bytes() == UTF16_CSV
    assert sorted(p.name for p in (ws.home / "uploads").rglob("*") if p.is_file()) == ["export.csv"]  # nothing refused kept

    key = create_key(ws, "admin")
    auth = {"Authorization": f"Bearer {key}"}
    good = (SAMPLES / "travel-expense-policy.docx").read_bytes()
    with TestClient(create_app(settings)) as client:
        kept = client.post("/v1/documents", files={"file": ("secret.docx", good)}, headers=auth)
        assert kept.status_code == 200, kept.text
        for name, data in REFUSED.items():
            r = client.post("/v1/documents", files={"file": (name, data)}, headers=auth)
            assert (r.status_code, r.json()["error"]["message"]) == (422, f"{name}: {REASONS[name]}")
        r = client.post("/v1/documents", files={"file": ("export.csv", UTF16_CSV)}, headers=auth)
        assert r.status_code == 200 and r.json()["chunks"] >= 1, r.text
        # the encrypted upload under the stored document's name replaced nothing
        stored = client.get("/v1/documents/secret.docx", headers=auth).json()
        assert (stored["id"], stored["chunks"], stored["status"]) == (kept.json()["id"], kept.json()["chunks"], "ready")


def _listed(app, method: str, path: str) -> set[int]:
    return {int(s) for s in app.openapi()["paths"][path][method.lower()]["responses"]}


def test_the_documents_routes_list_in_openapi_the_errors_they_answer(tmp_path):
    """Before: the upload route's schema did not list its 500 `embedder_misconfigured`, GET
    /v1/documents/{doc} not its 403, and no route its 503 (the Guard opens the workspace for every
    keyed route: locked or damaged, it answers 503). Each status below is answered for real, then looked
    up in app.openapi()."""
    from starlette.testclient import TestClient

    from archivist import access
    from archivist.api.app import create_app
    from archivist.keys import create_key
    from archivist.settings import Settings
    from archivist.workspace import open_workspace

    settings = Settings.from_env(home=tmp_path / "ws")
    app = create_app(settings)
    with open_workspace(settings) as ws:
        admin = {"Authorization": f"Bearer {create_key(ws, 'admin')}"}
        access.add_user(ws, "bob")
        bob = {"Authorization": f"Bearer {create_key(ws, 'bob')}"}
    note = ("parking.md", b"# Parking\n\nThe car park opens at seven.\n")
    with TestClient(app) as client:
        assert client.post("/v1/documents", files={"file": note}, data={"collection": "cars"}, headers=admin).status_code == 200
        with open_workspace(settings) as ws:
            identity = ws.meta("embedder_identity")
            ws.set_meta("embedder_identity", "some-other-model:768 backend=torch")  # vectors of another embedder
        r = client.post("/v1/documents", files={"file": note}, headers=admin)
        assert (r.status_code, r.json()["error"]["code"]) == (500, "embedder_misconfigured"), r.text
        assert 500 in _listed(app, "POST", "/v1/documents")
        with open_workspace(settings) as ws:
            ws.set_meta("embedder_identity", identity)
        r = client.get("/v1/documents/parking.md", params={"collection": "cars"}, headers=bob)
        assert (r.status_code, r.json()["error"]["code"]) == (403, "permission_denied"), r.text
        assert 403 in _listed(app, "GET", "/v1/documents/{doc}")

    # archivist.db damaged (every page but the first overwritten): each keyed route answers 503
    db = settings.home / "archivist.db"
    with open_workspace(settings) as ws:
        ws.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(db.read_bytes())
    data[4096:] = b"\x07" * (len(data) - 4096)
    db.write_bytes(bytes(data))
    routes = [(m.upper(), p) for p, ops in app.openapi()["paths"].items() for m in ops if p.startswith("/v1/")]
    assert len(routes) >= 20
    with TestClient(app, raise_server_exceptions=False) as client:
        for method, path in routes:
            url = path.replace("{doc}", "parking.md").replace("{model_id}", "m").replace("{prefix}", "ak-1").replace(
                "{job_id}", "1").replace("{conversation_id}", "1")
            r = client.request(method, url, headers=admin)
            assert (r.status_code, r.json()["error"]["code"]) == (503, "workspace_damaged"), (method, path, r.text)
            assert 503 in _listed(app, method, path), (method, path)


def test_the_ocr_benchmark_s_text_baseline_loads_with_its_own_helpers():
    """Before: `bench/ocr.py --only text` crashed with ModuleNotFoundError archivist.ingest.readers_markup:
    common.module_at loaded ingest/readers.py as it was at BEFORE, and its relative imports looked for
    helpers in today's ingest package, where readers_markup is gone. Now the whole folder comes at that
    revision, and the old reader reads the sample handbook."""
    import subprocess
    import sys

    bench = Path(__file__).resolve().parent.parent / "bench"
    before = re.search(r'^BEFORE = "(\w+)"', (bench / "ocr.py").read_text(), re.M).group(1)  # not imported: common sets env
    baseline_or_skip(before, "the benchmark's")
    code = ("import sys; sys.path.append(sys.argv[1]); import ocr, common, pathlib\n"
            "old = common.module_at(ocr.BEFORE, 'ingest/readers.py', 'ingest_before')\n"
            "print(old.__name__, old.read_pdf(pathlib.Path(sys.argv[2])).pages)")
    run = subprocess.run([sys.executable, "-c", code, str(bench), str(SAMPLES / "employee-handbook.pdf")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    from archivist.ingest.readers_pdf import read_pdf

    assert run.stdout.split() == ["ingest_before.readers", str(read_pdf(SAMPLES / "employee-handbook.pdf").pages)]

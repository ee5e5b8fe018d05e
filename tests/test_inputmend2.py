"""Bad input is refused with the file (or field) and the reason, and nothing stored is lost:
evaluation sets' rows checked field by field before a run, an upload form's repeated or unknown
fields, terminal formatting of coloured logs kept out of the stored text, a name blank before its
extension, control characters behind a UTF-16 byte order mark.

Real sets, a real workspace, the real app (starlette's TestClient), the real readers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import members_with_keys

from archivist.retrieval.evaluate import EvalSetError, load_set

REPO = Path(__file__).resolve().parent.parent


# -- 1. evaluation sets ----------------------------------------------------------------------------


def _set(tmp_path, *rows) -> Path:
    p = tmp_path / "set.jsonl"
    p.write_text("# a comment\n" + "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return p


OK = {"question": "How long is parental leave?", "answer": "20 weeks", "relevant": ["handbook.md"]}


@pytest.mark.parametrize("field,value,kind", [
    ("relevant", 1.5, "answers"),  # was TypeError: 'float' object is not iterable
    ("relevant", True, "answers"),  # was the document "True": the run scored 0 silently
    ("relevant", {"handbook.md": 1}, "answers"),  # was ["handbook.md"]
    ("relevant", 1.5, "retrieval"),
    ("relevant", True, "retrieval"),  # was the document "True"
    ("relevant", ["handbook.md", True], "retrieval"),
    ("relevant", ["handbook.md", ""], "retrieval"),
    ("relevant", [["handbook.md"]], "answers"),
    ("document", 7.5, "answers"),
    ("answer", True, "answers"),  # was the gold answer "True"
    ("answer", {"text": "20 weeks"}, "answers"),
    ("answer", ["20 weeks", False], "answers"),
    ("answer", True, "retrieval"),  # a shared set: its answer is checked by a retrieval run too
    ("split", 1, "answers"),  # --split never picked it
])
def test_a_row_field_of_the_wrong_shape_is_named_with_the_file_and_line(tmp_path, field, value, kind):
    bad = {k: v for k, v in OK.items() if not (field == "document" and k == "relevant")} | {field: value}
    p = _set(tmp_path, OK, bad, OK)
    with pytest.raises(EvalSetError) as e:
        load_set(p, kind)
    assert str(e.value).startswith(f"{p}:3: \"{field}\" must be ")
    assert json.dumps(value) in str(e.value)  # the value the set holds, as it holds it


def test_the_cli_says_which_row_and_field_before_anything_runs(tmp_path, cli):
    p = _set(tmp_path, OK, {**OK, "relevant": 1.5})
    run = cli("eval", "answers", "--set", p)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip() == (f"archivist: error: {p}:3: \"relevant\" must be a document name or chunk id, or a "
                                  "list of them, got 1.5")


def test_every_accepted_shape_still_loads(tmp_path):
    p = _set(tmp_path,
             OK,
             {"question": "Stock ticker?", "answer": None, "relevant": []},  # unanswerable
             {"question": "Price of NW-4410?", "answer": 18950, "document": "price-list.csv"},  # a number, samples' style
             {"question": "Which flag?", "answer": ["--keep-index", "keep-index"], "relevant": "git-stash.txt",
              "split": "heldout", "id": "g1"},
             {"question": "Chunk?", "answer": "x", "relevant": [12, "a.txt"]},  # a chunk id, a name
             {"question": "Who won?", "answer": None, "document": None})
    a = load_set(p, "answers")
    assert [(q.line, q.answers, q.answerable, q.relevant) for q in a] == [
        (2, ["20 weeks"], True, ["handbook.md"]), (3, [], False, []), (4, ["18950"], True, ["price-list.csv"]),
        (5, ["--keep-index", "keep-index"], True, ["git-stash.txt"]), (6, ["x"], True, ["12", "a.txt"]), (7, [], False, [])]
    assert a[3].extra == {"split": "heldout", "id": "g1"}
    r = load_set(p, "retrieval")
    assert [(q.line, q.relevant) for q in r] == [(2, ["handbook.md"]), (4, ["price-list.csv"]), (5, ["git-stash.txt"]),
                                                 (6, ["12", "a.txt"])]


def test_the_project_sets_all_still_load():
    """Read only: every stored set loads as the bench loads it, row for row."""
    sets = sorted((REPO / "bench" / "evalsets").glob("*.jsonl")) + [REPO / "samples" / "QUESTIONS.jsonl"]
    assert len(sets) >= 8
    for path in sets:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8-sig").splitlines()
                if line.strip() and not line.startswith("#")]
        retrieval = load_set(path, "retrieval")
        assert len(retrieval) == sum(1 for r in rows if r.get("relevant") or r.get("document")), path
        if all("answer" in r for r in rows):
            assert len(load_set(path, "answers")) == len(rows), path


# -- 2. the upload form ----------------------------------------------------------------------------


@pytest.fixture
def api(ws):
    from starlette.testclient import TestClient

    from archivist.api.app import create_app

    auth = {"Authorization": f"Bearer {members_with_keys(ws, {})['admin']}"}
    with TestClient(create_app(ws.settings), raise_server_exceptions=False) as client:
        yield client, auth


NOTE = ("note.txt", b"The visitor badge is valid for one day only.\n")


@pytest.mark.parametrize("data,param,message", [
    ({"collection": ["hr", "public"]}, "collection", "form field 'collection' is given more than once"),
    ({"wait": ["true", "false"]}, "wait", "form field 'wait' is given more than once"),
    ({"colection": "hr"}, "colection", "unknown form field 'colection'; an upload takes file, collection, wait"),
])
def test_an_upload_form_with_a_field_twice_or_unknown_is_refused_and_nothing_stored(ws, api, data, param, message):
    client, auth = api
    kept = client.post("/v1/documents", files={"file": ("kept.txt", b"Stored before: the canteen opens at 8.\n")},
                       data={"collection": "hr"}, headers=auth)
    assert (kept.status_code, kept.json()["collection"]) == (200, "hr"), kept.text
    r = client.post("/v1/documents", files={"file": NOTE}, data=data, headers=auth)
    error = r.json()["error"]
    assert (r.status_code, error["message"], error["param"]) == (422, message, param), r.text
    assert error["code"] == ("unknown_parameter" if "unknown" in message else "repeated_parameter")
    docs = client.get("/v1/documents", headers=auth).json()["data"]
    assert [(d["name"], d["collection"]) for d in docs] == [("kept.txt", "hr")]  # nothing added, nothing lost
    assert sorted(p.name for p in (ws.home / "uploads").rglob("*") if p.is_file()) == ["kept.txt"]


def test_an_upload_form_of_one_value_per_field_still_works(ws, api):
    client, auth = api
    r = client.post("/v1/documents", files={"file": NOTE}, data={"collection": "hr", "wait": "true"}, headers=auth)
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["collection"], r.json()["status"]) == ("note.txt", "hr", "added")


# -- 3. terminal formatting in text files -------------------------------------------------------------

ESC = "\x1b"
GREP = (f"{ESC}[35m{ESC}[Kapi/app.py{ESC}[m{ESC}[K{ESC}[36m{ESC}[K:{ESC}[m{ESC}[K{ESC}[32m{ESC}[K12{ESC}[m{ESC}[K"
        f"{ESC}[36m{ESC}[K:{ESC}[m{ESC}[K the {ESC}[01;31m{ESC}[Kgateway{ESC}[m{ESC}[K listens on port 8841.\n")
TYPESCRIPT = f"{ESC}]0;ops@host: ~{ESC}\\{ESC}(B{ESC}[0;1mdeploy{ESC}[0m finished: 42 services restarted.\r\n"
MAN = "N\bNA\bAM\bME\bE\n     ls - list _\bd_\bi_\br_\be_\bc_\bt_\bo_\br_\by contents.\n"


def test_a_coloured_log_is_stored_as_its_words(ws, embedder, tmp_path):
    from archivist.ingest.pipeline import ingest_paths

    log = tmp_path / "deploy.log"
    log.write_text(GREP + "\n" + TYPESCRIPT + "\n" + MAN)
    [res] = ingest_paths(ws, [log], collection="ops", embedder=embedder, progress=False)
    assert res.status == "added", res.reason
    text = " ".join(r[0] for r in ws.db.execute("SELECT text FROM chunks WHERE document_id = ?", (res.document_id,)))
    assert text == ("api/app.py:12: the gateway listens on port 8841.\n\ndeploy finished: 42 services restarted.\n\n"
                    "NAME ls - list directory contents.")


def test_stripping_keeps_what_the_terminal_shows():
    from archivist.ingest.readers import reader_version
    from archivist.ingest.readers_text import strip_terminal

    assert strip_terminal(GREP) == "api/app.py:12: the gateway listens on port 8841.\n"
    assert strip_terminal("_\bN\bNa\bam\bme\be") == "Name"  # bold underline
    assert strip_terminal("\ba [35m bracket, C:\\path\\x") == "\ba [35m bracket, C:\\path\\x"  # no formatting
    assert reader_version("text") == 7  # text stored by the reader before is read again


# -- 4. file names and sniffing ------------------------------------------------------------------------


@pytest.mark.parametrize("claimed,kept,kind", [
    (" .csv", "upload.csv", "csv"),  # was "csv": the table read as plain text
    (".md", "upload.md", "markdown"),  # was "md"
    ("\u3000.txt", "upload.txt", "text"),
    (" . .TSV", "upload.TSV", "csv"),
])
def test_a_name_blank_before_its_extension_keeps_it(ws, claimed, kept, kind):
    from archivist.ingest.readers import read
    from archivist.ingest.uploads import clean_filename, save_upload

    assert clean_filename(claimed) == kept
    assert clean_filename(claimed, fallback="") == ""  # the API refuses it as a name not given (below)
    path, name = save_upload(ws, claimed, b"Name,City\nAnna,Lisboa\nJorg,Koeln\n" if kind == "csv" else b"# Leave\n\nTwenty weeks.\n")
    assert (name, path.name, read(path).kind) == (kept, kept, kind)
    assert clean_filename(".bashrc") == "bashrc"  # a dot file of no reader's extension, as before


def test_the_api_refuses_a_name_blank_before_its_extension(ws, api):
    client, auth = api
    r = client.post("/v1/documents", files={"file": (" .csv", b"Name,City\nAnna,Lisboa\n")}, headers=auth)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "missing_filename"), r.text
    assert "(got ' .csv')" in r.json()["error"]["message"]
    assert not [p for p in (ws.home / "uploads").rglob("*") if p.is_file()]


def _garbled(n: int = 600) -> str:
    """Words behind control characters: 80% of the characters are controls, as a binary dump shows."""
    return "".join(c + "\x01\x02\x03\x04" for c in ("binary dump " * n)[:n])


@pytest.mark.parametrize("bom,codec", [(b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")])
def test_control_characters_behind_a_utf16_byte_order_mark_are_refused(ws, tmp_path, bom, codec):
    from archivist.ingest.readers import ReadError, read
    from archivist.ingest.uploads import UploadError, save_upload

    noise = bom + _garbled().encode(codec)  # stored as the text "binary dump binary dump ..." before
    with pytest.raises(UploadError) as e:
        save_upload(ws, "dump.txt", noise)
    assert str(e.value) == "dump.txt: binary file (2400 of its first 3000 characters are control characters), not text"
    assert not [p for p in (ws.home / "uploads").rglob("*") if p.is_file()]
    (tmp_path / "dump.csv").write_bytes(noise)
    with pytest.raises(ReadError, match="binary file"):
        read(tmp_path / "dump.csv")
    (tmp_path / "marked.txt").write_bytes(bom + b"\x01\x02\x03\xd8\xdc" * 600)  # a mark, then no UTF-16 at all
    with pytest.raises(ReadError, match=r"binary file \(1800 of its first 3000 bytes are control characters\)"):
        read(tmp_path / "marked.txt")  # was stored as "ÿþØÜØÜ..."
    # real UTF-16 text behind a BOM, a coloured UTF-16 log too, still reads
    for name, text in [("export.txt", "Name\tCity\nAnna\tLisboa\nJörg\tKöln\n" * 40 + "Привет мир. 你好世界。\n" * 20),
                       ("color.log", f"{ESC}[01;31m{ESC}[Kerror{ESC}[m{ESC}[K: disk full on /dev/sda1\n" * 80)]:
        path, _ = save_upload(ws, name, bom + text.encode(codec))
        assert read(path).blocks[0].text.startswith(("Name", "error: disk full"))

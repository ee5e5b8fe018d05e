"""Three small mends: an upload's empty `collection` form field, `--json` before a subcommand's action,
and terminal formatting in Markdown and CSV files.

1. `-F collection=` stored the upload into the server's default collection without a word, as a
   misspelled or repeated field did before `one_value_per_field`; now refused, naming the field.
2. `archivist adapters --json delete NAME` and `archivist jobs --json cancel ID` printed text: the
   action's own --json (default False) overwrote the one given before it.
3. A coloured Markdown or CSV file kept "[35m[K" around its words, which text files drop since
   readers_text.strip_terminal; the CSV's "[01;31m" even split cells of a ";"-separated file.
"""

from __future__ import annotations

import json

import pytest
from conftest import adapter_trained_on, members_with_keys

from archivist.ingest.pipeline import create_job

ESC = "\x1b"


# -- 1. an empty collection form field --------------------------------------------------------------

@pytest.fixture
def api(ws):
    from starlette.testclient import TestClient

    from archivist.api.app import create_app

    auth = {"Authorization": f"Bearer {members_with_keys(ws, {})['admin']}"}
    with TestClient(create_app(ws.settings), raise_server_exceptions=False) as client:
        yield client, auth


@pytest.mark.parametrize("value", ["", "  "])
def test_an_upload_with_an_empty_collection_field_is_refused_and_nothing_stored(ws, api, value):
    client, auth = api
    r = client.post("/v1/documents", files={"file": ("note.txt", b"The badge is valid for one day.\n")},
                    data={"collection": value}, headers=auth)
    error = r.json()["error"]
    assert (r.status_code, error["param"]) == (422, "collection"), r.text
    assert error["message"] == f"a collection name is empty ({value!r}): name a collection or leave the form field 'collection' out"
    assert client.get("/v1/documents", headers=auth).json()["data"] == []
    assert not [p for p in (ws.home / "uploads").rglob("*") if p.is_file()]
    left_out = client.post("/v1/documents", files={"file": ("note.txt", b"The badge is valid for one day.\n")},
                           headers=auth)  # no field at all: the default collection, as before
    assert (left_out.status_code, left_out.json()["collection"]) == (200, ws.settings.collection), left_out.text


# -- 2. --json before the action ----------------------------------------------------------------------

@pytest.mark.parametrize("args", [("adapters", "--json", "delete", "old-tuned"), ("adapters", "delete", "old-tuned", "--json")])
def test_adapters_delete_answers_json_wherever_json_is_given(ws, tmp_path, cli, args):
    adapter_trained_on(ws, tmp_path / "saved", "old-tuned", ["team"])
    r = cli(*args)
    assert (r.returncode, r.stderr) == (0, ""), r
    out = json.loads(r.stdout)
    assert (out["name"], out["deleted"], out["was_active"]) == ("old-tuned", True, False)
    assert cli("adapters").returncode == 0 and "old-tuned" not in cli("adapters", "--json").stdout


@pytest.mark.parametrize("where", ["before", "after"])
def test_jobs_actions_answer_json_wherever_json_is_given(ws, tmp_path, cli, where):
    note = tmp_path / "note.md"
    note.write_text("# Note\n\nThe canteen opens at 8.\n")
    job = create_job(ws, "ingest", "admin", "team", [(note, "note.md")])
    for action in ("show", "cancel"):
        args = ("jobs", "--json", action, job.id) if where == "before" else ("jobs", action, job.id, "--json")
        r = cli(*args)
        assert (r.returncode, r.stderr) == (0, ""), r
        out = json.loads(r.stdout)
        assert (out["id"], out["state"]) == (job.id, "queued" if action == "show" else "cancelled")
    assert "job " in cli("jobs", "show", job.id).stdout  # no --json anywhere: text, as before


# -- 3. terminal formatting in Markdown and CSV -------------------------------------------------------

MARKDOWN = (f"# Deploy log\n\n{ESC}[35m{ESC}[Kapi/app.py{ESC}[m{ESC}[K: the {ESC}[01;31m{ESC}[Kgateway{ESC}[m{ESC}[K "
            "listens on port 8841.\n")
CSV = (f"service;port\n{ESC}[01;31m{ESC}[Kgateway{ESC}[m{ESC}[K;8841\n"
       f"{ESC}[32mqueue{ESC}[0m;{ESC}[1m5672{ESC}[0m\n")


def test_a_coloured_markdown_file_is_stored_as_its_words(ws, embedder, tmp_path):
    from archivist.ingest.pipeline import ingest_paths
    from archivist.ingest.readers import reader_version

    path = tmp_path / "deploy.md"
    path.write_text(MARKDOWN)
    [res] = ingest_paths(ws, [path], collection="ops", embedder=embedder, progress=False)
    assert res.status == "added", res.reason
    text = " ".join(r[0] for r in ws.db.execute("SELECT text FROM chunks WHERE document_id = ?", (res.document_id,)))
    assert "api/app.py: the gateway listens on port 8841." in text and "[" not in text and ESC not in text, text
    assert reader_version("markdown") == 9  # Markdown stored by the reader before is read again


def test_a_coloured_csv_is_parsed_and_stored_as_its_words(tmp_path):
    from archivist.ingest.readers import reader_version
    from archivist.ingest.readers_text import read_csv, stream_csv

    path = tmp_path / "ports.csv"
    path.write_text(CSV)
    rows = [b.text for b in read_csv(path).blocks if b.kind == "row"]
    assert rows == ["service: gateway; port: 8841", "service: queue; port: 5672"]
    streamed = [b.text for group in stream_csv(path) for b in group if b.kind == "row"]
    assert streamed == rows  # a CSV too big to hold, read a group at a time, the same
    assert reader_version("csv") == 5

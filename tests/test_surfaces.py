"""What the other surfaces say that the CLI said already (surfaces): a file re-read only for its newer
reader, over the API, in a job's message and files and on the Documents page; `archivist doctor` on
a workspace newer than this archivist; a follow-up question in German, French … and one typed in
decomposed Unicode.

A real workspace, the real default embedder, the real app (starlette's TestClient and Streamlit's AppTest)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from conftest import members_with_keys

os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")  # no background model loading inside the test process
NOTE = b"# Valves\n\nThe zorblax valve is checked every Tuesday by the night shift.\n"


def _older_reader(ws) -> tuple[int, str]:
    """Mark every stored document as read by the markdown reader before this one (as an older archivist
    read it); returns the current version and the `reread` a file read again for it names."""
    from archivist.ingest.readers import reader_version

    v = reader_version("markdown")
    ws.db.execute("UPDATE documents SET reader = ?", (v - 1,))
    return v, f"markdown reader {v - 1} -> {v}"


def test_an_upload_read_again_for_its_newer_reader_says_so_over_the_api(ws, embedder):
    """The CLI named a file read again only for its newer reader (`reread`); the API's upload answer,
    `GET /v1/ingest_jobs/{id}`, `GET /v1/jobs/{id}/files` and the job's message said plain "updated"
    like a changed file. They now carry `reread` beside the status clients read, and the message counts them."""
    from starlette.testclient import TestClient

    from archivist.api.app import create_app

    key = members_with_keys(ws, {})["admin"]
    with TestClient(create_app(ws.settings), headers={"Authorization": f"Bearer {key}"}) as client:
        first = client.post("/v1/documents", files={"file": ("valves.md", NOTE)}, data={"collection": "ops"})
        assert first.status_code == 200 and (first.json()["status"], first.json()["reread"]) == ("added", None), first.text
        v, reread = _older_reader(ws)
        again = client.post("/v1/documents", files={"file": ("valves.md", NOTE)}, data={"collection": "ops"}).json()
        assert (again["status"], again["reread"], again["id"]) == ("updated", reread, first.json()["id"])

        _older_reader(ws)
        job = client.post("/v1/documents", files={"file": ("valves.md", NOTE)},
                          data={"collection": "ops", "wait": "false"}).json()
        deadline = time.monotonic() + 120
        while (shown := client.get(f"/v1/ingest_jobs/{job['id']}").json())["status"] == "running":
            assert time.monotonic() < deadline, shown
            time.sleep(0.2)
        assert (shown["status"], shown["reread"]) == ("updated", reread)
        assert [j["reread"] for j in client.get("/v1/ingest_jobs").json()["data"] if j["id"] == job["id"]] == [reread]
        files = client.get(f"/v1/jobs/{job['id']}/files").json()["data"]
        assert [(f["name"], f["status"], f["reread"]) for f in files] == [("valves.md", "updated", reread)]
        whole = client.get(f"/v1/jobs/{job['id']}").json()
        assert whole["message"] == "1 file: 1 updated (1 re-read by a newer reader)"
        assert whole["result"]["counts"] == {"updated": 1} and whole["result"]["reread"] == 1

        changed = client.post("/v1/documents", files={"file": ("valves.md", NOTE + b"\nAnd on Fridays.\n")},
                              data={"collection": "ops"}).json()
        assert (changed["status"], changed["reread"]) == ("updated", None)  # a changed file stays plain updated


def test_the_documents_page_says_a_file_was_re_read_by_a_newer_reader(ws, embedder, cli):
    """The Documents page's job table showed a re-upload read again only for its newer reader as
    `updated` with no reason; it now says so, as `archivist jobs show --files` does."""
    from streamlit.testing.v1 import AppTest

    from archivist import auth
    from archivist.ui import library

    auth.create_first_admin(ws, "alice", "alice-pass-1")
    saved, _ = library.save_uploads(ws, "alice", "ops", [("valves.md", NOTE)])
    library.wait(library.start_ingest(ws.settings, "alice", "ops", [p for p, _ in saved], [n for _, n in saved]), timeout=120)
    _, reread = _older_reader(ws)
    job = library.wait(library.start_ingest(ws.settings, "alice", "ops", [p for p, _ in saved], [n for _, n in saved]),
                       timeout=120)
    assert [(f.name, f.status, f.reread) for f in job.files] == [("valves.md", "updated", reread)]

    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "ui" / "app.py"), default_timeout=60)
    at.session_state["_token"] = auth.create_session(ws, "alice")
    at.run()
    at = at.switch_page("views/documents.py").run()
    assert not at.exception
    tables = [d.value for d in at.dataframe if "reason" in d.value.columns]
    rows = {tuple(t.iloc[0][["status", "reason"]]) for t in tables}
    assert rows == {("added", ""), ("updated", f"re-read by a newer reader ({reread}); the file did not change")}
    out = cli("jobs", "show", job.id, "--files").stdout
    assert "message: 1 file: 1 updated (1 re-read by a newer reader)" in out
    assert f"updated    valves.md  re-read by a newer reader ({reread}); the file did not change" in out


def test_doctor_counts_a_workspace_newer_than_this_archivist_as_a_problem(settings, cli):
    """`archivist doctor` printed a workspace a newer archivist wrote (a downgrade) as "newer than this
    archivist" and exited 0, though every other command refuses to open it: a script checking the exit
    status went on. It is now a problem (stderr and --json, exit 1) saying what to do, and nothing is written."""
    import json
    import sqlite3

    from archivist.schema import MIGRATIONS
    from archivist.workspace import open_workspace

    open_workspace(settings).close()
    db = sqlite3.connect(settings.home / "archivist.db")
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.commit()
    db.close()

    out = cli("doctor", "--json")
    report = json.loads(out.stdout)
    assert out.returncode == 1
    assert report["schema"] == {"version": len(MIGRATIONS) + 1, "current": len(MIGRATIONS), "pending": 0}
    problem = (f"workspace {settings.home}: workspace schema {len(MIGRATIONS) + 1} is newer than this archivist "
               f"({len(MIGRATIONS)}); upgrade archivist to the release that wrote it (or use a workspace of this release); "
               "no command here opens it, and nothing in it was changed")
    assert problem in report["problems"]
    text = cli("doctor")
    assert text.returncode == 1 and f"archivist: problem: {problem}" in text.stderr.splitlines()
    assert (f"schema:    {len(MIGRATIONS) + 1}, newer than this archivist ({len(MIGRATIONS)}); upgrade archivist "
            "(see the problem below)") in text.stdout
    assert "workspace schema" in cli("search", "anything").stderr  # what the problem foretells
    db = sqlite3.connect(settings.home / "archivist.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) + 1
    db.close()


def test_a_follow_up_refers_back_in_german_french_spanish_polish_and_russian():
    """A follow-up referred back only with English words ("it", "that", "this"): "Wie lange dauert es im
    Sommer?" after a question on cartridges searched for summer alone. Each language of the question
    readers now has its few words (German "das" only as a pronoun), read only in a question of that
    language; English is unchanged, and so is a question in another language that refers to nothing."""
    from archivist.retrieval.answer import standalone_question

    def after(previous: str, question: str) -> str:
        return standalone_question(question, [{"role": "user", "content": previous}])

    de = "Wo lagern die Ersatzkartuschen für den Drucker?"
    assert after(de, "Wie lange dauert es im Sommer?") == "lagern Ersatzkartuschen Drucker Wie lange dauert es im Sommer?"
    assert after(de, "Wie lange dauert das im Durchschnitt?").startswith("lagern Ersatzkartuschen Drucker Wie")
    assert after(de, "Wo ist das Büro der neuen Buchhaltung?") == "Wo ist das Büro der neuen Buchhaltung?"  # an article
    fr = "Combien coûte le badge visiteur?"
    assert after(fr, "Qui signe cela pour les stagiaires?") == "coûte badge visiteur Qui signe cela pour les stagiaires?"
    assert after(fr, "Qu'est-ce que le badge permanent coûte?") == "Qu'est-ce que le badge permanent coûte?"
    assert after("¿Cuánto cuesta la tarjeta de visitante?", "¿Quién firma eso para los becarios nuevos?") == \
        "cuesta tarjeta visitante ¿Quién firma eso para los becarios nuevos?"
    assert after("Ile kosztuje karta dla gości?", "Kto podpisuje ją dla nowych stażystów?") == \
        "kosztuje karta gości Kto podpisuje ją dla nowych stażystów?"
    assert after("Сколько стоит пропуск для гостей?", "Кто подписывает это для новых стажёров?") == \
        "стоит пропуск гостей Кто подписывает это для новых стажёров?"
    en = "How much does the visitor badge cost?"
    assert after(en, "Who signs it for new interns?") == "much visitor badge cost Who signs it for new interns?"
    assert after(en, "Which ES modules does the das build load?") == "Which ES modules does the das build load?"


def test_a_question_typed_decomposed_keeps_its_stop_words():
    """Typed in decomposed Unicode (NFD, "fu\\u0308r"), a German question searched for "fur" (its stop
    word "für" folded, compared with no list) and its follow-up read the words "fu" and "r": "Und für
    Müller?" was not seen to refer back. Both now read the question composed, as it was typed in NFC."""
    import unicodedata

    from archivist.retrieval import lexicon
    from archivist.retrieval.answer import standalone_question
    from archivist.retrieval.query import stopwords_of

    question = "Wo lagern die Druckerpatronen für den Drucker?"
    nfd = unicodedata.normalize("NFD", question)
    assert nfd != question
    assert lexicon.query_units(nfd, stopwords_of(nfd)) == lexicon.query_units(question, stopwords_of(question)) == \
        [("lagern",), ("druckerpatronen",), ("drucker",)]
    before = unicodedata.normalize("NFD", "Wer bestellt die Ersatzkartuschen für Büro 3?")
    history = [{"role": "user", "content": before}]
    follow = standalone_question(unicodedata.normalize("NFD", "Und für Müller?"), history)
    assert unicodedata.normalize("NFC", follow) == "bestellt Ersatzkartuschen Büro 3 Und für Müller?"

"""A librarian's folder of a thousand small notes in nested folders, ingested and ingested again: names
that differ only in how their accents are encoded, the same file name given twice, looking one
document up among many, and the work an ingest does per file (real embedder, SQLite, FAISS; no mocks).
Work is counted (SQLite VM steps, Python calls), not timed, so the tests hold on a busy machine."""

from __future__ import annotations

import sys
import unicodedata
from pathlib import Path

import pytest

from archivist import access
from archivist.ingest.pipeline import find_document, ingest_paths, list_documents

TOPICS = ["expense approvals", "badge renewals", "server patching", "travel booking", "contract review", "onboarding"]


def _notes(root: Path, n: int) -> list[Path]:
    """`n` one-sentence notes in nested folders (team/NN/file): six texts in all, so the embedder
    runs six times and the test measures the pipeline, not the model."""
    made = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        path = root / f"team{i % 20:02d}" / f"{i // 100:02d}" / f"note-{i:04d}{'.md' if i % 2 else '.txt'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"The {topic} procedure is described in the handbook.")
        made.append(path)
    return made


def test_a_name_written_composed_and_decomposed_is_one_document_not_two_replacing_each_other(ws, embedder, tmp_path):
    """A folder holding `café-menu.md` twice, the accent once composed (NFC, as Linux tools write it)
    and once decomposed (NFD, as macOS writes it), with different texts: names are stored NFC, so both
    files came out under one name. The second replaced the first within the same ingest ("added", then
    "updated", one text gone from search), and every later ingest of the unchanged folder read and
    embedded both again, each replacing the other. Now the second is refused, naming both files."""
    corpus = tmp_path / "corpus"
    _notes(corpus, 30)
    menus = corpus / "canteen"
    menus.mkdir()
    nfc, nfd = unicodedata.normalize("NFC", "café-menu.md"), unicodedata.normalize("NFD", "café-menu.md")
    assert nfc != nfd
    (menus / nfc).write_text("# Menu\n\nOn Mondays the canteen serves lentil soup.")
    (menus / nfd).write_text("# Menu\n\nOn Mondays the canteen serves mushroom risotto.")
    first_file = sorted(menus.iterdir())[0]  # the walk's order: the first one found keeps the name

    res = ingest_paths(ws, [corpus], embedder=embedder, progress=False)
    menu = [r for r in res if r.name == f"corpus/canteen/{nfc}"]
    assert [r.status for r in menu] == ["added", "failed"], [(r.status, r.reason) for r in menu]
    assert "NFC and NFD" in menu[1].reason and "rename one of them" in menu[1].reason
    assert str(first_file) in menu[1].reason and str(menus / nfd if first_file.name == nfc else menus / nfc) in menu[1].reason
    assert sum(r.status == "added" for r in res) == 31
    kept, lost = ("lentil", "risotto") if first_file.name == nfc else ("risotto", "lentil")
    stored = ws.db.execute("SELECT text FROM documents WHERE path = ?", (f"corpus/canteen/{nfc}",)).fetchone()["text"]
    assert kept in stored and lost not in stored

    # the unchanged folder again: nothing is read, embedded or written
    written = ws.db.execute("SELECT COUNT(*) FROM audit WHERE action LIKE 'document.%'").fetchone()[0]
    again = ingest_paths(ws, [corpus], embedder=embedder, progress=False)
    assert sorted((r.status, r.name) for r in again if r.status != "unchanged") == [("failed", f"corpus/canteen/{nfc}")]
    assert sum(r.embedded for r in again) == 0
    assert ws.db.execute("SELECT COUNT(*) FROM audit WHERE action LIKE 'document.%'").fetchone()[0] == written
    # the refused name still counts as found: --prune never deletes the document the first file holds
    pruned = ingest_paths(ws, [corpus], embedder=embedder, progress=False, prune=True)
    assert not [r for r in pruned if r.status in ("removed", "missing")]
    assert len(list_documents(ws)) == 31


def test_two_files_of_one_name_given_by_path_are_not_one_document(ws, embedder, tmp_path):
    """`archivist ingest a/notes.md b/notes.md`: a file given by path is named by its file name, so
    b's text replaced a's in the same run (a "added", then "updated") and each rerun swapped them
    again. The second is refused; the same file given twice is read once."""
    a, b = tmp_path / "a" / "notes.md", tmp_path / "b" / "notes.md"
    for path, text in ((a, "The lobby opens at 07:00."), (b, "The garage closes at 22:00.")):
        path.parent.mkdir()
        path.write_text(text)
    res = ingest_paths(ws, [a, b, a], embedder=embedder, progress=False)
    assert [(r.name, r.status) for r in res] == [("notes.md", "added"), ("notes.md", "failed")]
    assert f"{b} would be stored under the same name as {a}" in res[1].reason
    [doc] = list_documents(ws)
    assert ws.db.execute("SELECT text FROM documents WHERE id = ?", (doc["id"],)).fetchone()["text"] == a.read_text()
    res = ingest_paths(ws, [a, b], embedder=embedder, progress=False)
    assert [(r.name, r.status) for r in res] == [("notes.md", "unchanged"), ("notes.md", "failed")]


def _vm_steps(ws, fn):
    """(fn's result, SQLite virtual-machine steps it took on `ws`'s connection, in hundreds)."""
    steps = [0]

    def count():
        steps[0] += 1
        return 0

    ws.db.set_progress_handler(count, 100)
    try:
        return fn(), steps[0]
    finally:
        ws.db.set_progress_handler(None, 0)


def test_finding_one_document_among_a_thousand_reads_only_its_rows(ws, embedder, tmp_path):
    """`find_document` (behind `archivist delete` and `erase`, GET and DELETE /v1/documents/{doc}, the
    app's page images of citations and its delete of each selected row) listed every readable
    document, each with its chunk count and OCR pages, to pick one: with 1,000 documents a lookup by
    id cost as much as listing them all (the app's delete of 300 selected rows took 19 s on 2,573
    documents). Now it reads the rows its reference can name, with the same answers."""
    corpus = tmp_path / "library"
    _notes(corpus, 1000)
    (corpus / "team00" / "00" / "README.md").write_text("# Team 00\n\nThe team room is B-204.")
    (corpus / "team01" / "00" / "README.md").write_text("# Team 01\n\nThe team room is B-205.")
    (tmp_path / "2024.md").write_text("The 2024 budget was approved in March.")
    ingest_paths(ws, [corpus, tmp_path / "2024.md"], embedder=embedder, progress=False)
    secret = tmp_path / "secret" / "contract.md"
    secret.parent.mkdir()
    secret.write_text("The supplier contract renews in May.")
    (secret.parent / "README.md").write_text("# Legal\n\nContracts live here.")
    ingest_paths(ws, [secret.parent], collection="legal", embedder=embedder, progress=False)
    access.add_user(ws, "reader")
    access.grant(ws, "reader", "default", "read")

    every, listing = _vm_steps(ws, lambda: list_documents(ws))
    assert len(every) == 1005 and listing > 100
    target = next(d for d in every if d["name"] == "library/team07/05/note-0507.md")
    for ref in (target["id"], str(target["id"]), "library/team07/05/note-0507.md", "note-0507.md"):
        found, steps = _vm_steps(ws, lambda: find_document(ws, ref))
        assert found == target
        if ref != "note-0507.md":  # by id or whole name: a few rows, whatever the library's size
            assert steps * 20 < listing, (ref, steps, listing)
    # the last part of a name is matched whole, in the collections the user may read; an ambiguous
    # one says which documents it names and what tells them apart (--collection does not, in one)
    with pytest.raises(LookupError, match=r"^'README.md' names 2 documents \(library/team00/00/README.md, "
                                          r"library/team01/00/README.md; in default\): use its id or whole name$"):
        find_document(ws, "README.md", collection="default")
    with pytest.raises(LookupError, match=r"^'README.md' names 3 documents \(library/team00/00/README.md, library/team01/00/"
                                          r"README.md, secret/README.md; in default, legal\): use its id or whole name or --collection$"):
        find_document(ws, "README.md")
    with pytest.raises(LookupError, match=r"names 2 documents .*; in default\): use its id or whole name$"):
        find_document(ws, "README.md", user="reader")  # what the reader may not read is not named
    assert find_document(ws, "library/team01/00/README.md")["name"] == "library/team01/00/README.md"
    with pytest.raises(LookupError, match="no document 'readme.md'"):
        find_document(ws, "readme.md")  # names are matched as written (SQL's LIKE would ignore the case)
    with pytest.raises(LookupError, match="no document '_ote-0507.md'"):  # nor is '_' any character
        find_document(ws, "_ote-0507.md")
    assert find_document(ws, "contract.md")["collection"] == "legal"
    with pytest.raises(LookupError, match="no document 'contract.md'"):
        find_document(ws, "contract.md", user="reader")
    contract = find_document(ws, "contract.md")["id"]
    with pytest.raises(LookupError, match="no document"):
        find_document(ws, contract, user="reader")
    with pytest.raises(LookupError, match="no document"):
        find_document(ws, "note-0507.md", collection="legal")
    # an id is a plain whole number: '0012' and '2024' are names (2024.md is not document 2024 either)
    assert find_document(ws, "2024.md")["name"] == "2024.md"
    with pytest.raises(LookupError, match="no document '0012'"):
        find_document(ws, "0012")
    with pytest.raises(LookupError, match="no document '99999999999999999999'"):
        find_document(ws, "99999999999999999999")


def test_ingesting_a_folder_again_does_work_in_proportion_to_its_files(ws, embedder, tmp_path):
    """An ingest kept its progress bar's counts by summing every result so far as each file finished:
    quadratic in the files of a batch (16 s of a 20,000-file re-ingest that has nothing to do, about
    7 minutes at 100,000). Counted as calls of pipeline code made while 800 unchanged files go by."""
    corpus = tmp_path / "corpus"
    _notes(corpus, 800)
    assert {r.status for r in ingest_paths(ws, [corpus], embedder=embedder, progress=False)} == {"added"}

    import archivist.ingest.pipeline as pipeline

    calls = [0]
    here = pipeline.__file__

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename == here:
            calls[0] += 1

    sys.setprofile(profile)
    try:
        again = ingest_paths(ws, [corpus], embedder=embedder, progress=False)
    finally:
        sys.setprofile(None)
    assert [r.status for r in again] == ["unchanged"] * 800 and sum(r.chunks for r in again) == 800
    assert calls[0] < 20 * 800, calls[0]  # about 2 per file now; 640,000 before


def test_deleting_many_selected_documents_in_the_app_syncs_the_indexes_once(ws, embedder, tmp_path):
    """The Documents page deleted the selected rows one `delete_document` at a time: each delete
    rewrote the collection's FAISS file and the lexical index, so 300 selected rows of 2,573 took 17 s
    (19 s before `find_document` stopped listing every document). Now one transaction and one sync;
    what is deleted, audited and left searchable is the same."""
    import json
    import threading

    import faiss
    from streamlit.testing.v1 import AppTest

    from archivist import auth
    from archivist.retrieval import index_kinds, vectors

    auth.create_first_admin(ws, "alice", "alice-pass-1")
    _notes(tmp_path / "library", 200)
    ingest_paths(ws, [tmp_path / "library"], user="alice", embedder=embedder, progress=False)
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "ui" / "app.py"), default_timeout=120)
    at.session_state["_token"] = auth.create_session(ws, "alice")
    at.run()
    at = at.switch_page("views/documents.py").run()
    table = next(d for d in at.dataframe if d.key and d.key.startswith("doc-table"))
    names = list(table.value["name"])
    picked = names[10:70]
    at.session_state[table.key] = {"selection": {"rows": list(range(10, 70)), "columns": []}}
    at.run()
    next(b for b in at.button if b.key == "delete").click().run()

    syncs = [0]

    def profile(frame, event, arg):
        if event == "call" and frame.f_code is vectors.sync.__code__:
            syncs[0] += 1

    sys.setprofile(profile)
    threading.setprofile(profile)
    try:
        at = next(b for b in at.button if b.key == "delete-yes").click().run()
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    assert not at.exception and not at.error, [e.value for e in at.exception] + [e.value for e in at.error]
    left = {d["name"] for d in list_documents(ws)}
    assert left == set(names) - set(picked) and len(left) == 140
    deleted = [r["target"] for r in ws.db.execute("SELECT target FROM audit WHERE action = 'document.deleted'")]
    assert sorted(deleted) == sorted(picked)
    assert syncs[0] == 1, syncs[0]  # 60 before
    # FAISS and the lexical index hold exactly SQLite's chunks
    path, _ = vectors._paths(ws, ws.collection_id("default"))
    in_faiss = set(index_kinds.index_ids(faiss.read_index(str(path))).tolist())
    in_sqlite = {r[0] for r in ws.db.execute("SELECT id FROM chunks")}
    assert in_faiss == in_sqlite and len(in_sqlite) == 140
    meta = json.loads((ws.home / "index" / "lexical.json").read_text())
    assert meta["chunks"] == 140 and meta["id_sum"] == sum(in_sqlite)


def test_a_folder_nested_deeper_than_pythons_recursion_limit_is_walked(ws, embedder, tmp_path):
    """The folder walk recursed once per level: a tree nested deeper than Python's recursion limit
    (about 1,000 folders: an export of nested pages, a runaway script) stopped the whole ingest with a
    RecursionError traceback, and the files beside it were not ingested either. Now it is walked
    like any other; a name past 400 characters is cut, as before. (The limit is lowered to 300
    frames above this test for the ingest, so the tree need not be 1,000 deep: shutil.rmtree, which
    cleans tmp_path, recurses too.)"""
    import inspect

    root = tmp_path / "export"
    deep = root.joinpath(*["a"] * 400)
    deep.mkdir(parents=True)
    (root / "top.md").write_text("# Top\n\nThe export starts here.")
    (deep / "deep.md").write_text("# Deep\n\nThe deepest page of the export.")
    embedder.embed(["warm"])  # the model's first call, at the usual limit
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 300)
    try:
        res = ingest_paths(ws, [root], embedder=embedder, progress=False)
    finally:
        sys.setrecursionlimit(limit)
    assert [r.status for r in res] == ["added", "added"], [(r.name, r.status, r.reason) for r in res]
    assert res[0].name.startswith("export/a/a/") and len(res[0].name) == 400 and res[1].name == "export/top.md"


def test_an_ingest_does_not_read_every_earlier_ingest_job(ws, embedder, tmp_path):
    """Each ingest ends by looking for interrupted ingests it finished (`_supersede_cut_short`);
    `jobs.interrupted` read every job (up to 10,000) and parsed each one's spec, the whole file list
    of every earlier ingest, to keep the interrupted ones: after 300 ingests of a 3,100-file folder an
    ingest with nothing to do peaked at 668 MB instead of 379 MB, growing with every run. Counted as
    the job rows turned into Jobs while the folder is ingested again after 60 earlier runs."""
    from archivist import jobs
    from archivist.ingest.pipeline import create_job

    corpus = tmp_path / "corpus"
    files = _notes(corpus, 40)
    ingest_paths(ws, [corpus], embedder=embedder, progress=False)
    for _ in range(60):  # a year of weekly ingests, each with its list of files
        job = create_job(ws, "ingest", None, "default", [(p, p.name) for p in files])
        jobs.start(ws, job.id)
        jobs.end(ws, job.id, "done")
    cut = create_job(ws, "ingest", None, "default", [(files[0], "corpus/team00/00/note-0000.txt")])
    jobs.start(ws, cut.id)
    jobs.end(ws, cut.id, "interrupted", error="killed")

    made = [0]

    def profile(frame, event, arg):
        if event == "call" and frame.f_code is jobs._job.__code__:
            made[0] += 1

    sys.setprofile(profile)
    try:
        res = ingest_paths(ws, [corpus], embedder=embedder, progress=False)
    finally:
        sys.setprofile(None)
    assert {r.status for r in res} == {"unchanged"}
    assert made[0] < 10, made[0]  # 60 earlier jobs read before
    # the interrupted one is still found, and finished by this run (it read the same file)
    assert jobs.get(ws, cut.id).state == "done"
    assert [j.id for j in jobs.interrupted(ws, ("ingest",))] == []

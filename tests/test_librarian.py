"""A knowledge manager's corpus over months: files edited, renamed, moved and deleted in a folder
that is ingested again, and what the team then sees in search, in old conversations and in the
indexes (real embedder, SQLite, FAISS and the lexical index; no mocks)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from archivist import conversations
from archivist.ingest.pipeline import ingest_paths, list_documents
from archivist.retrieval import index_kinds, vectors
from archivist.retrieval.answer import ask, stored_answer
from archivist.retrieval.search import search

os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")  # no background model loading inside the test process
APP = str(Path(__file__).resolve().parent.parent / "ui" / "app.py")

TRAVEL = "# Travel policy\n\nThe travel per diem is 42 euros per day for domestic trips. Hotel bookings go through the Lindqvist portal.\n"
LEAVE = "# Leave policy\n\nParental leave lasts 18 weeks at full pay. Requests go to the people team 30 days ahead.\n"
REMOTE = "# Remote policy\n\nRemote work is allowed three days per week. The home office stipend is 300 euros a year.\n"
SAFETY = "# Safety manual\n\nFire drills happen in April and October. The assembly point is the car park behind building C.\n"


def _write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def _indexes_agree(ws) -> None:
    """FAISS and the lexical index hold exactly SQLite's chunks: no ghost hit can come back."""
    import faiss

    sqlite_ids = {r[0] for r in ws.db.execute("SELECT id FROM chunks")}
    faiss_ids = set()
    for (cid,) in ws.db.execute("SELECT id FROM collections").fetchall():
        path, _ = vectors._paths(ws, cid)
        if path.exists():
            faiss_ids |= set(index_kinds.index_ids(faiss.read_index(str(path))).tolist())
    assert faiss_ids == sqlite_ids
    meta = json.loads((ws.home / "index" / "lexical.json").read_text())
    assert meta["chunks"] == len(sqlite_ids) and meta["id_sum"] == sum(sqlite_ids)


def test_reingest_of_a_folder_names_the_files_gone_from_it_and_prune_deletes_them(ws, embedder, tmp_path, cli):
    """Month two: travel.md edited, remote.md renamed, oncall moved to another folder, safety.md deleted.
    Ingesting the folder again used to say nothing of the three old names, which stayed searchable
    (a deleted manual kept answering); now they are listed as missing, and `--prune` deletes them."""
    corpus = tmp_path / "corpus"
    _write(corpus, {"policies/travel.md": TRAVEL, "policies/remote.md": REMOTE, "policies/leave.md": LEAVE,
                    "handbook/safety.md": SAFETY, "engineering/oncall.md": "# On-call\n\nThe pager number is 555-0199.\n"})
    outside = tmp_path / "elsewhere" / "corpus-notes.md"  # ingested by its own path: no folder's to prune
    _write(tmp_path / "elsewhere", {"corpus-notes.md": "# Notes\n\nThe badge office opens at 08:15.\n"})
    assert ingest_paths(ws, [corpus], embedder=embedder, progress=False)
    ingest_paths(ws, [outside], embedder=embedder, progress=False)

    (corpus / "policies/travel.md").write_text(TRAVEL.replace("42 euros", "50 euros"))
    (corpus / "policies/remote.md").rename(corpus / "policies/remote-work.md")
    (corpus / "handbook/oncall.md").write_bytes((corpus / "engineering/oncall.md").read_bytes())
    (corpus / "engineering/oncall.md").unlink()
    (corpus / "handbook/safety.md").unlink()
    (corpus / "policies/leave.md").write_bytes(b"\x00\x01binary garbage\x00")  # unreadable now: kept, not pruned

    res = {r.name: r for r in ingest_paths(ws, [corpus], embedder=embedder, progress=False)}
    assert res["corpus/policies/travel.md"].status == "updated"
    assert res["corpus/policies/leave.md"].status == "failed"
    gone = {"corpus/policies/remote.md", "corpus/engineering/oncall.md", "corpus/handbook/safety.md"}
    assert {n for n, r in res.items() if r.status == "missing"} == gone
    assert "no longer in the folder" in res["corpus/handbook/safety.md"].reason
    names = {d["name"] for d in list_documents(ws)}
    assert gone <= names  # without --prune nothing is deleted
    ws.close()

    out = cli("ingest", str(corpus), "--prune", "-q")
    assert out.returncode == 1, out.stderr  # leave.md failed to read: the batch still reports it
    removed = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("removed")]
    assert sorted(removed) == sorted(gone)
    assert "3 removed" in out.stdout.splitlines()[-1] and out.stdout.splitlines()[-1].startswith("4 files")

    from archivist.retrieval.repair import open_checked
    from archivist.settings import Settings

    ws2 = open_checked(Settings.from_env())
    try:
        names = {d["name"] for d in list_documents(ws2)}
        assert names == {"corpus/policies/travel.md", "corpus/policies/remote-work.md", "corpus/policies/leave.md",
                         "corpus/handbook/oncall.md", "corpus-notes.md"}
        leave = next(d for d in list_documents(ws2) if d["name"] == "corpus/policies/leave.md")
        assert leave["chunks"] == 1  # the readable version a bad file would have replaced is still there
        hits = search(ws2, "When do fire drills happen and where is the assembly point?", k=5, embedder=embedder)
        assert all("Fire drills" not in h.text for h in hits) and all(h.document != "corpus/handbook/safety.md" for h in hits)
        assert [h.document for h in search(ws2, "travel per diem", k=1, embedder=embedder)] == ["corpus/policies/travel.md"]
        _indexes_agree(ws2)
        deleted = [json.loads(r["detail"]) for r in ws2.db.execute(
            "SELECT detail FROM audit WHERE action = 'document.deleted'").fetchall()]
        assert len(deleted) == 3 and all("--prune" in d["reason"] for d in deleted)
    finally:
        ws2.close()


def test_prune_never_reaches_outside_the_folder_or_another_collection(ws, embedder, tmp_path):
    """Another folder of the same collection, the same folder in another collection and a folder
    ingested as `.` are left alone: only what this folder's files were is compared."""
    a, b = tmp_path / "team-a", tmp_path / "team-b"
    _write(a, {"travel.md": TRAVEL, "leave.md": LEAVE})
    _write(b, {"remote.md": REMOTE})
    ingest_paths(ws, [a, b], embedder=embedder, progress=False)
    ingest_paths(ws, [a], collection="ops", embedder=embedder, progress=False)
    (a / "leave.md").unlink()
    res = ingest_paths(ws, [a], embedder=embedder, progress=False, prune=True)
    assert [(r.name, r.status) for r in res if r.status in ("missing", "removed")] == [("team-a/leave.md", "removed")]
    names = {(d["collection"], d["name"]) for d in list_documents(ws)}
    assert names == {("default", "team-a/travel.md"), ("default", "team-b/remote.md"),
                     ("ops", "team-a/travel.md"), ("ops", "team-a/leave.md")}
    _indexes_agree(ws)

    # a shared folder linked in from outside, read once with --follow-symlinks: a later ingest that
    # refuses the link has not seen its files, so it must neither list nor prune them
    shared = tmp_path / "shared"
    _write(shared, {"safety.md": SAFETY})
    (a / "shared").symlink_to(shared, target_is_directory=True)
    ingest_paths(ws, [a], embedder=embedder, progress=False, follow_symlinks=True)
    res = ingest_paths(ws, [a], embedder=embedder, progress=False, prune=True)
    assert [(r.name, r.status) for r in res if r.status != "unchanged"] == [("team-a/shared", "failed")]
    assert ("default", "team-a/shared/safety.md") in {(d["collection"], d["name"]) for d in list_documents(ws)}

    # the team's drive mounted somewhere else: the same folder name, a file deleted since
    moved = tmp_path / "mnt" / "team-a"
    moved.parent.mkdir()
    a.rename(moved)
    (moved / "travel.md").unlink()
    res = ingest_paths(ws, [moved], embedder=embedder, progress=False)
    assert sorted((r.name, r.status) for r in res) == [("team-a/shared", "failed"), ("team-a/travel.md", "missing")]


def _conversation(ws, embedder, questions: list[str]) -> int:
    """Ask as the chat page does (extractive: no chat model needed) and store each answer."""
    conv = conversations.start_conversation(ws, None)
    for q in questions:
        conversations.add_message(ws, conv, None, "user", q)
        a = ask(ws, q, mode="extractive", embedder=embedder, surface="app")
        assert a.citations, (q, a.answer)
        conversations.add_message(ws, conv, None, **stored_answer(a, q, None))
    return conv


def test_old_conversation_says_which_cited_passages_changed_or_were_deleted(ws, embedder, tmp_path, monkeypatch):
    """An answer stored before its document was re-ingested or deleted kept showing the old passage as
    if it were the document's: "42 euros" under travel.md, which now says 50. Each stored citation
    and passage now says whether its text is still the document's (`now`)."""
    monkeypatch.setenv("ARCHIVIST_READ_QUOTES", "0")
    folder = tmp_path / "docs"
    _write(folder, {"travel.md": TRAVEL, "remote.md": REMOTE, "safety.md": SAFETY})
    ingest_paths(ws, [folder / n for n in ("travel.md", "remote.md", "safety.md")], embedder=embedder, progress=False)
    conv = _conversation(ws, embedder, ["What is the travel per diem?", "How many days per week is remote work allowed?",
                                        "When do fire drills happen?"])
    before = conversations.messages(ws, conv, None)
    assert [m["citations"][0]["now"] for m in before if m["role"] == "assistant"] == ["current"] * 3
    from archivist import feedback

    for m in before[1::2]:  # each answer rated up, as the chat page records it
        feedback.record_feedback(ws, None, m["question"], m["content"],
                                 rating=1, citations=m["citations"], message_id=m["id"])

    (folder / "travel.md").write_text(TRAVEL.replace("42 euros", "50 euros"))
    # a new section: a new version whose first passage is the same text (in a chunk with a new id)
    (folder / "remote.md").write_text(REMOTE + "\n## Payment\n\nThe stipend is paid in January with the salary.\n")
    ingest_paths(ws, [folder / "travel.md", folder / "remote.md"], embedder=embedder, progress=False)
    from archivist.ingest.pipeline import delete_document

    delete_document(ws, "safety.md")

    travel, remote, safety = [m for m in conversations.messages(ws, conv, None) if m["role"] == "assistant"]
    assert travel["citations"][0]["now"] == "changed" and "42 euros" in travel["citations"][0]["text"]
    assert "three days per week" in remote["citations"][0]["text"] and remote["citations"][0]["now"] == "current"
    live = {r[0] for r in ws.db.execute("SELECT id FROM chunks")}
    assert before[3]["citations"][0]["chunk_id"] not in live and remote["citations"][0]["chunk_id"] in live  # found again
    assert safety["citations"][0]["now"] == "deleted"
    assert {p["document"]: p["now"] for p in travel["passages"]}["travel.md"] == "changed"
    # the feedback rows on those answers (GET /v1/feedback shows these) say the same
    rows = {f["question"]: f["citations"][0] for f in feedback.list_feedback(ws, None)}
    assert {q: (c["document"], c["now"]) for q, c in rows.items()} == {
        "What is the travel per diem?": ("travel.md", "changed"),
        "How many days per week is remote work allowed?": ("remote.md", "current"),
        "When do fire drills happen?": ("safety.md", "deleted")}


def test_chat_page_marks_a_changed_source_and_does_not_draw_old_boxes_on_the_new_page(ws, embedder, tmp_path, monkeypatch):
    """The chat page reopens the conversation: the source of an answer whose PDF was re-ingested says
    so, and offers no "Show on the page" (the stored boxes are the old version's, drawn on the new page)."""
    from fpdf import FPDF
    from streamlit.testing.v1 import AppTest

    from archivist import auth

    monkeypatch.setenv("ARCHIVIST_READ_QUOTES", "0")

    def pdf(path: Path, text: str) -> None:
        doc = FPDF()
        doc.add_page()
        doc.set_font("Helvetica", size=11)
        doc.multi_cell(0, 6, text)
        doc.output(str(path))

    auth.create_first_admin(ws, "alice", "alice-pass-1")
    manual = tmp_path / "facilities.pdf"
    pdf(manual, "The cafeteria opens at 07:30. Meeting room Osprey seats 12 people and has a projector.")
    ingest_paths(ws, [manual], user="alice", embedder=embedder, progress=False)
    conv = conversations.start_conversation(ws, "alice")
    q = "How many people does meeting room Osprey seat?"
    conversations.add_message(ws, conv, "alice", "user", q)
    a = ask(ws, q, user="alice", mode="extractive", embedder=embedder, surface="app")
    assert a.citations and a.citations[0].boxes
    conversations.add_message(ws, conv, "alice", **stored_answer(a, q, None))

    def page():
        at = AppTest.from_file(APP, default_timeout=120)
        at.session_state["_token"] = auth.create_session(ws, "alice")
        at = at.run()
        assert not at.exception, [e.value for e in at.exception]
        (source,) = [e for e in at.chat_message[1].expander if e.label.startswith("\\[1\\]")]
        return source

    source = page()
    assert "changed since" not in source.label and len(source.toggle) == 1  # current: the page can be shown

    pdf(manual, "The cafeteria now opens at 08:00. Meeting room Osprey was split into two rooms of 6 people each.")
    ingest_paths(ws, [manual], user="alice", embedder=embedder, progress=False)
    source = page()
    assert "changed since" in source.label
    assert any("no longer in the document" in w.value for w in source.warning)
    assert "12 people" in source.text[0].value  # what the answer was written from, said to be the old text
    assert len(source.toggle) == 0


def test_documents_list_says_when_the_current_version_was_read(ws, embedder, tmp_path, cli):
    """A policy first ingested months ago and replaced today: `archivist documents` showed no date at
    all and the app's Documents table only "added", the first ingest's date, so nobody could tell
    which documents were new versions. Both now show when the stored version was read."""
    import datetime as dt

    from streamlit.testing.v1 import AppTest

    from archivist import auth

    auth.create_first_admin(ws, "alice", "alice-pass-1")
    folder = tmp_path / "policies"
    _write(folder, {"travel.md": TRAVEL, "leave.md": LEAVE})
    ingest_paths(ws, [folder], user="alice", embedder=embedder, progress=False)
    months_ago = dt.datetime(2026, 3, 2, 9, 30).timestamp()  # ingested in March, as far as the table knows
    with ws.db:
        ws.db.execute("UPDATE documents SET added_at = ?, updated_at = ?", (months_ago, months_ago))
    (folder / "travel.md").write_text(TRAVEL.replace("42 euros", "50 euros"))
    before = dt.datetime.now().replace(second=0, microsecond=0)
    ingest_paths(ws, [folder], user="alice", embedder=embedder, progress=False)

    out = cli("documents")
    assert out.returncode == 0, out.stderr
    rows = {line.split()[1]: line for line in out.stdout.splitlines()[1:]}
    assert "2026-03-02 09:30" in rows["policies/leave.md"]  # unchanged since March
    stamp = rows["policies/travel.md"].split()[-2:]
    assert dt.datetime.strptime(" ".join(stamp), "%Y-%m-%d %H:%M") >= before  # the new version, read today

    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["_token"] = auth.create_session(ws, "alice")
    at.run()
    at = at.switch_page("views/documents.py").run()
    assert not at.exception
    table = next(d.value for d in at.dataframe if "collection" in d.value.columns).set_index("name")
    assert table.loc["policies/travel.md", "added"] == table.loc["policies/leave.md", "added"] == "2026-03-02 09:30"
    assert table.loc["policies/leave.md", "updated"] == "2026-03-02 09:30"
    assert dt.datetime.strptime(table.loc["policies/travel.md", "updated"], "%Y-%m-%d %H:%M") >= before


def test_prune_of_dot_touches_only_what_dot_names(ws, embedder, tmp_path, monkeypatch):
    """`archivist ingest corpus` names files corpus/...; `cd corpus && archivist ingest .` names the same
    files without the prefix (two sets of documents). A prune of `.` must not take the corpus/... ones
    for files gone from it: they are another ingest's names."""
    corpus = tmp_path / "corpus"
    _write(corpus, {"travel.md": TRAVEL, "leave.md": LEAVE})
    ingest_paths(ws, [corpus], embedder=embedder, progress=False)
    monkeypatch.chdir(corpus)
    ingest_paths(ws, [Path(".")], embedder=embedder, progress=False)
    (corpus / "leave.md").unlink()
    res = ingest_paths(ws, [Path(".")], embedder=embedder, progress=False, prune=True)
    assert sorted((r.name, r.status) for r in res) == [("leave.md", "removed"), ("travel.md", "unchanged")]
    assert sorted(d["name"] for d in list_documents(ws)) == ["corpus/leave.md", "corpus/travel.md", "travel.md"]
    _indexes_agree(ws)


def test_old_answer_is_withheld_when_a_passage_it_showed_is_from_a_collection_read_no_more(ws, embedder, tmp_path, monkeypatch):
    """Bob asked across his collections; the answer cited an eng page, and the passages stored with it
    (GET /v1/conversations/{id} returns them with their text) held hr's onboarding policy. Read access
    to hr revoked, the old answer still showed hr's text: stored passages named no collection, so
    only the citations' collections were checked. Passages now keep theirs, and those stored before
    are traced through their chunk."""
    from archivist import access, auth

    monkeypatch.setenv("ARCHIVIST_READ_QUOTES", "0")
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    auth.create_user(ws, "bob", "bob-pass-12", by="alice")
    folder = tmp_path / "docs"
    _write(folder, {"deploy.md": "# Deploy guide\n\nDeployments run every Tuesday at 10:00 with the tool shipit.\n",
                    "onboarding.md": "# Onboarding policy\n\nNew hires receive a Pelican laptop on day one. "
                                     "Deployments of laptops run through the IT desk.\n"})
    ingest_paths(ws, [folder / "deploy.md"], collection="eng", user="alice", embedder=embedder, progress=False)
    ingest_paths(ws, [folder / "onboarding.md"], collection="hr", user="alice", embedder=embedder, progress=False)
    access.grant(ws, "bob", "eng", "read", by="alice")
    access.grant(ws, "bob", "hr", "read", by="alice")
    conv = conversations.start_conversation(ws, "bob")
    q = "When do deployments run?"
    conversations.add_message(ws, conv, "bob", "user", q)
    a = ask(ws, q, user="bob", mode="extractive", embedder=embedder, surface="app")
    assert {c.collection for c in a.citations} == {"eng"} and "hr" in {p.collection for p in a.passages}
    stored = stored_answer(a, q, None)
    conversations.add_message(ws, conv, "bob", **stored)
    # the same answer as a release before this one stored it: passages without their collection
    old = {**stored, "meta": {**stored["meta"], "passages": [{k: v for k, v in p.items() if k != "collection"}
                                                             for p in stored["meta"]["passages"]]}}
    conversations.add_message(ws, conv, "bob", **old)
    shown = conversations.messages(ws, conv, "bob")
    assert any("Pelican" in p["text"] for p in shown[1]["passages"]) and shown[1]["status"] != "withheld"

    access.revoke(ws, "bob", "hr", by="alice")
    for m in conversations.messages(ws, conv, "bob")[1:]:
        assert m["status"] == "withheld" and m["withheld"] == ["hr"]
        assert "Pelican" not in json.dumps(m)


def test_erase_reaches_the_text_of_the_documents_earlier_versions(ws, embedder, tmp_path, monkeypatch):
    """travel.md said 42 euros; an answer quoting it was rated up; the policy was rewritten and
    ingested again; a fine-tune dataset was built from the feedback; then the document was erased.
    The dataset kept the first version's passage (erase matched only the current version's text),
    the report said no dataset example was dropped, and its scan for leftovers looked only for
    today's sentences."""
    from archivist import feedback
    from archivist.finetune import datasets
    from archivist.ingest.erase import erase
    from archivist.files import files_holding

    monkeypatch.setenv("ARCHIVIST_READ_QUOTES", "0")
    folder = tmp_path / "docs"
    _write(folder, {"travel.md": TRAVEL, "leave.md": LEAVE})
    ingest_paths(ws, [folder], embedder=embedder, progress=False)
    conv = _conversation(ws, embedder, ["What is the travel per diem?"])
    answer = conversations.messages(ws, conv, None)[-1]
    assert "42 euros" in answer["citations"][0]["text"]
    feedback.record_feedback(ws, None, answer["question"], answer["content"], rating=1,
                             citations=answer["citations"], message_id=answer["id"])
    (folder / "travel.md").write_text("# Travel policy\n\nDaily allowance on trips: 50 EUR.\n")  # rewritten whole
    ingest_paths(ws, [folder], embedder=embedder, progress=False)
    ds = datasets.build_dataset(ws, ["feedback"], embedder=embedder)
    first = b"The travel per diem is 42 euros per day for domestic trips."
    assert list(files_holding(ws.home / "datasets", [first]))  # the dataset holds the first version

    report = erase(ws, "docs/travel.md")
    assert report.dataset_examples == {ds.name: 1} and report.leftovers == []
    assert list(files_holding(ws.home, [first])) == []
    assert [d["name"] for d in list_documents(ws)] == ["docs/leave.md"]


def test_a_passage_kept_in_a_new_version_is_shown_where_it_stands_now(ws, embedder, tmp_path, monkeypatch):
    """The manual gained a first page; the cited paragraph, word for word the same, moved to page 2.
    The old answer's source is current, and its page and boxes are today's (the page view draws
    today's file: the stored page 1 boxes would highlight the new first page's text)."""
    from fpdf import FPDF

    monkeypatch.setenv("ARCHIVIST_READ_QUOTES", "0")
    osprey = "Meeting room Osprey seats 12 people and has a projector. The cafeteria opens at 07:30."

    def pdf(path: Path, pages: list[str]) -> None:
        doc = FPDF()
        for text in pages:
            doc.add_page()
            doc.set_font("Helvetica", size=11)
            doc.multi_cell(0, 6, text)
        doc.output(str(path))

    manual = tmp_path / "facilities.pdf"
    pdf(manual, [osprey])
    ingest_paths(ws, [manual], embedder=embedder, progress=False)
    conv = _conversation(ws, embedder, ["How many people does meeting room Osprey seat?"])
    (before,) = conversations.messages(ws, conv, None)[1]["citations"]
    assert before["page"] == 1 and before["boxes"]
    pdf(manual, ["Welcome to the facilities manual. Fire drills happen in April and October.", osprey])
    ingest_paths(ws, [manual], embedder=embedder, progress=False)
    (after,) = conversations.messages(ws, conv, None)[1]["citations"]
    live = ws.db.execute("SELECT id, page, boxes FROM chunks WHERE text = ?", (before["text"],)).fetchone()
    assert live is not None and live["page"] == 2  # the same passage, now on page 2
    assert after["now"] == "current" and after["page"] == 2 and after["chunk_id"] == live["id"]
    assert after["boxes"] == json.loads(live["boxes"]) and after["text"] == before["text"]


def test_prune_leaves_a_folder_that_came_out_empty_alone(ws, embedder, tmp_path):
    """The team's share not mounted: its mount point is an empty folder. `--prune` would have deleted
    every document read from it; an empty folder is listed, not pruned."""
    share = tmp_path / "share"
    _write(share, {"travel.md": TRAVEL, "leave.md": LEAVE})
    ingest_paths(ws, [share], embedder=embedder, progress=False)
    for f in share.iterdir():
        f.unlink()
    res = ingest_paths(ws, [share], embedder=embedder, progress=False, prune=True)
    assert sorted((r.name, r.status) for r in res) == [("share/leave.md", "missing"), ("share/travel.md", "missing")]
    assert all("empty now" in r.reason for r in res)
    assert sorted(d["name"] for d in list_documents(ws)) == ["share/leave.md", "share/travel.md"]
    _indexes_agree(ws)


def test_a_file_kept_in_two_collections_says_when_the_other_copy_is_another_version(ws, embedder, tmp_path):
    """travel.md ingested into default and ops; edited and ingested again into default only: ops kept
    answering 42 euros and nothing said so. The ingest now names the collection with the other version."""
    folder = tmp_path / "docs"
    _write(folder, {"travel.md": TRAVEL, "leave.md": LEAVE})
    ingest_paths(ws, [folder], embedder=embedder, progress=False)
    ingest_paths(ws, [folder], collection="ops", embedder=embedder, progress=False)
    (folder / "travel.md").write_text(TRAVEL.replace("42 euros", "50 euros"))
    res = {r.name: r for r in ingest_paths(ws, [folder], embedder=embedder, progress=False)}
    assert res["docs/travel.md"].status == "updated" and "still in ops" in res["docs/travel.md"].reason
    assert res["docs/leave.md"].reason is None  # the same version in both
    res = {r.name: r for r in ingest_paths(ws, [folder], collection="ops", embedder=embedder, progress=False)}
    assert res["docs/travel.md"].status == "updated" and res["docs/travel.md"].reason is None  # in step again


def test_reingest_of_a_file_that_now_fails_leaves_its_document_ready_not_queued(ws, embedder, tmp_path):
    """The Documents page's Re-ingest marks a document 'queued' and ingests its file again; when the
    file had been replaced by an unreadable one, the read failed and the document, whose last version
    is still stored and searched, stayed 'queued' on the page for good."""
    from archivist.ingest.pipeline import mark_queued

    folder = tmp_path / "docs"
    _write(folder, {"leave.md": LEAVE})
    (doc,) = [r for r in ingest_paths(ws, [folder / "leave.md"], embedder=embedder, progress=False)]
    (folder / "leave.md").write_bytes(b"\x00\x01\x02 not text \x00")
    mark_queued(ws, [doc.document_id])  # what ui/library.reingest does before its job
    (res,) = ingest_paths(ws, [folder / "leave.md"], names=["leave.md"], embedder=embedder, progress=False)
    assert res.status == "failed" and res.reason
    (listed,) = list_documents(ws)
    assert listed["status"] == "ready" and listed["chunks"] == 1
    assert [h.document for h in search(ws, "parental leave weeks", k=1, embedder=embedder)] == ["leave.md"]

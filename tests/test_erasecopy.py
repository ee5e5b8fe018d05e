"""`archivist erase` of one copy of a duplicated document leaves the other copy's data alone: the
dataset examples, answers and feedback drawn from the copy that stays keep their text, even where
it is the erased copy's text too; what was drawn from the erased copy (by its chunks, its name and
collection, an adapter's lineage) still goes, shared text or not, and so does text only it holds.
Real SQLite, real files, the real default embedder; the sample PDF for the tester's reproduction."""

from __future__ import annotations

import json
import shutil

from conftest import SAMPLES, ingest_texts

from archivist import access, adapters, audit, conversations, feedback
from archivist.files import files_holding
from archivist.finetune import dataset_store, datasets
from archivist.ingest.erase import erase
from archivist.ingest.pipeline import ingest_paths

SHARED = "Employees accrue 25 days of paid leave per calendar year, booked through the Harbor portal."
SHARED_2 = "Sick leave is reported to the team lead before 9:00 on the first morning of absence."
ONLY = "The Lisbon office closes for 3 days in August for the annual harbour festival."
HANDBOOK = f"# Leave\n\n{SHARED} {SHARED_2}\n"
COPY = f"{HANDBOOK}\n# Lisbon\n\n{ONLY}\n"  # the same handbook with a paragraph of its own


def _rows(folder):
    return {split: (folder / f"{split}.jsonl").read_text() for split in ("train", "eval")}


def _chunk(ws, name):
    """A citation of the first chunk of document `name`, as an answer stores it."""
    cid, text, collection = ws.db.execute(
        "SELECT c.id, c.text, k.name FROM chunks c JOIN documents d ON d.id = c.document_id "
        "JOIN collections k ON k.id = d.collection_id WHERE d.path = ? ORDER BY c.seq LIMIT 1", (name,)).fetchone()
    return {"n": 1, "chunk_id": cid, "document": name, "collection": collection, "text": text, "page": None, "score": 1.0}


def _two_copies(ws, embedder, tmp_path):
    ingest_texts(ws, embedder, tmp_path / "docs", {"a": {"handbook.md": HANDBOOK}, "b": {"handbook-copy.md": COPY}})


def test_erasing_a_copy_of_the_sample_handbook_keeps_the_dataset_built_from_the_other_copy(ws, embedder, tmp_path):
    """The tester's reproduction: a dataset of collection a (which never held handbook.pdf) lost
    every example that quoted the handbook when the copy in b was erased. The dataset built from b
    (every example drawn from the erased copy, all of its text also in a) still loses them all."""
    ingest_paths(ws, [SAMPLES / "employee-handbook.pdf", SAMPLES / "oncall-runbook.md"], collection="a",
                 embedder=embedder, progress=False)
    shutil.copy(SAMPLES / "employee-handbook.pdf", tmp_path / "handbook.pdf")
    ingest_paths(ws, [tmp_path / "handbook.pdf"], collection="b", embedder=embedder, progress=False)
    of_a = datasets.build_dataset(ws, ["docs"], collections=["a"], name="of-a", embedder=embedder)
    of_b = datasets.build_dataset(ws, ["docs"], collections=["b"], name="of-b", embedder=embedder)
    before = _rows(of_a.path)
    manifest = json.loads((of_a.path / "manifest.json").read_text())
    handbook_a = ws.db.execute("SELECT id FROM documents WHERE path = 'employee-handbook.pdf'").fetchone()[0]
    from_handbook = sum(e.document_id == handbook_a for e in of_a.train + of_a.eval)
    assert from_handbook >= 5 and len(of_b.train) + len(of_b.eval) >= 5

    report = erase(ws, "handbook.pdf", collection="b")

    assert _rows(of_a.path) == before  # every example of a's dataset, byte for byte
    assert json.loads((of_a.path / "manifest.json").read_text()) == manifest  # handbook.pdf was never in it
    assert report.dataset_examples == {"of-b": len(of_b.train) + len(of_b.eval)}
    assert _rows(of_b.path) == {"train": "", "eval": ""}
    assert report.held_elsewhere == ["employee-handbook.pdf (a)"]
    assert from_handbook <= report.held_copies["dataset_examples"] <= len(of_a.train) + len(of_a.eval)
    assert report.leftovers == []  # the text a's dataset shows is a's handbook's, not a leftover
    [record] = audit.read(ws, action="document.erased")  # what was left, and why, is on record too
    assert record["detail"]["held_copies"] == report.held_copies
    assert ws.db.execute("SELECT COUNT(*) FROM chunks WHERE document_id = ?", (handbook_a,)).fetchone()[0] > 0


def test_answers_and_feedback_drawn_from_the_copy_that_stays_keep_their_text(ws, embedder, tmp_path):
    """Chat answers and feedback citing the copy in a keep their text and citations; those citing
    the erased copy, or written from one of its passages, or holding a sentence only it has, go;
    one that cites nothing and quotes text both copies hold is left (its source is not known, and
    the text stays in a anyway) and counted in the report."""
    _two_copies(ws, embedder, tmp_path)
    kept_doc, gone_doc = _chunk(ws, "handbook.md"), _chunk(ws, "handbook-copy.md")
    assert (kept_doc["collection"], gone_doc["collection"]) == ("a", "b") and SHARED in kept_doc["text"]
    conv = conversations.start_conversation(ws, None)
    say = lambda text, **kw: conversations.add_message(ws, conv, None, "assistant", text, **kw)  # noqa: E731
    question = conversations.add_message(ws, conv, None, "user", "How many days of leave do I get?")
    keep_cited = say(f"{SHARED} [1]", citations=[kept_doc])
    keep_uncited = say(f"As the handbook says: {SHARED}")
    gone_cited = say(f"{SHARED} [1]", citations=[gone_doc])
    gone_shown = say(f"{SHARED} [1]", citations=[kept_doc], meta={"passages": [kept_doc, {**gone_doc, "n": 2}]})
    gone_only = say(f"Note: {ONLY}")
    fb_keep_cited = feedback.record_feedback(ws, None, "Leave?", f"{SHARED} [1]", rating=1, citations=[kept_doc])
    fb_keep_uncited = feedback.record_feedback(ws, None, "Leave?", "It depends.", rating=-1, correction=SHARED)
    feedback.record_feedback(ws, None, "Leave?", f"{SHARED} [1]", rating=1, citations=[gone_doc])
    feedback.record_feedback(ws, None, "Lisbon?", "No idea.", rating=-1, correction=ONLY)

    report = erase(ws, "handbook-copy.md")

    stored = {r["id"]: (r["content"], r["citations"]) for r in ws.db.execute("SELECT id, content, citations FROM messages")}
    assert stored[keep_cited][0] == f"{SHARED} [1]" and json.loads(stored[keep_cited][1])["citations"][0]["chunk_id"] == \
        kept_doc["chunk_id"]
    assert stored[keep_uncited][0] == f"As the handbook says: {SHARED}"
    assert stored[question][0] == "How many days of leave do I get?"
    assert [stored[m] for m in (gone_cited, gone_shown, gone_only)] == [("[erased]", None)] * 3
    assert report.messages == 3
    left = {r["id"]: (r["answer"], r["correction"], r["citations"]) for r in ws.db.execute("SELECT * FROM feedback")}
    assert sorted(left) == [fb_keep_cited, fb_keep_uncited]
    assert left[fb_keep_cited][0] == f"{SHARED} [1]" and json.loads(left[fb_keep_cited][2])[0]["document"] == "handbook.md"
    assert left[fb_keep_uncited][1] == SHARED
    assert report.feedback_deleted == 2
    assert report.held_elsewhere == ["handbook.md (a)"]
    assert report.held_copies == {"feedback": 2, "messages": 2}
    # the sentence only the erased copy had is in no file; the shared one is the remaining copy's
    assert report.leftovers == [] and files_holding(ws.home, [ONLY.encode()]) == {}


def test_a_dataset_drawn_from_both_copies_loses_only_the_erased_copys_examples(ws, embedder, tmp_path):
    """Where an example came from decides, not its text: of one dataset built from both
    collections, the examples of the copy in a stay and those of the erased copy go."""
    _two_copies(ws, embedder, tmp_path)
    ds = datasets.build_dataset(ws, ["docs"], name="both", embedder=embedder, passages=1)
    ids = dict(ws.db.execute("SELECT path, id FROM documents"))
    rows = ds.train + ds.eval
    from_copy = [e for e in rows if e.document_id == ids["handbook-copy.md"]]
    from_a = [e for e in rows if e.document_id == ids["handbook.md"]]
    assert len(from_copy) == 1 and len(from_a) == 2  # a question both copies give is asked once, of a's
    assert all(any(SHARED in m["content"] and SHARED_2 in m["content"] for m in e.messages) for e in from_a)

    report = erase(ws, "handbook-copy.md")

    after = dataset_store.load_dataset(ws, "both", None)
    assert report.dataset_examples == {"both": len(from_copy)}
    assert sorted(e.question for e in after.train + after.eval) == sorted(e.question for e in rows if e not in from_copy)
    assert all(e.document_id == ids["handbook.md"] for e in after.train + after.eval)
    assert after.manifest["erased"] == [ids["handbook-copy.md"]]


def test_a_members_erase_counts_only_copies_in_collections_they_may_read(ws, embedder, tmp_path):
    """A member who may not read collection a erases the copy in b: a's handbook holding the same
    sentence must not change what erase does with the member's own copies (or the erase would
    tell them a holds it), nor be named; the admin's erase, which sees a, leaves such a copy."""
    _two_copies(ws, embedder, tmp_path)
    access.add_user(ws, "mia", "member")
    access.grant(ws, "mia", "b", "write")
    feedback.record_feedback(ws, "mia", "Leave?", "It depends.", rating=-1, correction=SHARED)

    report = erase(ws, "handbook-copy.md", user="mia")

    assert report.feedback_deleted == 1 and ws.db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] == 0
    assert report.held_elsewhere == [] and report.held_copies == {}
    assert ws.db.execute("SELECT COUNT(*) FROM documents WHERE path = 'handbook.md'").fetchone()[0] == 1


def test_an_adapter_that_learned_only_the_erased_copy_loses_its_examples_of_the_shared_text(ws, embedder, tmp_path):
    """An adapter's evaluation examples come from the documents its lineage lists: one trained on
    the erased copy alone drew the shared sentence from it (dropped); one trained on both copies
    may have drawn it from the copy that stays (kept)."""
    _two_copies(ws, embedder, tmp_path)
    docs = [{"id": i, "path": p, "collection": c} for i, p, c in ws.db.execute(
        "SELECT d.id, d.path, k.name FROM documents d JOIN collections k ON k.id = d.collection_id ORDER BY d.id")]
    copy = [d for d in docs if d["path"] == "handbook-copy.md"]
    for name, learned in (("only-copy", copy), ("both", docs)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "adapter_config.json").write_text("{}")
        adapters.register(ws, name, folder, ws.settings.llm,
                          {"better": True, "reason": "t", "examples": [{"question": "leave?", "gold": SHARED}]},
                          {"dataset": {"name": "d"}, "documents": learned,
                           "collections": sorted({d["collection"] for d in learned})})

    report = erase(ws, "handbook-copy.md")

    examples = {a: json.loads((adapters.path(ws, a) / "metrics.json").read_text())["examples"] for a in ("only-copy", "both")}
    assert examples == {"only-copy": [], "both": [{"question": "leave?", "gold": SHARED}]}
    assert report.adapter_examples == 1 and sorted(report.adapters) == ["both", "only-copy"]

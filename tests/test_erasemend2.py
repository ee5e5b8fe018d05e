"""Erase and delete, as a member sees them: an erase's report says nothing of collections she cannot
read, and a deleted document's words leave the lexical index."""

from __future__ import annotations

from pathlib import Path

from archivist import access, audit, jobs
from conftest import board_tuned

MINUTES = b"# Board minutes\n\nThe board approved the Quillfeather acquisition for 41 million euros.\n"


def _upload(ws, embedder, name: str, data: bytes, collection: str, user: str) -> Path:
    """Store `data` as an upload named `name` and ingest it into `collection` as `user`; returns its file."""
    from archivist.ingest.pipeline import create_job, run_job
    from archivist.ingest.uploads import save_upload

    path, _ = save_upload(ws, name, data)
    run_job(ws, create_job(ws, "upload", user, collection, [(path, name)]).id, embedder=embedder)
    return path


def test_a_member_s_erase_says_the_same_of_an_upload_a_collection_she_cannot_read_shares(ws, embedder):
    """Before: mallory's erase reported `"upload": null` when a document in `secret` (which she cannot
    read) was read from the same stored file, and its path when the file was hers alone: uploading a
    guessed file and erasing it told her whether the workspace holds those exact bytes. Now her report,
    and her erase job's result and spec, name the upload either way; the file another document reads
    stays, and the admin's record and an admin's own erase tell the truth."""
    access.add_user(ws, "mallory", "member")
    access.create_collection(ws, "team", by="admin")
    access.grant(ws, "mallory", "team", "write")
    from archivist.ingest.erase import erase

    shared = _upload(ws, embedder, "minutes.md", MINUTES, "secret", "admin")
    assert _upload(ws, embedder, "minutes.md", MINUTES, "team", "mallory") == shared  # one file, two documents
    alone = _upload(ws, embedder, "copy.md", MINUTES, "team", "mallory")
    told = {}
    for name in ("minutes.md", "copy.md"):
        report = erase(ws, name, "mallory")
        job = jobs.list_jobs(ws, "mallory", ("erase",), limit=1)[0]
        told[name] = (report.upload, job.result["upload"], job.spec["report"]["upload"])
    assert told == {"minutes.md": (str(shared),) * 3, "copy.md": (str(alone),) * 3}
    assert shared.is_file() and not alone.exists()  # the file `secret`'s document reads is kept
    records = {r["target"]: r["detail"]["upload"] for r in audit.read(ws, by="admin", action="document.erased")}
    assert records == {"minutes.md": False, "copy.md": True}
    # an admin is told the truth: the file stays while another document reads it
    _upload(ws, embedder, "minutes.md", MINUTES, "team", "admin")
    assert erase(ws, "minutes.md", "admin", "team").upload is None and shared.is_file()
    assert erase(ws, "minutes.md", "admin", "secret").upload == str(shared) and not shared.exists()


def test_a_member_s_erase_counts_an_earlier_upload_a_collection_she_cannot_read_shares_as_gone(ws, embedder):
    """The same question one version back: mallory's first `minutes.md` is the file `secret`'s
    document reads; her second replaced it. Before: her erase counted `earlier_uploads: 0` for it and
    1 for `notes.md`, whose first version was hers alone. Now 1 for both; the shared file stays."""
    from archivist.ingest.erase import erase

    access.add_user(ws, "mallory", "member")
    access.create_collection(ws, "team", by="admin")
    access.grant(ws, "mallory", "team", "write")
    shared = _upload(ws, embedder, "minutes.md", MINUTES, "secret", "admin")
    alone = _upload(ws, embedder, "notes.md", MINUTES, "team", "mallory")
    assert _upload(ws, embedder, "minutes.md", MINUTES, "team", "mallory") == shared
    later = MINUTES.replace(b"41 million", b"an undisclosed sum")
    for name in ("minutes.md", "notes.md"):
        _upload(ws, embedder, name, later, "team", "mallory")
    told = {name: erase(ws, name, "mallory").earlier_uploads for name in ("minutes.md", "notes.md")}
    assert told == {"minutes.md": 1, "notes.md": 1}
    assert shared.is_file() and not alone.exists()


def test_a_deleted_document_s_words_leave_the_lexical_index_file(ws, embedder, tmp_path):
    """Before: `delete` left the document's chunks as dead positions in `index/lexical.npz`, their
    postings and its words in the term table, until a quarter of the index was dead (and the words
    for good), though docs/governance.md says delete removes its lexical postings. Now the file
    holds nothing of it, and what the other documents share with it is still found."""
    from conftest import ingest_texts
    from test_erasemend import DOCS, RARE, _lexical_bytes, _on_disk

    from archivist.ingest.pipeline import delete_document
    from archivist.retrieval import lexicon

    ingest_texts(ws, embedder, tmp_path / "docs", DOCS)
    stem = lexicon.tokens(RARE)[0]
    assert stem.encode() in _lexical_bytes(ws)
    delete_document(ws, "merger.md")
    kept = _on_disk(ws)
    assert stem.encode() not in _lexical_bytes(ws) and stem not in kept.terms
    assert len(kept.ids) == kept.n_live == ws.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
    canteen = kept.terms[lexicon.tokens("canteen")[0]]
    found = kept.ids[kept.post_pos[kept.indptr[canteen]:kept.indptr[canteen + 1]]].tolist()
    assert found == [r[0] for r in ws.db.execute(
        "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.path = 'canteen.md'")]


def test_feedback_drawn_on_or_written_from_a_collection_the_builder_cannot_read_is_no_example(ws, embedder, tmp_path):
    """mallory, reading `team` and `secret`, rated up three chat answers that cite only a `team`
    passage: one had a `secret` passage in its prompt, uncited; one was written by `board-tuned`, an
    adapter trained on `secret`; one drew on `team` alone. After `revoke mallory secret` her chat
    withholds the first two. Before: a fine-tune from her feedback still learned all three (only the
    cited passages were checked). Now only the third becomes an example; the grant back brings the
    others back, nothing was lost, and a dataset built from them names `secret` among its collections."""
    from archivist import conversations, feedback
    from archivist.finetune.datasets import build_dataset, examples_from_feedback

    team, secret = board_tuned(ws, embedder, tmp_path)
    cite = {"n": 1, "document": "handbook.md", "collection": "team", "page": None, "chunk_id": team[0], "score": 0.9,
            "text": team[1]}
    uncited = {"n": 2, "document": "board.md", "collection": "secret", "page": None, "chunk_id": secret[0],
               "score": 0.8, "text": secret[1]}
    rated = {}
    for label, passages, adapter in (("uncited secret passage", [cite, uncited], None),
                                     ("secret-trained adapter", [cite], "board-tuned"), ("team alone", [cite], None)):
        conv = conversations.start_conversation(ws, "mallory")
        question = f"When does the office open? ({label})"
        conversations.add_message(ws, conv, "mallory", "user", question)
        mid = conversations.add_message(ws, conv, "mallory", "assistant", "The office opens at eight [1].",
                                        citations=[cite], adapter=adapter,
                                        meta={"question": question, "collection": None, "passages": passages,
                                              "status": "answered"})
        [shown] = [m for m in conversations.messages(ws, conv, "mallory") if m["id"] == mid]
        rated[label] = feedback.rate_message(ws, "mallory", shown, rating=1)[0]
    examples, stats = examples_from_feedback(ws, "mallory", embedder=embedder)
    assert stats["used"] == list(rated.values())

    access.revoke(ws, "mallory", "secret")
    examples, stats = examples_from_feedback(ws, "mallory", embedder=embedder)
    assert stats["used"] == [rated["team alone"]]
    assert stats["skipped"] == {"the rated answer drew on a collection not readable": 2}
    assert [e.question for e in examples] == ["When does the office open? (team alone)"]
    assert [e.collections for e in examples] == [["team"]]

    assert build_dataset(ws, ["feedback"], user="mallory", embedder=embedder).manifest["collections"] == ["team"]

    access.grant(ws, "mallory", "secret", "read")
    assert examples_from_feedback(ws, "mallory", embedder=embedder)[1]["used"] == list(rated.values())
    # what an adapter trained on them learned from: the uncited passage's and the adapter's collections too
    # (before: only the cited passages', so a member reading `team` alone could chat with it)
    manifest = build_dataset(ws, ["feedback"], user="admin", embedder=embedder).manifest
    assert manifest["feedback"]["drew_on"] == manifest["collections"] == ["secret", "team"]

"""Erase's gaps found in review: an earlier upload left in a cut-short job (resumed, it brought the
erased document back), an adapter or adapted embedder saved while the erase recorded itself, a
document deleted while erase read the others, counts lost between passes, an evaluation's short
`key` kept beside its erased answer, and two uploads of one name in a batch. Real SQLite, real
files, the real default embedder."""

from __future__ import annotations

import json
import sqlite3

import pytest
from conftest import ingest_texts

from archivist import adapters, jobs
from archivist.finetune import embedders
from archivist.ingest import erase as erase_mod
from archivist.ingest.erase import erase
from archivist.ingest.pipeline import create_job, resume_interrupted, run_job
from archivist.ingest.uploads import save_upload
from archivist.retrieval import evaluation

V1 = b"# Salaries\n\nThe chief financial officer Maria Lopez earns 412,000 euros a year before bonus.\n"
V2 = b"# Salaries\n\nSalaries are confidential; ask HR for the band of your own role, never another's.\n"
BONUS = "# Bonus\n\nThe 2026 bonus pool is EUR 4.2 million, paid in March to every employee.\n"


def _upload(ws, embedder, data, finish=True):
    path, name = save_upload(ws, "salaries.md", data)
    job = create_job(ws, "upload", None, "default", [(path, name)])
    if finish:
        run_job(ws, job.id, embedder=embedder)
    return path, job


@pytest.mark.parametrize("state", ["interrupted", "failed", "cancelled"])
def test_an_earlier_upload_in_a_cut_short_job_is_erased_and_not_resumed(ws, embedder, state):
    """v1's upload job was cut short, v2's finished, the document is erased: v1's upload goes, and
    resuming v1's job does not bring the erased text back (it was still on disk, and `archivist
    serve` re-added it at start)."""
    p1, j1 = _upload(ws, embedder, V1, finish=False)
    jobs.start(ws, j1.id)
    ws.db.execute("UPDATE jobs SET state = ? WHERE id = ?", (state, j1.id))
    ws.db.commit()
    p2, _ = _upload(ws, embedder, V2)
    report = erase(ws, "salaries.md")
    assert report.upload == str(p2) and report.earlier_uploads == 1
    assert not p1.exists() and not p2.exists()
    job = jobs.get(ws, j1.id)
    assert job.spec["files"] == [] and job.spec["refused"][0][0] == "salaries.md"
    if state == "interrupted":
        resume_interrupted(ws, embedder=embedder)
    else:
        from archivist.ingest.pipeline import resume_job
        resume_job(ws, j1.id, embedder=embedder)
    assert ws.db.execute("SELECT COUNT(*) FROM documents").fetchone()[0] == 0
    assert not any(b"Maria Lopez" in f.read_bytes() for f in ws.home.rglob("*") if f.is_file() and "uploads" in f.parts)


def test_a_queued_ingest_of_the_document_refuses_the_erase(ws, embedder):
    """A live job (queued by a process still running) would store the document again: the erase is
    refused with the job named, and nothing is erased."""
    _upload(ws, embedder, V1)
    _, queued = _upload(ws, embedder, V2, finish=False)
    with pytest.raises(ValueError, match=f"is queued \\(job {queued.id}\\).*archivist jobs cancel"):
        erase(ws, "salaries.md")
    assert ws.db.execute("SELECT COUNT(*) FROM documents").fetchone()[0] == 1
    assert not [j for j in jobs.every(ws, ("erase",))]
    jobs.cancel(ws, queued.id)
    assert erase(ws, "salaries.md").earlier_uploads == 1  # the cancelled job's v2 upload, taken out of it


def _lineage(ws):
    doc = dict(ws.db.execute("SELECT id, path FROM documents WHERE path = 'bonus.md'").fetchone())
    return doc["id"], {"dataset": {"name": "d"}, "documents": [doc | {"collection": "hr"}], "collections": ["hr"]}


def test_an_adapter_and_an_embedder_saved_while_the_erase_records_itself_are_stale(ws, embedder, tmp_path, monkeypatch):
    """Reviewer's race: a run registers (or saves its embedder) right after erase looked for what
    learned from the document and before the `document.erased` record; both were left fresh."""
    ingest_texts(ws, embedder, tmp_path / "docs", {"hr": {"bonus.md": BONUS}})
    doc_id, lineage = _lineage(ws)
    saved = tmp_path / "lora"
    saved.mkdir()
    (saved / "adapter_config.json").write_text("{}")
    scan = embedders.learned_from

    def learned_from(w, document_id):
        out = scan(w, document_id)
        gone = w.db.execute("SELECT 1 FROM documents WHERE id = ?", (document_id,)).fetchone() is None
        if gone and not w.db.execute("SELECT 1 FROM adapters WHERE name = 'during'").fetchone():
            # the training runs, in their own processes, finish right after erase's first scan
            rec = adapters.register(w, "during", saved, w.settings.llm, {"better": True, "reason": "t"}, lineage)
            assert rec["stale"] == "trained on a deleted document: bonus.md"  # no record yet, but its erase job is under way
            late = embedders.folder(w, "emb-late")
            late.mkdir(parents=True)
            (late / embedders.MANIFEST).write_text(json.dumps({"name": "emb-late", "documents": {"train": [document_id]}}))
        return out

    monkeypatch.setattr(embedders, "learned_from", learned_from)
    report = erase(ws, "bonus.md")
    assert report.adapters == ["during"] and report.embedders == ["emb-late"]
    assert adapters.get(ws, "during")["stale"] == "trained on a deleted document: bonus.md"
    assert embedders.load_manifest(ws, "emb-late")["stale"] == "trained on a deleted document: bonus.md"


def test_a_document_deleted_while_erase_reads_the_others_is_skipped(ws, embedder, tmp_path):
    """reviewB's race.py: a TypeError escaped when another process deleted a document between the
    list of the others and the read of its text."""
    ingest_texts(ws, embedder, tmp_path / "docs", {"default": {
        f"d{i}.md": f"# Doc {i}\n\nDocument number {i} says the parking garage opens at {6 + i} in the morning.\n"
        for i in range(3)}})
    gen = erase_mod._other_documents(ws, 1, None)
    assert next(gen)[0] == "d1.md (default)"
    other = sqlite3.connect(ws.home / "archivist.db")
    other.execute("DELETE FROM chunks WHERE document_id = 3")
    other.execute("DELETE FROM documents WHERE id = 3")
    other.commit()
    other.close()
    assert list(gen) == []


def test_merge_adds_held_copies_and_unites_the_documents_holding_them():
    old = {"messages": 1, "held_copies": {"feedback": 1, "messages": 2}, "held_elsewhere": ["a.md (x)"]}
    new = {"messages": 2, "held_copies": {"feedback": 3}, "held_elsewhere": ["b.md (y)", "a.md (x)"]}
    out = erase_mod._merge(old, new)
    assert out["messages"] == 3
    assert out["held_copies"] == {"feedback": 4, "messages": 2}
    assert out["held_elsewhere"] == ["a.md (x)", "b.md (y)"]


def test_an_erased_answers_key_and_gold_go_with_it(ws):
    """The short answer copied from a passage ("EUR 4.2 million") is under erase.MIN_MATCH, so it
    survived the erase that replaced its row's answer."""
    answer = "The 2026 bonus pool is EUR 4.2 million, paid in March to every employee."
    row = {"question": "How big is the bonus pool?", "gold": "EUR 4.2 million", "answer": answer, "status": "answered",
           "mode": "extractive", "key": "EUR 4.2 million", "key_right": True, "token_f1": 0.5}
    untouched = {**row, "question": "Where is the office?", "answer": "In Lisbon.", "key": "Lisbon", "gold": "Lisbon"}
    ws.db.execute("INSERT INTO evaluations(kind, set_name, results) VALUES ('answers', 's', ?)",
                  (json.dumps({"per_question": [row, untouched]}),))
    ws.db.commit()
    erased = erase_mod.matcher(BONUS, [])
    assert evaluation.erase_text(ws, erased) == 1
    got = json.loads(ws.db.execute("SELECT results FROM evaluations").fetchone()[0])["per_question"]
    assert got[0] == {**row, "answer": "[erased]", "key": "[erased]", "gold": "[erased]"}
    assert got[1] == untouched


def test_two_uploads_of_one_name_in_a_batch_keep_the_first(ws, embedder):
    """reviewB's batch.py: both reported a success, only Team B's text was kept, and Team A's upload
    stayed on disk. The second is refused, its upload removed."""
    a = save_upload(ws, "notes.md", b"# Team A\n\nTeam A meets on Mondays at nine in room B2.\n")
    b = save_upload(ws, "notes.md", b"# Team B\n\nTeam B meets on Fridays at four in room C7.\n")
    job = create_job(ws, "upload", None, "default", [a, b])
    assert [r.status for r in run_job(ws, job.id, embedder=embedder)] == ["added"]
    assert job.spec["refused"] == [["notes.md", "another file of this batch is also named notes.md and would replace it; "
                                                "not ingested (rename one of them)"]]
    [(text,)] = ws.db.execute("SELECT text FROM documents").fetchall()
    assert "Team A meets on Mondays" in text and "Team B" not in text
    assert a[0].exists() and not b[0].exists()


def test_adapters_registered_during_or_after_a_persons_erase_are_stale(ws, embedder, tmp_path, monkeypatch):
    """`users erase` looked for the adapters trained on the person's feedback before its transaction,
    and `register` did not check for erased feedback at all: a run whose dataset held Mara's
    correction registered fresh, during the erase or after it."""
    from archivist import access, auth, feedback, user_erase
    from archivist.finetune import datasets

    ingest_texts(ws, embedder, tmp_path / "docs", {"hr": {"bonus.md": BONUS}})
    auth.create_user(ws, "mara", "mara-pass-12", by="admin")
    access.grant(ws, "mara", "hr", "read", by="admin")
    fid = feedback.record_feedback(ws, "mara", "How big is the bonus pool?", "EUR 4.2 million [1].", rating=-1,
                                   correction="It is EUR 4.2 million, but Quentaro says it may shrink.", collection="hr")
    feedback.review_correction(ws, None, fid, approve=True)  # a member's correction is learned once an admin approved it
    ds = datasets.build_dataset(ws, ["feedback"], user="admin", embedder=embedder, progress=False, name="fb")
    saved = tmp_path / "lora"
    saved.mkdir()
    (saved / "adapter_config.json").write_text("{}")
    lineage = {"dataset": {"name": "fb", "manifest": ds.manifest}, "documents": ds.manifest["documents"], "collections": ["hr"]}

    def register(name):
        return adapters.register(ws, name, saved, ws.settings.llm, {"better": False, "reason": "t"}, lineage, activate=False)

    rename = user_erase._rename_in_files

    def rename_then_register(w, formers):  # the run's own process registers between the look and the transaction
        register("during")
        return rename(w, formers)

    monkeypatch.setattr(user_erase, "_rename_in_files", rename_then_register)
    report = user_erase.erase_user(ws, "mara", by="admin")
    assert report.adapters == ["during"]
    assert adapters.get(ws, "during")["stale"] == "trained on feedback of an erased user (mara)"
    assert register("after")["stale"] == "trained on feedback deleted since (an erased user's, or citing an erased document)"


def test_a_members_erase_leaves_adapter_examples_another_collections_copy_holds(ws, embedder, tmp_path):
    """reviewB item 11: the adapter learned from both copies (one in a collection the member cannot
    read); the member's erase of theirs scrubbed the examples the other copy holds too."""
    from archivist import access

    ingest_texts(ws, embedder, tmp_path / "docs", {"a": {"bonus.md": BONUS}, "secret": {"bonus-copy.md": BONUS}})
    access.add_user(ws, "rita", by="admin")
    access.grant(ws, "rita", "a", "write", by="admin")
    docs = [dict(r) | {"collection": c} for r, c in zip(
        ws.db.execute("SELECT id, path FROM documents ORDER BY id").fetchall(), ("a", "secret"))]
    saved = tmp_path / "lora"
    saved.mkdir()
    (saved / "adapter_config.json").write_text("{}")
    example = {"question": "How big is the bonus pool?", "gold": "The 2026 bonus pool is EUR 4.2 million, paid in March to every employee."}
    adapters.register(ws, "both", saved, ws.settings.llm, {"better": False, "examples": [example]},
                      {"dataset": {"name": "d"}, "documents": docs, "collections": ["a", "secret"]}, activate=False)
    report = erase(ws, "bonus.md", user="rita")
    assert report.adapter_examples == 0 and report.adapters == []
    assert json.loads((adapters.path(ws, "both") / "metrics.json").read_text())["examples"] == [example]
    assert adapters.get(ws, "both")["stale"] == "trained on a deleted document: bonus.md"

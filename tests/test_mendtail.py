"""An erase, a re-ingest, the sign-in throttle and the Evaluation page, as a member and an attacker see them."""

from __future__ import annotations

import pytest

from archivist import access
from conftest import adapter_trained_on

MINUTES = b"# Board minutes\n\nThe board approved the Quillfeather acquisition for 41 million euros.\n"


def _upload(ws, embedder, name: str, data: bytes, collection: str, user: str):
    """Store `data` as an upload named `name` and ingest it into `collection` as `user`; returns its file."""
    from archivist.ingest.pipeline import create_job, run_job
    from archivist.ingest.uploads import save_upload

    path, _ = save_upload(ws, name, data)
    run_job(ws, create_job(ws, "upload", user, collection, [(path, name)]).id, embedder=embedder)
    return path


def test_a_member_s_erase_text_does_not_say_removed_of_an_upload_kept_for_a_collection_she_cannot_read(ws, embedder, cli):
    """Before: `archivist erase` printed "upload removed: PATH" to mallory for `minutes.md`, whose
    file stays because a document in `secret` was read from the same bytes (her --json names the path
    either way, as it does for `copy.md`, hers alone). Now the text says what the JSON says: the
    upload is no longer this document's, in the same words for both; an admin still reads "removed"."""
    access.add_user(ws, "mallory", "member")
    access.create_collection(ws, "team", by="admin")
    access.grant(ws, "mallory", "team", "write")
    shared = _upload(ws, embedder, "minutes.md", MINUTES, "secret", "admin")
    assert _upload(ws, embedder, "minutes.md", MINUTES, "team", "mallory") == shared
    alone = _upload(ws, embedder, "copy.md", MINUTES, "team", "mallory")
    said = {}
    for name, path in (("minutes.md", shared), ("copy.md", alone)):
        out = cli("erase", name, env={"ARCHIVIST_USER": "mallory"})
        assert out.returncode == 0, out.stderr
        said[name] = next(line for line in out.stdout.splitlines() if "evaluations" in line).replace(str(path), "PATH")
        assert f"upload no longer this document's: {path}" in out.stdout and "upload removed" not in out.stdout
    assert said["minutes.md"] == said["copy.md"]
    assert shared.is_file() and not alone.exists()
    again = _upload(ws, embedder, "copy.md", MINUTES, "team", "admin")
    out = cli("erase", "copy.md", env={"ARCHIVIST_USER": "admin"})
    assert f"upload removed: {again}" in out.stdout and not again.exists()


def test_a_changed_document_s_old_words_leave_the_lexical_index_file_when_it_is_ingested_again(ws, embedder, tmp_path):
    """Before: re-ingesting a changed `merger.md` replaced its chunks, but the term table of
    `index/lexical.npz` kept the word only its old version had (a name, readable in the file), as a
    delete did before erasemend2. Now the file holds none of the old version and the new words are found."""
    from conftest import ingest_texts
    from test_erasemend import DOCS, RARE, _lexical_bytes, _on_disk

    from archivist.retrieval import lexicon

    folder = ingest_texts(ws, embedder, tmp_path / "docs", DOCS)
    stem = lexicon.tokens(RARE)[0]
    assert stem.encode() in _lexical_bytes(ws)
    ingest_texts(ws, embedder, folder, {"hr": {"merger.md": "# Merger\n\nThe Zelphorin merger closes in March.\n"}})
    kept = _on_disk(ws)
    assert stem not in kept.terms and stem.encode() not in _lexical_bytes(ws)
    assert len(kept.ids) == kept.n_live == ws.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
    new = kept.terms[lexicon.tokens("Zelphorin")[0]]
    found = kept.ids[kept.post_pos[kept.indptr[new]:kept.indptr[new + 1]]].tolist()
    assert found == [r[0] for r in ws.db.execute(
        "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.path LIKE '%merger.md'")]


def test_guesses_sent_at_the_same_moment_pass_the_sign_in_gate_no_more_than_guesses_sent_one_by_one(settings):
    """Twelve wrong guesses for nina, each from its own connection (an app session, another process),
    released together. Before: each read the count before any had added to it, so all twelve had their
    password checked. Now the gate and the count are one transaction: five are checked, as in a row,
    the rest wait; her right password then waits too, and once let in it clears the count."""
    import threading

    from archivist import auth
    from archivist.workspace import open_workspace

    with open_workspace(settings) as ws:
        auth.create_user(ws, "nina", "nina-pass-12", by="admin")
    n = 12
    conns = [open_workspace(settings) for _ in range(n)]
    start, told = threading.Barrier(n), [None] * n

    def guess(i: int) -> None:
        start.wait()
        try:
            auth.sign_in(conns[i], "nina", f"guess-{i}")
        except auth.AuthError as e:
            told[i] = str(e)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in conns:
        c.close()
    checked = [t for t in told if t == "wrong user name or password"]
    assert len(checked) == auth.FREE_FAILURES, told
    assert all(t.startswith("too many failed sign-ins for this name") for t in told if t not in checked)
    with open_workspace(settings) as ws:
        (failures, last), = ws.db.execute("SELECT failures, last_failure FROM sign_in_failures").fetchall()
        assert failures == auth.FREE_FAILURES
        with pytest.raises(auth.AuthError, match="try again in"):
            auth.sign_in(ws, "nina", "nina-pass-12")
        auth.sign_in(ws, "nina", "nina-pass-12", clock=lambda: last + auth.FIRST_DELAY)
        assert ws.db.execute("SELECT COUNT(*) FROM sign_in_failures").fetchone()[0] == 0


def test_the_evaluation_page_names_no_model_for_a_run_withheld_from_its_reader(ws, tmp_path):
    """mallory's answers runs on one set: by `board-tuned` (trained on `secret`), by the base model on
    `secret`'s passages, and by the base model on `team`'s. After `revoke mallory secret` the first two
    are withheld. Before: the page still said "answered by: adapter board-tuned" (and "base model" for
    the other, telling the two apart), where her chat hides the adapter's name. Now a withheld run
    names no model, is compared with no other run, and the run she may still read says "base model"."""
    import os
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from archivist import auth
    from archivist.retrieval.evaluation import store_evaluation

    os.environ.setdefault("ARCHIVIST_UI_WARMUP", "0")  # no background model loading inside the test process
    auth.create_first_admin(ws, "alice", "alice-pass-1")
    auth.create_user(ws, "mallory", "mallory-pass-1", by="alice")
    for c in ("team", "secret"):
        access.create_collection(ws, c, by="alice")
        access.grant(ws, "mallory", c, "read", by="alice")
    adapter_trained_on(ws, tmp_path / "saved-adapter", "board-tuned", ["secret"], "board.md")
    runs = {}
    for label, adapter, drawn, score in (("team", None, "team", 0.5), ("secret", None, "secret", 0.6),
                                         ("adapter", "board-tuned", "team", 0.9)):
        runs[label] = store_evaluation(ws, "answers", "mine.jsonl", {
            "adapter": adapter, "collections": [drawn], "metrics": {"questions": 1, "accuracy": score},
            "per_question": [{"question": "q", "answer": "a [1]", "cited_documents": ["x.md"]}]}, user="mallory")
    access.revoke(ws, "mallory", "secret", by="alice")

    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "ui" / "app.py"), default_timeout=60)
    at.session_state["_token"] = auth.create_session(ws, "mallory")
    at.run()
    at = at.switch_page("views/evaluation.py").run()
    assert not at.exception, [e.value for e in at.exception]
    shown = " ".join(c.value for c in at.caption)
    table = at.dataframe[-2].value
    answered = dict(zip(table["run"], table["answered by"]))
    assert "board-tuned" not in shown + str(answered)
    hidden = answered[runs["adapter"]]
    assert answered == {runs["adapter"]: hidden, runs["secret"]: hidden, runs["team"]: "base model"}
    assert "base model" not in hidden and hidden != "(not recorded)"
    assert f"answered by: {hidden}" in shown and "change since" not in shown and "base model" not in shown
    assert not [m.delta for m in at.metric if m.delta]  # no change shown against another run

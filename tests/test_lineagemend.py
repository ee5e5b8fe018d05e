"""A deleted adapter's lineage outlives its row (schema 15's `deleted_adapters`, filled by a trigger),
so what it wrote stays withheld from a reader who lost a collection it learned from: the chat answer,
the feedback on it, a feedback dataset's row and a stored evaluation, exactly as while it was
registered. An adapter deleted before that release has no lineage kept: its answers are withheld from
everyone who may not read every collection, under a notice that names none of them."""

from __future__ import annotations

import json

from conftest import board_tuned, mallory_reads

from archivist import access, adapters, conversations, feedback
from archivist.finetune.datasets import examples_from_feedback
from archivist.retrieval.evaluation_store import WITHHELD_ADAPTER, get_evaluation, store_evaluation
from archivist.schema import MIGRATIONS
from archivist.workspace import open_workspace


def _answered_by(ws, adapter: str, team: tuple[int, str], user: str = "mallory") -> tuple[int, int, int, int]:
    """`user`'s chat answer written by `adapter` from team's passage alone, her thumbs up on it, and her
    stored evaluation run (generated answers) of that adapter on `team`: (conversation, message, feedback, evaluation)."""
    cite = {"n": 1, "document": "handbook.md", "collection": "team", "page": None, "chunk_id": team[0], "score": 0.9,
            "text": team[1]}
    conv = conversations.start_conversation(ws, user)
    question = "When does the office open?"
    conversations.add_message(ws, conv, user, "user", question)
    mid = conversations.add_message(ws, conv, user, "assistant", "The office opens at eight [1].", citations=[cite],
                                    adapter=adapter, meta={"question": question, "collection": None, "passages": [cite],
                                                           "status": "answered"})
    [shown] = [m for m in conversations.messages(ws, conv, user) if m["id"] == mid]
    fid = feedback.rate_message(ws, user, shown, rating=1)[0]
    eid = store_evaluation(ws, "answers", "q.jsonl", {
        "metrics": {"accuracy": 1.0}, "adapter": adapter, "mode": "generate", "collections": ["team"],
        "per_question": [{"question": question, "answer": "The office opens at eight."}]}, user=user)
    return conv, mid, fid, eid


def _seen(ws, user: str, conv: int, mid: int, fid: int, eid: int) -> dict:
    """What `user` is shown of each: the answer's text and adapter, the feedback row's answer and
    adapter, the evaluation's answer and adapter."""
    [m] = [m for m in conversations.messages(ws, conv, user) if m["id"] == mid]
    [f] = feedback.list_feedback(ws, user, ids=[fid])
    ev = get_evaluation(ws, eid, user=user).results
    return {"message": (m["content"], m["adapter"]), "feedback": (f["answer"], f["adapter"]),
            "evaluation": (ev["per_question"][0]["answer"], ev["adapter"])}


def test_a_deleted_adapter_s_answers_stay_withheld_from_a_reader_who_lost_what_it_learned(ws, embedder, tmp_path):
    """Before: deleting `board-tuned`'s row (there is no command: by hand in SQLite) took its lineage
    with it, so after mallory lost `secret` its old answer, her feedback on it, her evaluation run and
    the feedback's dataset row were all shown or used again, as if the base model had written them.
    Now the trigger keeps its lineage, and they are withheld as while it was registered, also after a
    new adapter is registered under the same name (an answer names its adapter by name alone)."""
    team, _ = board_tuned(ws, embedder, tmp_path)
    ids = _answered_by(ws, "board-tuned", team)
    fid = ids[2]
    ws.db.execute("DELETE FROM adapters WHERE name = 'board-tuned'")
    ws.db.commit()
    shown = "The office opens at eight [1]."
    assert _seen(ws, "mallory", *ids)["message"] == (shown, "board-tuned")  # she still reads `secret`
    assert examples_from_feedback(ws, "mallory", embedder=embedder)[1]["used"] == [fid]

    access.revoke(ws, "mallory", "secret")
    withheld = conversations.WITHHELD.format("secret")
    note = "[withheld: this run drew on secret, which you can no longer read]"
    expected = {"message": (withheld, None), "feedback": (withheld, None), "evaluation": (note, WITHHELD_ADAPTER)}
    assert _seen(ws, "mallory", *ids) == expected
    assert adapters.answered_from(adapters.registrations(ws, "board-tuned"), None) == {"secret"} and adapters.trained_on(ws, "board-tuned") is None
    examples, stats = examples_from_feedback(ws, "mallory", embedder=embedder)
    assert (examples, stats["skipped"]) == ([], {"the rated answer drew on a collection not readable": 1})
    [row] = feedback.list_feedback(ws, "admin", ids=[fid])  # the admin reads `secret`: shown
    assert (row["answer"], row["adapter"]) == (shown, "board-tuned")

    # the name taken again by an adapter trained on `team` alone: the old answer is still the old one's
    (tmp_path / "again").mkdir()
    (tmp_path / "again" / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    adapters.register(ws, "board-tuned", tmp_path / "again", ws.settings.llm, {"better": False},
                      {"dataset": {"name": "d"}, "collections": ["team"], "documents": []}, activate=False)
    assert adapters.may_use(ws, "mallory", "board-tuned")  # the new one is hers to use
    assert _seen(ws, "mallory", *ids) == expected


def test_an_adapter_deleted_before_its_lineage_was_kept_is_withheld_from_all_but_readers_of_everything(
        ws, embedder, tmp_path):
    """A workspace of schema 14 whose adapter row was deleted then, upgraded: nothing says what it
    learned. Before: its answers were shown to everyone, as the base model's. Now it counts as having
    learned from every collection: mallory, who reads `team` alone, is shown a notice that names no
    collection she cannot read (not even that `secret` exists) and her feedback row is no example; the
    admin and a member granted every collection still see it."""
    team, _ = board_tuned(ws, embedder, tmp_path)
    access.add_user(ws, "rita", "member")
    for c in ("team", "secret"):
        access.grant(ws, "rita", c, "read")
    asked = {who: _answered_by(ws, "board-tuned", team, who) for who in ("mallory", "rita", "admin")}
    ws.db.executescript("DROP TRIGGER IF EXISTS adapters_ad; DROP TABLE IF EXISTS deleted_adapters; PRAGMA user_version = 14;")
    ws.db.execute("DELETE FROM adapters WHERE name = 'board-tuned'")  # by hand, before schema 15
    ws.db.commit()
    ws.close()

    upgraded = open_workspace(ws.settings)
    try:
        access.revoke(upgraded, "mallory", "secret")
        seen = _seen(upgraded, "mallory", *asked["mallory"])
        assert [seen[k][0].startswith("[withheld: ") for k in ("message", "feedback", "evaluation")] == [True] * 3
        unknown = conversations.WITHHELD.format(conversations.UNKNOWN_LINEAGE)
        assert seen["message"] == seen["feedback"] == (unknown, None)
        assert upgraded.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert adapters.answered_from(adapters.registrations(upgraded, "board-tuned"), None) is None
        assert seen["evaluation"][1] == WITHHELD_ADAPTER and "secret" not in str(seen)
        examples, stats = examples_from_feedback(upgraded, "mallory", embedder=embedder)
        assert (examples, stats["skipped"]) == ([], {"the rated answer drew on a collection not readable": 1})
        for who in ("rita", "admin"):
            assert _seen(upgraded, who, *asked[who]) == {
                "message": ("The office opens at eight [1].", "board-tuned"),
                "feedback": ("The office opens at eight [1].", "board-tuned"),
                "evaluation": ("The office opens at eight.", "board-tuned")}
    finally:
        upgraded.close()


def test_the_trigger_keeps_no_more_of_a_lineage_than_its_collections_and_documents(ws, tmp_path):
    """What the kept lineage holds: the collections and documents `trained_on` reads, not the settings
    (which name who trained it, and `users erase` scrubs only the adapters row); an unparsable lineage
    counts as no collection, as it did while registered."""
    mallory_reads(ws)
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    adapters.register(ws, "kept", folder, ws.settings.llm, {"better": False},
                      {"dataset": {"name": "d"}, "collections": ["team"], "settings": {"user": "mallory"},
                       "documents": [{"id": 7, "path": "board.md", "collection": "secret"}]}, activate=False)
    ws.db.execute("INSERT INTO adapters(name, path, base_model, lineage, created_at) "
                  "VALUES ('torn', '/x', 'm', '{not json', 1000000000.25)")  # registered long before its deletion
    made = dict(ws.db.execute("SELECT name, created_at FROM adapters WHERE name IN ('kept', 'torn')").fetchall())
    ws.db.execute("DELETE FROM adapters WHERE name IN ('kept', 'torn')")
    ws.db.commit()
    rows = {n: json.loads(v) for n, v in ws.db.execute("SELECT name, lineage FROM deleted_adapters").fetchall()}
    assert {n: set(v) for n, v in rows.items()} == {"kept": {"collections", "documents", "registered_at"},
                                                    "torn": {"registered_at"}}  # nothing of its settings (who trained it)
    assert rows["kept"]["documents"] == [{"id": 7, "path": "board.md", "collection": "secret"}]
    # each row's own registration time, to the 15 significant digits SQLite writes a REAL in JSON with
    assert all(abs(rows[n]["registered_at"] - made[n]) < 1e-4 for n in rows), (rows, made)
    assert [adapters.answered_from(adapters.registrations(ws, n), None) for n in ("kept", "torn")] == [{"team", "secret"}, set()]


def test_an_extractive_run_naming_an_adapter_keeps_its_answers_and_withholds_only_the_name(ws, embedder, tmp_path):
    """`eval answers --answer-mode extractive` names the adapter that was active, though no model wrote
    its answers (quotes of its passages). Before: a reader who lost a collection that adapter learned
    from had the run's answers withheld too, stricter than the chat, where an extractive answer names no
    adapter. Now only the adapter's name is withheld; a generated run is withheld whole, as before."""
    team, _ = board_tuned(ws, embedder, tmp_path)
    runs = {mode: store_evaluation(ws, "answers", "q.jsonl", {
        "metrics": {"accuracy": 1.0}, "adapter": "board-tuned", "mode": mode, "collections": ["team"],
        "per_question": [{"question": "When does the office open?", "answer": "At eight."}]}, user="mallory")
        for mode in ("extractive", "generate")}
    access.revoke(ws, "mallory", "secret")
    extractive = get_evaluation(ws, runs["extractive"], user="mallory").results
    assert (extractive["per_question"][0]["answer"], extractive["adapter"]) == ("At eight.", WITHHELD_ADAPTER)
    assert "withheld" not in extractive
    generated = get_evaluation(ws, runs["generate"], user="mallory").results
    assert (generated["withheld"], generated["adapter"]) == (["secret"], WITHHELD_ADAPTER)
    assert generated["per_question"][0]["answer"].startswith("[withheld: ")
    access.grant(ws, "mallory", "secret", "read")
    assert get_evaluation(ws, runs["extractive"], user="mallory").results["adapter"] == "board-tuned"

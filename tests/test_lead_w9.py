"""The lead's mends of 2026-12-07's second session, found in the helpers' reports."""

from __future__ import annotations

import dataclasses

from archivist import access, adapters
from archivist.finetune import runs
from archivist.finetune.train import FinetuneConfig
from conftest import adapter_trained_on, mallory_reads


def test_a_new_account_given_a_deleted_trainer_s_name_may_not_retrain_her_adapter(ws, tmp_path):
    """`runs.may_retrain` trusted the name in the adapter's lineage: after bob was deleted, a new user
    named bob could retrain (and so succeed) the old bob's adapter. An account made after the adapter
    was registered is not its trainer."""
    folder = tmp_path / "lora"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    access.add_user(ws, "bob", "member")
    settings = dataclasses.asdict(FinetuneConfig(data=["docs"], max_steps=3, user="bob"))
    adapters.register(ws, "bobs", folder, ws.settings.llm, {"better": False, "reason": "t"},
                      {"dataset": {"name": "d"}, "collections": [], "settings": settings}, activate=False)
    assert runs.may_retrain(ws, "bob", "bobs")
    access.delete_user(ws, "bob")
    ws.db.execute("UPDATE adapters SET created_at = created_at - 60 WHERE name = 'bobs'")  # registered a minute before
    access.add_user(ws, "bob", "member")  # a new employee, given the name
    ws.db.commit()
    assert not runs.may_retrain(ws, "bob", "bobs")
    assert runs.may_retrain(ws, "admin", "bobs")


def test_a_finished_answer_is_withheld_when_its_adapter_learned_from_a_collection_just_revoked(ws, tmp_path):
    """The check before an answer is sent or saved (`withhold_unsaved`, the API and the chat page) and
    before each streamed draft piece looked at the passages' collections only: an answer written by an
    adapter trained on `secret` went out in the one response after the reader lost `secret`, though
    her conversation withholds it from then on (`conversations.learned_from`)."""
    import pytest

    from archivist.records import Hit
    from archivist.retrieval.answer import withhold_unsaved

    mallory_reads(ws)
    adapter_trained_on(ws, tmp_path / "lora", "secret-v1", ["secret"])
    passage = [Hit(1, 1, "handbook.md", "team", "Leave is booked in the portal.", 1.0)]
    withhold_unsaved(ws, "mallory", passage, "secret-v1")  # she reads both: nothing withheld
    access.revoke(ws, "mallory", "secret")
    ws.db.commit()
    withhold_unsaved(ws, "mallory", passage)  # the base model's answer from `team` goes out
    with pytest.raises(access.AccessDenied, match="lost read access to secret"):
        withhold_unsaved(ws, "mallory", passage, "secret-v1")


def test_a_stored_comparison_does_not_name_an_adapter_that_learned_from_a_collection_the_reader_lost(ws, tmp_path):
    """`eval answers --compare RUN` keeps the earlier run's adapter in its own run's `comparison`. The
    run itself drew on `team` only, so it was not withheld when mallory lost `secret`, and it went on
    naming `board-tuned`, an adapter trained on `secret` (the chat and the runs themselves hide it)."""
    from archivist.retrieval.evaluation import get_evaluation, store_evaluation

    mallory_reads(ws)
    adapter_trained_on(ws, tmp_path / "saved-adapter", "board-tuned", ["secret"], "board.md")
    run = store_evaluation(ws, "answers", "mine.jsonl", {
        "adapter": None, "collections": ["team"], "metrics": {"accuracy": 0.5},
        "comparison": {"with": 1, "adapter": "board-tuned", "mode": "auto", "metrics": {}}}, user="mallory")
    assert get_evaluation(ws, run, user="mallory").results["comparison"]["adapter"] == "board-tuned"
    access.revoke(ws, "mallory", "secret")
    ws.db.commit()
    results = get_evaluation(ws, run, user="mallory").results
    assert results["comparison"]["adapter"] == "[withheld]" and "withheld" not in results
    assert get_evaluation(ws, run, user="admin").results["comparison"]["adapter"] == "board-tuned"

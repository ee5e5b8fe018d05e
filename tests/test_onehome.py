"""A fine-tune dataset limited to chosen collections says why it left a feedback row out: a
collection the user reads but did not choose is "not chosen", not "not readable"."""

from __future__ import annotations

from archivist import access
from conftest import board_tuned


def test_feedback_left_out_of_chosen_collections_is_not_chosen_rather_than_not_readable(ws, embedder, tmp_path):
    """mallory reads `team` and `secret` and rated up four answers: one asked in `secret`, one citing
    `team` with an uncited `secret` passage, one written by an adapter trained on `secret`, and one on
    `team` alone. Limited to `team`, the first three are left out. Before, the reasons said "not readable",
    of collections she reads; now "not chosen". Once `secret` is revoked they say "not readable"."""
    from archivist import conversations, feedback
    from archivist.finetune.datasets import examples_from_feedback

    team, secret = board_tuned(ws, embedder, tmp_path)
    cite = {"n": 1, "document": "handbook.md", "collection": "team", "page": None, "chunk_id": team[0], "score": 0.9,
            "text": team[1]}
    board = {**cite, "document": "board.md", "collection": "secret", "chunk_id": secret[0], "text": secret[1]}
    uncited = {**board, "n": 2}
    rated = {}
    for label, asked_in, cited, passages, adapter in (
            ("asked in secret", "secret", board, [board], None), ("uncited secret passage", None, cite, [cite, uncited], None),
            ("secret-trained adapter", None, cite, [cite], "board-tuned"), ("team alone", None, cite, [cite], None)):
        conv = conversations.start_conversation(ws, "mallory")
        question = f"What is in the handbook? ({label})"
        conversations.add_message(ws, conv, "mallory", "user", question)
        mid = conversations.add_message(ws, conv, "mallory", "assistant", "It says so [1].", citations=[cited],
                                        adapter=adapter, meta={"question": question, "collection": asked_in,
                                                               "passages": passages, "status": "answered"})
        [shown] = [m for m in conversations.messages(ws, conv, "mallory") if m["id"] == mid]
        rated[label] = feedback.rate_message(ws, "mallory", shown, rating=1)[0]
    assert examples_from_feedback(ws, "mallory", embedder=embedder)[1]["used"] == list(rated.values())

    examples, stats = examples_from_feedback(ws, "mallory", collections=["team"], embedder=embedder)
    assert stats["used"] == [rated["team alone"]]
    assert stats["skipped"] == {"collection not chosen": 1, "the rated answer drew on a collection not chosen": 2}
    assert [e.collections for e in examples] == [["team"]]

    examples, stats = examples_from_feedback(ws, "mallory", collections=["secret"], embedder=embedder)
    assert stats["used"] == [rated["asked in secret"]]
    assert stats["skipped"] == {"the rated answer drew on a collection not chosen": 3}

    access.revoke(ws, "mallory", "secret")
    examples, stats = examples_from_feedback(ws, "mallory", collections=["team"], embedder=embedder)
    assert stats["used"] == [rated["team alone"]]
    assert stats["skipped"] == {"collection not readable": 1, "the rated answer drew on a collection not readable": 2}

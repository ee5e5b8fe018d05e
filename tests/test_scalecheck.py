"""Listing what a team stored asks SQLite a number of questions that does not grow with the rows: a
conversation's messages, the feedback list, the stored evaluations and a feedback dataset each read
their chunks, lineages and grants for the whole list (bench/access_scale.py measures them at a
team's scale: 1,000 messages, 20,000 feedback rows, 500 evaluations). Before, each row asked again:
a query per message and per feedback row for its live chunks, per run for the reader's collections
and its adapter's lineage, per dataset row for its cited chunks."""

from __future__ import annotations

from collections import Counter

from archivist import access
from conftest import adapter_trained_on, ingest_texts, mallory_reads


def _queries(ws, fn):
    """(how many statements `fn()` ran on the workspace's database, its result)."""
    n = [0]
    ws.db.set_trace_callback(lambda _: n.__setitem__(0, n[0] + 1))
    try:
        result = fn()
    finally:
        ws.db.set_trace_callback(None)
    return n[0], result


def _team(ws, embedder, tmp_path):
    """mallory reads `team` and `secret`; an adapter learned from `secret`; returns the handbook's chunk
    (id, text) and three citations: of that chunk, of its text under an id since re-ingested, and of a
    document since deleted."""
    ingest_texts(ws, embedder, tmp_path / "docs", {
        "team": {"handbook.md": "# Handbook\n\nThe office opens at eight in the morning on weekdays.\n"},
        "secret": {"board.md": "# Board\n\nCodename Bluefinch: the merger with Zephyr closes on March 3.\n"}})
    mallory_reads(ws, create=False)
    adapter_trained_on(ws, tmp_path / "saved-adapter", "board-tuned", ["secret"], "board.md")
    chunk, text = ws.db.execute("SELECT c.id, c.text FROM chunks c JOIN documents d ON d.id = c.document_id "
                                "WHERE d.path = 'handbook.md'").fetchone()
    live = {"n": 1, "document": "handbook.md", "collection": "team", "page": None, "chunk_id": chunk, "text": text}
    return chunk, [live, {**live, "n": 2, "chunk_id": chunk + 1000}, {**live, "n": 3, "document": "gone.md", "chunk_id": chunk + 2000}]


def _answers(ws, conv, feedback, conversations, cited, n: int, adapter: str | None = None) -> None:
    for i in range(n):
        conversations.add_message(ws, conv, "mallory", "user", f"When does the office open? ({i})")
        mid = conversations.add_message(ws, conv, "mallory", "assistant", "At eight [1][2][3].", citations=cited,
                                        adapter=adapter, meta={"collection": "team", "passages": cited})
        feedback.record_feedback(ws, "mallory", f"When does the office open? ({i})", "At eight [1][2][3].", rating=1,
                                 citations=cited, collection="team", message_id=mid, adapter=adapter)


def test_a_conversation_and_the_feedback_list_ask_no_query_per_row(ws, embedder, tmp_path):
    """10 answers, then 100: messages() and list_feedback (the admin's, mallory's) ask as many queries
    for both (before: one more per answer and per row, for its live chunks), and mark each passage as
    before: the live chunk current, its text under a re-ingested id current at the live chunk, the
    deleted document's deleted; an answer of the secret-trained adapter withheld from mallory, with its
    name, not from the admin."""
    from archivist import conversations, feedback

    chunk, cited = _team(ws, embedder, tmp_path)
    conv = conversations.start_conversation(ws, "mallory")
    _answers(ws, conv, feedback, conversations, cited, 1, adapter="board-tuned")
    _answers(ws, conv, feedback, conversations, cited, 9)
    access.revoke(ws, "mallory", "secret")
    calls = {"messages": lambda: conversations.messages(ws, conv, "mallory"),
             "admin's feedback": lambda: feedback.list_feedback(ws, None),
             "mallory's feedback": lambda: feedback.list_feedback(ws, "mallory")}
    few = {k: _queries(ws, fn)[0] for k, fn in calls.items()}
    _answers(ws, conv, feedback, conversations, cited, 90)
    many = {k: _queries(ws, fn) for k, fn in calls.items()}
    assert {k: v[0] for k, v in many.items()} == few, "queries grew with the rows"

    marked = [("current", chunk), ("current", chunk), ("deleted", chunk + 2000)]
    answers = [m for m in many["messages"][1] if m["role"] == "assistant"]
    assert len(answers) == 100 and answers[0]["status"] == "withheld" and answers[0]["adapter"] is None
    for m in answers[1:]:
        for key in ("citations", "passages"):
            assert [(p["now"], p.get("chunk_id")) for p in m[key]] == marked
    for who, oldest in (("admin's feedback", "board-tuned"), ("mallory's feedback", None)):  # the admin reads `secret`
        rows = many[who][1]
        assert len(rows) == 100 and rows[-1].get("withheld", []) == ([] if oldest else ["secret"])  # newest first
        assert rows[-1]["adapter"] == oldest
        assert all([(p["now"], p["chunk_id"]) for p in r["citations"]] == marked for r in rows[:-1 if oldest is None else None])


def test_stored_evaluations_and_a_feedback_dataset_ask_no_query_per_row(ws, embedder, tmp_path):
    """5 stored runs, then 50: listing them asks as many queries (before: the reader's collections and
    the adapter's lineage again for each run), and those of the secret-trained adapter are withheld,
    its name too. 10 feedback rows, then 100: the feedback dataset reads their cited chunks at once
    (before: a query per row), and learns each from the same passages."""
    from archivist import conversations, feedback
    from archivist.finetune.datasets import examples_from_feedback
    from archivist.retrieval.evaluation import WITHHELD_ADAPTER, list_evaluations, store_evaluation

    chunk, cited = _team(ws, embedder, tmp_path)

    def runs(n: int) -> None:
        for i in range(n):
            store_evaluation(ws, "answers", "set.jsonl", {"collections": ["team"], "adapter": "board-tuned" if i % 2 else None,
                                                          "per_question": [{"question": "q?", "answer": "eight"}]}, user="mallory")

    access.revoke(ws, "mallory", "secret")
    runs(5)
    few = _queries(ws, lambda: list_evaluations(ws, user="mallory"))[0]
    runs(45)
    n, listed = _queries(ws, lambda: list_evaluations(ws, user="mallory"))
    assert n == few, "queries grew with the runs"
    shown = Counter((e.results["adapter"], tuple(e.results.get("withheld", ())), e.results["per_question"][0]["answer"] == "eight")
                    for e in listed)
    assert shown == {(None, (), True): 26, (WITHHELD_ADAPTER, ("secret",), False): 24}  # odd runs: 2 of 5, 22 of 45

    conv = conversations.start_conversation(ws, "mallory")
    _answers(ws, conv, feedback, conversations, cited, 10)
    few = _queries(ws, lambda: examples_from_feedback(ws, "mallory", embedder=embedder))[0]
    _answers(ws, conv, feedback, conversations, cited, 90)
    n, (examples, stats) = _queries(ws, lambda: examples_from_feedback(ws, "mallory", embedder=embedder))
    assert n == few, "queries grew with the rows"
    assert len(stats["used"]) == 100 and stats["skipped"] == {}
    document = ws.db.execute("SELECT document_id FROM chunks WHERE id = ?", (chunk,)).fetchone()[0]
    assert {(tuple(e.passages), e.document_id) for e in examples} == {((chunk, chunk + 1000, chunk + 2000), document)}


def test_answers_stored_before_passages_named_their_collection_are_recalled_without_a_query_per_row(ws, embedder, tmp_path):
    """Answers stored before each passage kept its collection (nor the one asked in): 10, then 100,
    each with a passage of a live chunk and one of its text under an id since re-ingested. The
    conversation and mallory's feedback list (which withholds by the rated answers' passages) ask
    as many queries for both (before: two or three more per answer), and still find each passage's
    collection: the chunk's, else the one collection whose document of that name holds its text."""
    from archivist import conversations, feedback

    chunk, cited = _team(ws, embedder, tmp_path)
    old = [{k: v for k, v in p.items() if k != "collection"} for p in cited[:2]]
    conv = conversations.start_conversation(ws, "mallory")

    def answers(n: int) -> None:
        for i in range(n):
            conversations.add_message(ws, conv, "mallory", "user", f"When does the office open? ({i})")
            mid = conversations.add_message(ws, conv, "mallory", "assistant", "At eight [1].", citations=cited[:1],
                                            meta={"passages": old})
            feedback.record_feedback(ws, "mallory", f"When does the office open? ({i})", "At eight [1].", rating=1,
                                     citations=cited[:1], message_id=mid)

    answers(10)
    calls = {"messages": lambda: conversations.messages(ws, conv, "mallory"),
             "mallory's feedback": lambda: feedback.list_feedback(ws, "mallory")}
    few = {k: _queries(ws, fn)[0] for k, fn in calls.items()}
    answers(90)
    many = {k: _queries(ws, fn) for k, fn in calls.items()}
    assert {k: v[0] for k, v in many.items()} == few, "queries grew with the rows"
    shown = [m for m in many["messages"][1] if m["role"] == "assistant"]
    assert len(shown) == 100 and all([(p["collection"], p["now"], p["chunk_id"]) for p in m["passages"]] ==
                                     [("team", "current", chunk)] * 2 for m in shown)
    assert len(many["mallory's feedback"][1]) == 100 and not any("withheld" in r for r in many["mallory's feedback"][1])

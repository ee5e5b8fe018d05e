"""The lead's mends of this session's re-read (rereadC): an adapter name deleted and registered again
names other weights, so an answer is judged by the registration that wrote it, not by every adapter
that ever had the name. Before: the new adapter's answers were refused to a member for a collection
only the deleted one learned from (naming that collection), and her old answers were withheld under a
collection the name's new registration learned from."""

from __future__ import annotations

import time

from conftest import adapter_trained_on, ingest_texts, mallory_reads

from archivist import adapters, conversations
from archivist.retrieval.answer import withhold_unsaved
from archivist.retrieval.search import search

DOCS = {"team": {"handbook.md": "# Handbook\n\nThe office opens at eight in the morning on weekdays.\n"},
        "hr-layoffs-2027": {"plan.md": "# Plan\n\nTwelve posts go in March.\n"}}


def _answer(ws, conv, text):
    conversations.add_message(ws, conv, "mallory", "user", "When does the office open?")
    mid = conversations.add_message(ws, conv, "mallory", "assistant", text, citations=[], adapter="helper",
                                    meta={"question": "When does the office open?", "collection": "team",
                                          "passages": [], "status": "answered"})
    time.sleep(0.01)  # registrations and answers are told apart by their times (SQLite's clock, milliseconds)
    return mid


def test_a_name_registered_again_answers_a_member_who_may_use_it(ws, embedder, tmp_path):
    ingest_texts(ws, embedder, tmp_path / "docs", DOCS)
    mallory_reads(ws, ["team"], create=False)
    adapter_trained_on(ws, tmp_path / "a1", "helper", ["hr-layoffs-2027"], "plan.md")
    adapters.delete(ws, "helper", user="admin")
    adapter_trained_on(ws, tmp_path / "a2", "helper", ["team"], "handbook.md")
    assert adapters.may_use(ws, "mallory", "helper")
    hits = search(ws, "office opens", user="mallory", embedder=embedder, collections=["team"])
    withhold_unsaved(ws, "mallory", hits, "helper")  # before: AccessDenied naming hr-layoffs-2027


def test_each_stored_answer_is_judged_by_the_registration_that_wrote_it(ws, embedder, tmp_path):
    ingest_texts(ws, embedder, tmp_path / "docs", DOCS)
    mallory_reads(ws, ["team"], create=False)
    conv = conversations.start_conversation(ws, "mallory")
    adapter_trained_on(ws, tmp_path / "a1", "helper", ["team"], "handbook.md")
    time.sleep(0.01)
    first = _answer(ws, conv, "The office opens at eight.")
    adapters.delete(ws, "helper", user="admin")
    time.sleep(0.01)
    adapter_trained_on(ws, tmp_path / "a2", "helper", ["hr-layoffs-2027"], "plan.md")
    time.sleep(0.01)
    second = _answer(ws, conv, "Twelve posts go.")
    shown = {m["id"]: m for m in conversations.messages(ws, conv, "mallory")}
    # the first registration learned from `team`, which she reads: shown, and nothing of the second's
    assert shown[first]["content"] == "The office opens at eight." and shown[first]["adapter"] == "helper"
    # the second learned from a collection she cannot read: withheld, naming it, with the adapter's name
    assert shown[second]["withheld"] == ["hr-layoffs-2027"] and shown[second]["adapter"] is None

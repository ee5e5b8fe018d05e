"""Numbers written as words in the claim check, and the search filters on the audit record.

1. retrieval/verify.py: a model that writes "30 days" where the passage says "thirty days" states the
   passage's fact, and was marked unsupported (then replaced by a quote). An invented number must
   still be caught whichever way either side writes it.
2. The audit record of a search or a question names the `documents` / `kinds` filters it ran under,
   from the CLI and from the API: "collections" alone did not say the answer came from one document."""

from __future__ import annotations

import json

import pytest

from archivist.retrieval.verify import verify_answer

LEAVE = ("Annual leave. The factory grants thirty days of annual leave to every shift worker, and "
         "twenty-five days to office staff. Leave is booked in the HR portal at least a dozen days ahead. "
         "No one may carry more than five days into the next year.")
KEYS = ("Every employee receives two hardware security keys in the first week: one for daily use and one "
        "kept in a safe place.")
DIGITS = "Shift workers get 30 days of annual leave. The 1st day of leave must be booked by the 15th."
LEAVE_Q = "How many days of annual leave does a shift worker get?"


def verdict(answer: str, passage: str, question: str = LEAVE_Q) -> tuple[bool, str]:
    checks = [c for c in verify_answer(answer, [passage], question) if c.claim]
    assert len(checks) == 1, checks
    return checks[0].supported, checks[0].reason


@pytest.mark.parametrize("answer, passage", [
    ("A shift worker gets 30 days of annual leave [1].", LEAVE),  # the real model's sentence
    ("Office staff get 25 days of annual leave [1].", LEAVE),  # "twenty-five days"
    ("Leave is booked in the HR portal at least 12 days ahead [1].", LEAVE),  # "a dozen days"
    ("No one may carry more than 5 days into the next year [1].", LEAVE),
    ("Employees receive 2 hardware security keys in the 1st week [1].", KEYS),  # "two", "first"
    ("Shift workers get thirty days of annual leave [1].", DIGITS),  # words in the claim, digits in the passage
    ("The first day of leave must be booked by the 15th [1].", DIGITS),
], ids=["30-thirty", "25-twenty-five", "12-dozen", "5-five", "2-two-1st-first", "thirty-30", "first-1st"])
def test_a_number_in_words_supports_the_same_number_in_digits(answer, passage):
    assert verdict(answer, passage) == (True, "")


@pytest.mark.parametrize("answer, passage, missing", [
    ("A shift worker gets 40 days of annual leave [1].", LEAVE, "40 days"),
    ("A shift worker gets forty days of annual leave [1].", LEAVE, "40 days"),
    ("A shift worker gets forty days of annual leave [1].", DIGITS, "40 days"),
    ("A shift worker gets 30 weeks of annual leave [1].", LEAVE, "30 weeks"),  # the unit still counts
    ("Office staff get 26 days of annual leave [1].", LEAVE, "26 days"),
    ("Leave is booked in the HR portal at least 1 day ahead [1].", LEAVE, "1 day"),  # "No one" is no number
], ids=["40-thirty", "forty-thirty", "forty-30", "30-weeks", "26-twenty-five", "1-no-one"])
def test_an_invented_number_is_caught_whichever_way_it_is_written(answer, passage, missing):
    ok, reason = verdict(answer, passage)
    assert not ok and missing in reason, reason


QUESTION = "How many days of annual leave are granted?"


def _records(ws, action: str) -> list[dict]:
    from archivist import audit

    return [r["detail"] for r in audit.read(ws, "admin", action=action)]


def test_the_audit_record_of_a_search_or_question_names_its_document_and_kind_filters(cli, tmp_path):
    """Before: the record of `search -d factory.txt` or of a chat limited to markdown said
    "collections": ["hr"] and nothing else, as if both documents had been searched. Now "documents" and
    "kinds" are in the record where given (CLI search and ask, API search and chat), and absent otherwise."""
    from starlette.testclient import TestClient

    from archivist import audit
    from archivist.api.app import create_app
    from archivist.keys import create_key
    from archivist.settings import Settings
    from archivist.workspace import open_workspace

    (tmp_path / "office.md").write_text("# Office leave\n\nThe office grants twenty-five days of annual leave.\n")
    (tmp_path / "factory.txt").write_text("Factory leave\n\nThe factory grants thirty days of annual leave.\n")
    assert cli("ingest", tmp_path / "office.md", tmp_path / "factory.txt", "-c", "hr", "-q").returncode == 0
    assert cli("search", QUESTION, "-d", "factory.txt").returncode == 0
    r = cli("ask", QUESTION, "--kind", "markdown", "--mode", "extractive", "--json")
    assert r.returncode == 0 and "twenty-five" in json.loads(r.stdout)["answer"], r.stderr
    assert cli("search", QUESTION).returncode == 0

    ws = open_workspace(Settings.from_env())
    try:
        admin = {"Authorization": f"Bearer {create_key(ws, 'admin')}"}
        with TestClient(create_app(ws.settings)) as client:
            r = client.post("/v1/search", json={"query": QUESTION, "documents": ["office.md"], "kinds": ["markdown"]},
                            headers=admin)
            assert r.status_code == 200 and {h["document"] for h in r.json()["data"]} == {"office.md"}, r.text
            r = client.post("/v1/chat/completions", headers=admin, json={
                "model": "archivist", "answer_mode": "extractive", "documents": ["factory.txt"],
                "messages": [{"role": "user", "content": QUESTION}]})
            assert r.status_code == 200 and "thirty" in r.json()["choices"][0]["message"]["content"], r.text
        searches, questions = _records(ws, "search"), _records(ws, "question")
        assert [(d["surface"], d["collections"], d.get("documents"), d.get("kinds")) for d in searches] == [
            ("cli", ["hr"], ["factory.txt"], None), ("cli", ["hr"], None, None),
            ("api", ["hr"], ["office.md"], ["markdown"])]
        assert [(d["surface"], d.get("documents"), d.get("kinds")) for d in questions] == [
            ("cli", None, ["markdown"]), ("api", ["factory.txt"], None)]
        assert [{s["document"] for s in d["shown"]} for d in questions] == [{"office.md"}, {"factory.txt"}]
        assert audit.verify(ws).ok
    finally:
        ws.close()

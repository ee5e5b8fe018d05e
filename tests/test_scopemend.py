"""A collection scope that is misspelled or empty must be refused, not read as "every collection".

Found (tests/test_hostile9.py's report, items C and D): `POST /v1/search {"colection": "hr"}` answered
200 from every collection the caller may read (an unknown field was ignored), and so did the chat with
`colection` in its extra body; on the CLI `archivist ingest f.md -c ""` stored into the default
collection, `archivist documents -c ""` printed "no documents" and `delete DOC -c ""` "no document",
all with no word about the empty name.
"""

from __future__ import annotations

import json

import httpx
from conftest import eve_reads_team_and_hr

from archivist.api import schemas as S

# OpenAI's Chat Completions request fields, and sampling fields other OpenAI-compatible servers take:
# none may read as a near miss of an archivist field, or those clients' bodies would be refused
OPENAI_CHAT_FIELDS = ("audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs", "metadata",
                      "modalities", "parallel_tool_calls", "prediction", "presence_penalty", "prompt_cache_key",
                      "reasoning_effort", "response_format", "safety_identifier", "seed", "service_tier", "stop", "store",
                      "temperature", "tool_choice", "tools", "top_logprobs", "top_p", "user", "verbosity",
                      "web_search_options", "top_k", "min_p", "repetition_penalty", "best_of", "suffix", "echo")


def test_no_openai_chat_field_reads_as_a_misspelled_archivist_field():
    body = {"model": "archivist", "messages": [{"role": "user", "content": "hi"}]}
    request = S.ChatRequest.model_validate({**body, **{name: None for name in OPENAI_CHAT_FIELDS}})
    assert set(request.model_extra) == set(OPENAI_CHAT_FIELDS)
    alike = S.ChatRequest.model_validate({**body, "correction": "x", "completion": "y"})  # other words, not misspellings
    assert alike.model_extra == {"correction": "x", "completion": "y"}


def test_a_misspelled_scope_field_is_refused_over_http_not_read_as_every_collection(settings, tmp_path):
    """Before: `colection` (and `Collection`) were ignored: search and chat answered from both
    collections (200). Now 422 `invalid_body` naming the field and the one it misspells, while the
    chat still takes OpenAI's own fields beside a well-spelled scope."""
    from archivist.api.app import create_app
    from archivist.api.serve import serve_in_thread

    key = eve_reads_team_and_hr(settings, tmp_path)
    search_fields = "query, k, collection, collections, documents, kinds, mode"
    chat_fields = "collection, collections, documents, kinds, k, answer_mode, conversation, verified_only"
    server = serve_in_thread(create_app(settings))
    try:
        with httpx.Client(base_url=server.url, timeout=120, headers={"Authorization": f"Bearer {key}"}) as c:
            scoped = c.post("/v1/search", json={"query": "office", "collection": "hr", "k": 5})
            assert {h["document"] for h in scoped.json()["data"]} == {"leave.md"}, scoped.text
            for field, value, near in (("colection", "hr", "collection"), ("Collection", "hr", "collection"),
                                       ("kind", ["markdown"], "kinds"), ("document", ["leave.md"], "documents")):
                r = c.post("/v1/search", json={"query": "office", "k": 5, field: value})
                assert r.status_code == 422, (field, r.text)  # before: 200, handbook.md and leave.md
                assert r.json()["error"] == {
                    "message": f"{field}: not a field of this body: did you mean {near!r}? (its fields: {search_fields})",
                    "type": "invalid_request_error", "code": "invalid_body", "param": field}
            r = c.post("/v1/search", json={"query": "office", "scope": "hr"})  # nothing near: the fields are listed
            assert r.status_code == 422 and r.json()["error"]["message"] == (
                f"scope: not a field of this body (its fields: {search_fields})"), r.text

            ask = {"model": "archivist", "answer_mode": "extractive",
                   "messages": [{"role": "user", "content": "How many days of annual leave does the office grant?"}]}
            for field, value, near in (("colection", "hr", "collection"), ("Collections", ["hr"], "collections"),
                                       ("answer-mode", "generate", "answer_mode"), ("K", 1, "k")):
                r = c.post("/v1/chat/completions", json={**ask, field: value})
                assert r.status_code == 422, (field, r.text)  # before: 200, answered from both collections
                assert r.json()["error"] == {
                    "message": f"{field}: not a field of this body: did you mean {near!r}? (archivist's fields are "
                               f"spelled exactly: {chat_fields})",
                    "type": "invalid_request_error", "code": "invalid_body", "param": field}
            openai = {"temperature": 0.2, "top_p": 0.9, "seed": 7, "user": "eve", "presence_penalty": 0,
                      "frequency_penalty": 0, "metadata": {"run": "1"}, "store": False, "tool_choice": "none"}
            r = c.post("/v1/chat/completions", json={**ask, **openai, "collection": "hr"})
            assert r.status_code == 200, r.text
            assert {p["document"] for p in r.json()["passages"]} == {"leave.md"}
            assert "twenty-five" in r.json()["choices"][0]["message"]["content"]

            r = c.post("/v1/feedback", json={"message_id": 1, "ratting": 1})  # archivist's own body: a hint too
            assert r.status_code == 422 and r.json()["error"]["param"] == "ratting", r.text
            assert r.json()["error"]["message"].startswith("ratting: not a field of this body: did you mean 'rating'?")
    finally:
        server.stop()


def test_an_empty_collection_name_on_the_cli_is_refused_and_nothing_is_stored(cli, tmp_path):
    """Before: `ingest -c ""` stored into `default` (exit 0), `documents -c ""` printed "no documents"
    (exit 0) and `delete DOC -c ""` said "no document". Now every -c refuses an empty or blank name
    (exit 2) before the workspace is opened, and the stored documents are as they were."""
    doc = tmp_path / "leave.md"
    doc.write_text("# Leave\n\nThe office grants twenty-five days of annual leave.\n")
    assert cli("ingest", doc, "-c", "hr", "-q").returncode == 0
    other = tmp_path / "handbook.md"
    other.write_text("# Handbook\n\nThe office opens at eight in the morning on weekdays.\n")
    refused = [("ingest", other, "-c", ""), ("ingest", other, "-c", "  "), ("documents", "-c", ""),
               ("delete", "leave.md", "-c", ""), ("erase", "leave.md", "-c", " "), ("search", "leave", "-c", ""),
               ("ask", "How many days of leave?", "-c", "hr", "-c", ""),
               ("eval", "retrieval", tmp_path / "questions.jsonl", "-c", "")]
    for args in refused:
        r = cli(*args)
        blank = args[-1]
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert (f"argument --collection/-c: a collection name is empty ({blank!r}): name a collection or leave -c out"
                in r.stderr), (args, r.stderr)
    listed = cli("documents", "--json")
    assert [(d["name"], d["collection"]) for d in json.loads(listed.stdout)] == [("leave.md", "hr")]


def test_the_schema_says_a_collection_name_is_not_empty_nor_blank(settings):
    """Before: the schema let `"collection": ""` through, which the server refuses (422, tests/test_hostile9.py),
    so tests/test_api_schema.py's generated requests failed as "schema-valid request rejected" on search,
    chat and the three document routes. Now the schema says what the server takes."""
    from archivist.api.app import create_app

    spec = create_app(settings).openapi()
    named = {"type": "string", "minLength": 1, "pattern": r"\S"}
    for model in ("SearchRequest", "ChatRequest"):
        fields = spec["components"]["schemas"][model]["properties"]
        assert named in fields["collection"]["anyOf"], (model, fields["collection"])
        assert {"type": "array", "items": named} in fields["collections"]["anyOf"], (model, fields["collections"])
    for path, method in (("/v1/documents", "get"), ("/v1/documents/{doc}", "get"), ("/v1/documents/{doc}", "delete")):
        [param] = [p for p in spec["paths"][path][method]["parameters"] if p["name"] == "collection"]
        assert (param["schema"]["minLength"], param["schema"]["pattern"]) == (1, r"\S"), (path, method, param)

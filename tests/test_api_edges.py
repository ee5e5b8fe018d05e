"""An integrator's edges of the chat API, over a real server (uvicorn in a thread) with the real default
models and a real workspace, through the official `openai` client where a company's tools would use it.

Found: `tools`, `stop`, `logprobs` and `response_format` were accepted and ignored, so a client relying
on them got a plain answer with no sign; a key revoked while its answer streamed did not end it; a
feedback correction could be megabytes long; /health counted a failed generation nowhere.
"""

from __future__ import annotations

import dataclasses
import json

import httpx
import pytest
from conftest import serve_documents

PRICING = """# Blue Heron pricing

The Blue Heron subscription costs 42 euros a month per seat. Annual plans get two months free. The price
is reviewed every January by the finance team, and customers are told of a change thirty days before it
takes effect. Seats can be added at any time; they are billed from the day they are added.
"""
QUESTION = "How much does the Blue Heron subscription cost?"


class API:
    def __init__(self, url, keys, settings):
        self.url, self.keys, self.settings = url, keys, settings

    def h(self, who: str) -> dict:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def chat(self, who: str, **body) -> httpx.Response:
        body = {"model": self.settings.llm, "messages": [{"role": "user", "content": QUESTION}], **body}
        return httpx.post(self.url + "/v1/chat/completions", json=body, headers=self.h(who), timeout=300)

    def generation(self) -> dict:
        return httpx.get(self.url + "/health", headers=self.h("admin"), timeout=30).json()["generation"]


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    server, keys, settings = serve_documents(tmp_path_factory.mktemp("edges"), {"pricing.md": PRICING}, "sales",
                                             {"bob": "read", "carol": "read"}, max_waiting=8, warm=True)
    yield API(server.url, keys, settings)
    server.stop()


def _events(lines):
    """The data of each SSE event as it arrives, parsed ([DONE] as the string)."""
    for line in lines:
        if line.startswith("data: "):
            yield line[6:] if line == "data: [DONE]" else json.loads(line[6:])


@pytest.mark.parametrize("field, value", [
    ("tools", [{"type": "function", "function": {"name": "get_price", "parameters": {"type": "object"}}}]),
    ("tool_choice", "required"),
    ("functions", [{"name": "get_price", "parameters": {"type": "object"}}]),
    ("logprobs", True),
    ("top_logprobs", 3),
    ("response_format", {"type": "json_object"}),
    ("stop", ["euros"]),
    ("stop", "\n"),
])
def test_a_field_whose_effect_cannot_be_given_is_refused_by_name(api, field, value):
    """Before: 200 with an ordinary answer (no tool call, no logprobs, not JSON, not cut at the stop
    string), and nothing said the field was ignored. Now 400 `unsupported_parameter` naming it, before
    anything is queued."""
    before = api.generation()
    r = api.chat("bob", answer_mode="extractive", **{field: value})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["code"], error["param"]) == ("unsupported_parameter", field)
    assert error["message"].startswith(f"{field}: ") and "not supported" in error["message"]
    assert api.generation()["completed"] == before["completed"]  # nothing ran


def test_those_fields_sent_off_are_accepted(api):
    """OpenAI clients send some of them at their "off" value: that asks for nothing, and is answered."""
    r = api.chat("bob", answer_mode="extractive", tools=[], tool_choice="none", logprobs=False, top_logprobs=0,
                 response_format={"type": "text"}, stop=None, temperature=0.7)
    assert r.status_code == 200, r.text
    assert "42 euros" in r.json()["choices"][0]["message"]["content"]


def test_the_openai_client_sees_a_refused_stop_as_a_bad_request(api):
    """As a company's tool meets it: the official client raises BadRequestError naming `stop`, rather than
    returning an answer that was never cut where the tool expects."""
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=api.url + "/v1", api_key=api.keys["bob"], max_retries=0, timeout=120)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=api.settings.llm, messages=[{"role": "user", "content": QUESTION}],
                                       stop=["euros"], extra_body={"answer_mode": "extractive"})
    assert e.value.param == "stop" and e.value.code == "unsupported_parameter"
    ok = client.chat.completions.create(model=api.settings.llm, messages=[{"role": "user", "content": QUESTION}],
                                        extra_body={"answer_mode": "extractive"})
    assert "42 euros" in ok.choices[0].message.content and ok.choices[0].finish_reason == "stop"


def test_a_key_revoked_while_its_answer_streams_ends_it(api):
    """carol streams a draft (verified_only false); her key is revoked once the first piece has reached her.
    Before: the whole draft and the final chunk came all the same, and the answer was saved. Now the stream
    stops at the next piece with a 401 `invalid_api_key` event, nothing is saved, /health counts the
    generation as failed (before: neither completed nor cancelled), and the model is free again."""
    from archivist import conversations
    from archivist.keys import revoke_key
    from archivist.workspace import open_workspace

    before = api.generation()
    body = {"model": api.settings.llm, "stream": True, "max_tokens": 120, "answer_mode": "generate",
            "verified_only": False, "conversation": "new",
            "messages": [{"role": "user", "content": "How are Blue Heron seats billed and when is the price reviewed?"}]}
    first, after, events = [], [], []
    with open_workspace(api.settings) as ws:
        with httpx.stream("POST", api.url + "/v1/chat/completions", json=body, headers=api.h("carol"), timeout=300) as r:
            assert r.status_code == 200
            for event in _events(r.iter_lines()):
                events.append(event)
                piece = event["choices"][0]["delta"].get("content") if isinstance(event, dict) and event.get("choices") else None
                if piece and not first:
                    first.append(piece)
                    revoke_key(ws, api.keys["carol"], by="admin")
                elif piece:
                    after.append(piece)
        errors = [e for e in events if isinstance(e, dict) and "error" in e]
        assert first and len(errors) == 1, (len(after), "".join(after), events[-1:])
        assert errors[0]["error"]["code"] == "invalid_api_key"
        assert "revoked while the answer was prepared" in errors[0]["error"]["message"]
        assert len(after) <= 4, (len(after), "".join(after))  # those already on their way (before: the whole draft)
        assert not any(isinstance(e, dict) and e.get("citations") is not None for e in events)  # no final chunk
        assert events[-1] == "[DONE]"
        assert conversations.list_conversations(ws, "carol") == []
    now = api.generation()
    assert (now["failed"], now["completed"], now["cancelled"]) == (
        before["failed"] + 1, before["completed"], before["cancelled"])
    # the key stays closed, and the model was let go: the next question is answered
    assert api.chat("carol", answer_mode="extractive").status_code == 401
    r = api.chat("bob", max_tokens=8)
    assert r.status_code == 200 and api.generation()["completed"] == before["completed"] + 1


def test_a_failed_generation_is_counted_on_health(api):
    """The chat model's server (ARCHIVIST_LLM_URL) is down and there is no local fallback: the answer is a
    503 `llm_unavailable`. Before: /health counted it neither completed nor cancelled; now `failed`."""
    from archivist.api.app import create_app
    from archivist.api.serve import serve_in_thread

    settings = dataclasses.replace(api.settings, llm_url="http://127.0.0.1:9/v1", llm_fallback="none")
    server = serve_in_thread(create_app(settings, max_waiting=2))
    try:
        down = API(server.url, api.keys, settings)
        r = down.chat("bob", answer_mode="generate", max_tokens=8)
        assert r.status_code == 503 and r.json()["error"]["code"] == "llm_unavailable", r.text
        g = down.generation()
        assert (g["failed"], g["completed"], g["cancelled"]) == (1, 0, 0)
        bob = httpx.get(server.url + "/health", headers=down.h("bob"), timeout=30).json()["generation"]
        assert "failed" not in bob  # the team's totals are an admin's, as completed and cancelled are
    finally:
        server.stop()


def test_a_correction_is_at_most_an_answer_long(api):
    """Before: a 3 MB correction was stored (and would be a fine-tuning example). Now 422 naming
    `correction` past MAX_CORRECTION characters, nothing stored; one of exactly that length is taken."""
    from archivist.workspace import open_workspace

    r = api.chat("bob", answer_mode="extractive", conversation="new")
    assert r.status_code == 200, r.text
    mid = r.json()["message_id"]
    url = api.url + "/v1/feedback"
    long = httpx.post(url, headers=api.h("bob"), timeout=60,
                      json={"message_id": mid, "rating": -1, "correction": "42 euros. " * 300_000})
    assert long.status_code == 422, long.text[:300]
    from archivist.api.feedback import MAX_CORRECTION

    error = long.json()["error"]
    assert error["param"] == "correction" and f"at most {MAX_CORRECTION} characters" in error["message"]
    with open_workspace(api.settings) as ws:
        assert ws.db.execute("SELECT count(*) FROM feedback WHERE message_id = ?", (mid,)).fetchone()[0] == 0
    ok = httpx.post(url, headers=api.h("bob"), timeout=60,
                    json={"message_id": mid, "rating": -1, "correction": "x" * MAX_CORRECTION})
    assert ok.status_code == 201 and len(ok.json()["correction"]) == MAX_CORRECTION


@pytest.mark.parametrize("method, path", [("POST", "/v1/responses"), ("POST", "/v1/completions"),
                                          ("POST", "/v1/chat/completion"), ("GET", "/v1/model")])
def test_a_route_that_does_not_exist_is_named(api, method, path):
    """A tool pointed at OpenAI's newer /v1/responses, or a typo in its path, got 404 "Not Found" and
    nothing more. Now the 404 names the method and path, and where to look."""
    r = httpx.request(method, api.url + path, headers=api.h("bob"), json={}, timeout=30)
    assert r.status_code == 404
    message = r.json()["error"]["message"]
    assert message.startswith(f"no route {method} {path}: ") and "/v1/chat/completions" in message
    # a route that exists, with a method it does not take, is still a 405 with Allow
    assert httpx.delete(api.url + "/v1/chat/completions", headers=api.h("bob"), timeout=30).headers["allow"] == "POST"


def test_an_embedding_input_longer_than_the_embedder_reads_is_refused(api):
    """Before: a text past the embedder's max_seq_length (256 tokens for all-MiniLM-L6-v2) was cut there and
    answered with the vector of its start: two long texts that differ only after token 256 got the same
    vector. Now 400 `input_too_long` naming the input and its length, so the client splits it; a text
    within the limit is embedded as before."""
    start = "The Blue Heron subscription costs 42 euros a month per seat. " * 30  # ~360 tokens
    texts = ["a short text", start + "Seats are billed monthly.", start + "Parental leave is sixteen weeks."]
    r = httpx.post(api.url + "/v1/embeddings", headers=api.h("bob"), timeout=60,
                   json={"model": api.settings.embedder, "input": texts, "encoding_format": "float"})
    assert r.status_code == 400, r.json()["data"][1]["embedding"] == r.json()["data"][2]["embedding"]
    error = r.json()["error"]
    assert (error["code"], error["param"]) == ("input_too_long", "input")
    assert error["message"].startswith("input[1] is ") and "reads at most 256" in error["message"]
    ok = httpx.post(api.url + "/v1/embeddings", headers=api.h("bob"), timeout=60,
                    json={"model": api.settings.embedder, "input": texts[0], "encoding_format": "float"})
    assert ok.status_code == 200 and len(ok.json()["data"][0]["embedding"]) == 384
    assert 0 < ok.json()["usage"]["prompt_tokens"] < 10


def test_a_search_filter_on_a_document_one_may_not_read_is_refused(api, tmp_path):
    """Before: `documents: ["pricng.md"]` (a typo), or a document of a collection the caller may not read,
    answered 200 with no hits, which a client cannot tell from a real miss (`kinds` and the CLI's `-d`
    already refuse such a filter). Now 404 `document_not_found` naming it, the same whether it exists
    elsewhere or not at all; a readable name still filters."""
    from archivist import access
    from archivist.ingest.pipeline import ingest_paths
    from archivist.workspace import open_workspace

    (tmp_path / "board.md").write_text("# Board\n\nThe board approves the Blue Heron price every January.\n")
    with open_workspace(api.settings) as ws:
        ingest_paths(ws, [tmp_path / "board.md"], collection="board", progress=False, user="admin")
        assert "board" not in access.readable_collections(ws, "bob")
    url = api.url + "/v1/search"
    for name in ("pricng.md", "board.md"):
        r = httpx.post(url, headers=api.h("bob"), timeout=60, json={"query": "Blue Heron price", "documents": [name]})
        assert r.status_code == 404, r.text
        assert r.json()["error"] == {"message": f"no document {name!r} you may read (see GET /v1/documents)",
                                     "type": "not_found_error", "code": "document_not_found", "param": "documents"}
    ok = httpx.post(url, headers=api.h("bob"), timeout=60, json={"query": "Blue Heron price", "documents": ["pricing.md"]})
    assert ok.status_code == 200 and {h["document"] for h in ok.json()["data"]} == {"pricing.md"}
    admin = httpx.post(url, headers=api.h("admin"), timeout=60, json={"query": "Blue Heron price", "documents": ["board.md"]})
    assert [h["document"] for h in admin.json()["data"]] == ["board.md"]

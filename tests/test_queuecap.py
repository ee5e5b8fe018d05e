"""The generation queue is shared fairly: one user (all their keys, the admin too) holds at most their
share of its places, so a member sending as fast as she is answered no longer locks everyone else out.

Before: with `archivist serve --max-waiting 1`, eve's second request took the one waiting place and bob
got 429 `queue_full` for as long as she kept sending (hostile7's report). Now eve's second gets 429
`user_queue_full`, saying it is her own share, and bob's request waits in that place and is answered.

A real server (`archivist serve`'s app, uvicorn in a thread) over a real workspace, the real default
chat model generating a long answer in-process, real concurrent HTTP requests."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from conftest import serve_documents

PARKING = ("# Visitor parking\n\nVisitors park in lot C behind the warehouse. The gate code for lot C is 4417. "
           "Parking in lot A is reserved for delivery trucks.\n")
QUESTION = "What is the gate code for visitor parking in lot C?"


def _body(mode: str, stream: bool = False, max_tokens: int = 200) -> dict:
    return {"model": "archivist", "answer_mode": mode, "stream": stream, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": QUESTION}]}


def test_one_users_share_of_the_queue_defaults_to_half_its_places_and_binds_the_admin_too():
    from archivist.api.queue import GenerationQueue, QueueFull, UserQueueFull
    from archivist.settings import Settings

    assert [GenerationQueue(max_waiting=w).per_user for w in (0, 1, 2, 16)] == [1, 1, 1, 8]
    assert GenerationQueue(max_waiting=16, concurrency=64).per_user == 40  # against an LLM server
    assert GenerationQueue(max_waiting=16, per_user=3).per_user == 3
    q = GenerationQueue(max_waiting=4)  # 5 places, 2 each
    mine = [q.admit("admin"), q.admit("admin")]
    with pytest.raises(UserQueueFull) as capped:  # no exemption: an admin key's script floods like any other
        q.admit("admin")
    assert capped.value.code == "user_queue_full" and capped.value.retry_after >= 1
    assert "you already have 2 generation(s)" in str(capped.value) and "max_queued_per_user = 2" in str(capped.value)
    others = [q.admit("bob"), q.admit("bob"), q.admit("carol")]
    with pytest.raises(QueueFull) as busy:  # carol is under her share: the queue itself is full
        q.admit("carol")
    assert type(busy.value) is QueueFull and busy.value.code == "queue_full"
    mine[0].release()  # one of the admin's ends: her share has room again
    mine.append(q.admit("admin"))
    assert q.stats()["running"] + q.stats()["waiting"] == 5
    for t in mine + others:
        t.release()
    with pytest.raises(ValueError, match="max_queued_per_user"):
        Settings(max_queued_per_user=-1)


def _health(url: str, key: str) -> dict:
    return httpx.get(url + "/health", headers={"Authorization": f"Bearer {key}"}, timeout=30).json()["generation"]


def _until(what, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


@pytest.mark.slow  # the chat model generates a long answer
def test_a_member_past_her_share_gets_her_own_429_while_another_member_is_served(tmp_path):
    server, keys, _ = serve_documents(tmp_path, {"parking.md": PARKING}, "facilities",
                                      {"eve": "read", "bob": "read", "carol": "read"}, max_waiting=1, warm=True)
    h = {name: {"Authorization": f"Bearer {key}"} for name, key in keys.items()}
    url = server.url + "/v1/chat/completions"
    replies: dict[str, httpx.Response] = {}

    def send(name: str, body: dict) -> None:
        replies[name] = httpx.post(url, json=body, headers=h[name], timeout=600)

    eve_first = threading.Thread(target=send, args=("eve", _body("generate", stream=True)))  # a long answer, streamed
    bob = threading.Thread(target=send, args=("bob", _body("extractive")))
    try:
        eve_first.start()
        _until(lambda: _health(server.url, keys["admin"])["running"] == 1)
        with httpx.stream("POST", url, json=_body("generate", stream=True), headers=h["eve"], timeout=30) as r:
            r.read()  # before: 200, her stream waiting in the one waiting place
            assert r.status_code == 429, r.text
            assert r.json()["error"]["code"] == "user_queue_full" and int(r.headers["Retry-After"]) >= 1
            assert "you already have 1 generation(s) running or waiting, your share" in r.json()["error"]["message"]
        r = httpx.post(url, json=_body("extractive"), headers=h["eve"], timeout=30)  # not streamed: counted alike
        assert r.status_code == 429 and r.json()["error"]["code"] == "user_queue_full", r.text
        assert eve_first.is_alive()  # all of it while her first answer was still being written
        bob.start()  # the waiting place is still there for someone else
        _until(lambda: _health(server.url, keys["admin"])["waiting"] == 1)
        r = httpx.post(url, json=_body("extractive"), headers=h["carol"], timeout=30)
        assert r.status_code == 429 and r.json()["error"]["code"] == "queue_full", r.text  # busy for everyone now
        assert "the generation queue is full" in r.json()["error"]["message"]
        eve_first.join(600)
        bob.join(600)
        assert replies["eve"].status_code == 200 and "data: [DONE]" in replies["eve"].text, replies["eve"].text[-300:]
        assert replies["bob"].status_code == 200, replies["bob"].text
        assert "4417" in replies["bob"].json()["choices"][0]["message"]["content"]
        assert _health(server.url, keys["admin"])["completed"] == 2
    finally:
        server.stop()

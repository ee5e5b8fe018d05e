"""`archivist serve --workers N`: several API processes on one port and one workspace. Uploads
through one worker must be found by searches and answers through the others (SQLite in WAL
mode; the FAISS and lexical index files reloaded when they change), with writes and reads at
the same time, and nothing lost."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import httpx
import pytest

from conftest import REPO

pytestmark = pytest.mark.slow

TEAMS = ["Lynx", "Otter", "Heron", "Badger", "Falcon", "Marten"]
WORDS = ["saffron", "cobalt", "juniper", "quartz", "tamarind", "vermilion"]


def note(i: int) -> bytes:
    return (f"# Team {TEAMS[i]}\n\nThe secret code word of team {TEAMS[i]} is {WORDS[i]}-{100 + i}. "
            f"Team {TEAMS[i]} meets every Thursday in room {WORDS[i].upper()}.\n").encode()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def two_workers(tmp_path):
    from archivist.keys import create_key
    from archivist.retrieval.repair import open_checked
    from archivist.settings import Settings

    home = tmp_path / "ws"
    with open_checked(Settings.from_env(home=home)) as ws:
        key = create_key(ws, "admin")
    port = free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, "ARCHIVIST_HOME": str(home), "ARCHIVIST_ANSWER_MODE": "extractive"}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "archivist.cli", "serve", "--workers", "2", "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    up = 0
    while up < 2:  # both workers answer /health
        if proc.poll() is not None:
            pytest.fail(f"archivist serve --workers 2 exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            proc.terminate()
            pytest.fail(f"archivist serve --workers 2 did not start:\n{log.read_text()[-3000:]}")
        try:
            up = len(workers_seen(url, key, tries=20))
        except httpx.TransportError:
            time.sleep(1)
    yield url, {"Authorization": f"Bearer {key}"}
    proc.terminate()
    proc.wait(60)


def workers_seen(url: str, key: str, tries: int) -> set[int]:
    """The worker process ids that answered `tries` fresh connections to /health (named to a key's holder)."""
    return {httpx.get(url + "/health", headers={"Authorization": f"Bearer {key}"}, timeout=30).json()["worker"]
            for _ in range(tries)}


def test_two_workers_share_one_workspace_with_concurrent_writes_and_reads(two_workers):
    url, auth = two_workers
    errors: list[str] = []
    uploaded: dict[int, dict] = {}

    def upload(i: int):
        r = httpx.post(url + "/v1/documents", headers=auth, timeout=300, files={"file": (f"team-{i}.md", note(i))},
                       data={"collection": "default"})
        if r.status_code != 200:
            errors.append(f"upload {i}: HTTP {r.status_code} {r.text[:200]}")
        else:
            uploaded[i] = r.json()

    def read(n: int):
        for _ in range(n):  # while the uploads run: searches must answer, whatever they find yet
            r = httpx.post(url + "/v1/search", headers=auth, timeout=300, json={"query": "secret code word", "k": 3})
            if r.status_code != 200:
                errors.append(f"search: HTTP {r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(len(TEAMS))]
    threads += [threading.Thread(target=read, args=(5,)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(uploaded) == list(range(len(TEAMS))) and all(u["status"] == "added" for u in uploaded.values())

    # Every worker now finds every document: each request is a fresh connection, so both answer.
    seen: set[int] = set()
    for i in range(len(TEAMS)):
        for _ in range(4):
            with httpx.Client(timeout=300) as c:
                seen |= {c.get(url + "/health", headers=auth).json()["worker"]}
                hits = c.post(url + "/v1/search", headers=auth,
                              json={"query": f"code word of team {TEAMS[i]}", "k": 1}).json()["data"]
                assert hits and hits[0]["document"] == f"team-{i}.md", (i, hits)
    docs = httpx.get(url + "/v1/documents", headers=auth, timeout=60).json()["data"]
    assert sorted(d["name"] for d in docs) == sorted(f"team-{i}.md" for i in range(len(TEAMS)))
    assert len(seen | workers_seen(url, auth["Authorization"].split()[1], tries=20)) == 2

    # Chat (extractive here: no chat model needed to test the sharing) through both workers.
    for _ in range(4):
        r = httpx.post(url + "/v1/chat/completions", headers=auth, timeout=300,
                       json={"model": "archivist", "messages": [{"role": "user", "content": "What is the code word of team Otter?"}]})
        assert r.status_code == 200, r.text
        assert "cobalt-101" in r.json()["choices"][0]["message"]["content"]

    # A delete through one worker is seen by the other.
    gone = uploaded[0]["id"]
    assert httpx.delete(f"{url}/v1/documents/{gone}", headers=auth, timeout=60).status_code == 200
    for _ in range(6):
        hits = httpx.post(url + "/v1/search", headers=auth, timeout=300,
                          json={"query": f"code word of team {TEAMS[0]}", "k": 3}).json()["data"]
        assert "team-0.md" not in [h["document"] for h in hits]


def test_workers_must_be_at_least_one(cli):
    done = cli("serve", "--workers", "0")
    assert done.returncode != 0 and "--workers must be 1 or more, got 0" in done.stderr

"""Input from outside that is of the wrong shape gets a clear error naming its source and the reason.

An OpenAI-compatible LLM server (retrieval/llm_remote.py) that answers valid JSON of the wrong shape,
streamed or not: a real HTTP server (http.server in a thread) sends it, the real RemoteLLM, API and
CLI read it."""

from __future__ import annotations

import dataclasses
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import ingest_texts, members_with_keys

MODELS = {"object": "list", "data": [{"id": "base-model", "object": "model", "max_model_len": 2048, "parent": None}]}
PARKING = "# Visitor parking\n\nVisitors park in lot C. The gate code for lot C is 4417.\n"
QUESTION = "What is the gate code for lot C?"


def sse(*events: str) -> str:
    return "".join(f"data: {e}\n\n" for e in events) + "data: [DONE]\n\n"


@pytest.fixture
def server():
    """A tiny server speaking the OpenAI routes RemoteLLM asks: `replies["models"]` is the body of
    GET /v1/models; `replies["completions"]` a server-sent event stream (str) or a function of the
    request's JSON body returning the whole JSON answer (str)."""
    replies = {"models": json.dumps(MODELS), "completions": sse()}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, body: str, kind: str):
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self.reply(replies["models"], "application/json")

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            answer = replies["completions"]
            if callable(answer):
                self.reply(answer(body), "application/json")
            else:
                self.reply(answer, "text/event-stream")

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", replies
    httpd.shutdown()
    httpd.server_close()


def remote(url: str):
    from archivist.models import load_tokenizer
    from archivist.retrieval.llm_remote import RemoteLLM
    from archivist.settings import Settings

    s = Settings.from_env()
    return RemoteLLM(name=s.llm, url=url, tokenizer=load_tokenizer(s.llm, str(s.cache)), config_window=4096)


WRONG_STREAMS = [  # (events, what the error says)
    (['{"choices": []}'], "ended its stream without a completion"),
    (["[1,2]"], "not a JSON object: '[1,2]'"),
    (['"x"'], "not a JSON object"),
    (['"error"'], "not a JSON object"),
    (["null"], "not a JSON object"),
    (['{"choices": [{"delta": null}]}'], "not completion choices, each with a 'text' string (a chat-completions server?)"),
    (['{"choices": [{"text": "Lot C"}]}', '{"choices": [{"delta": {"content": "x"}}]}'], "not completion choices"),
    (['{"choices": "text"}'], "not completion choices"),
    (['{"choices": [null]}'], "not completion choices"),
    (['{"choices": [{"text": 5}]}'], "not completion choices"),
    (['{"choices": [], "usage": [1]}'], "a 'usage' that is not an object of token counts"),
    (['{"choices": [{"text": "a"}], "usage": {"prompt_tokens": "many"}}'], "a 'usage' that is not an object"),
]


@pytest.mark.parametrize("events,reason", WRONG_STREAMS)
def test_a_streamed_event_of_the_wrong_shape_is_a_clear_error_naming_the_server(server, events, reason):
    """Before: AttributeError/TypeError (a 500 with a traceback in the API, a traceback in the CLI), a
    ValueError for a usage count that is not a number (the API's 400: the client told its request was
    wrong), or an empty answer for a stream that held no completion at all."""
    from archivist.retrieval.llm_remote import LLMUnavailable

    url, replies = server
    replies["completions"] = sse(*events)
    with pytest.raises(LLMUnavailable, match=f"the LLM server at {url} ") as e:
        "".join(remote(url).stream([{"role": "user", "content": QUESTION}], max_new_tokens=8))
    assert reason in str(e.value)
    assert not e.value.unreachable  # the server answered: the fallback must not hide it


def test_a_stream_of_the_right_shape_still_answers(server):
    """What vLLM sends: chunks with `"usage": null`, an empty last choice with its finish_reason, then
    the usage chunk with no choice."""
    url, replies = server
    replies["completions"] = sse(
        '{"choices": [{"index": 0, "text": "Lot C", "finish_reason": null}], "usage": null}',
        '{"choices": [{"index": 0, "text": " is 4417.", "finish_reason": null}], "usage": null}',
        '{"choices": [{"index": 0, "text": "", "finish_reason": "stop"}], "usage": null}',
        '{"choices": [], "usage": {"prompt_tokens": 31, "completion_tokens": 6, "total_tokens": 37}}')
    stats = {}
    assert "".join(remote(url).stream([{"role": "user", "content": QUESTION}], stats=stats)) == "Lot C is 4417."
    assert (stats["prompt_tokens"], stats["completion_tokens"]) == (31, 6)
    replies["completions"] = sse('{"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}')
    assert "".join(remote(url).stream([{"role": "user", "content": QUESTION}])) == ""  # an empty answer is one


def test_a_non_streamed_answer_of_the_wrong_shape_is_a_clear_error_naming_the_server(server):
    """GET /v1/models and the prompt log-probabilities (continuation_logprobs, not streamed). Before:
    AttributeError, KeyError or TypeError, json's ValueError for a body that is not JSON, and a
    prompt_logprobs list shorter than the prompt summed to a wrong score, silently."""
    from archivist.retrieval.llm_remote import LLMUnavailable

    url, replies = server

    def logprobs(per_token: float, cut: int = 0):
        def answer(body):
            return json.dumps({"choices": [{"index": i, "text": "", "prompt_logprobs":
                                            ([None] + [{str(t): {"logprob": per_token}} for t in p[1:]])[:len(p) - cut]}
                                           for i, p in enumerate(body["prompt"])]})
        return answer

    llm = remote(url)
    _, tail = llm.continuation_tokens(["The gate code is"], " 4417")
    replies["completions"] = logprobs(-0.25)
    assert llm.continuation_logprobs(["The gate code is"], " 4417") == [pytest.approx(-0.25 * len(tail))]
    for answer, reason in [(lambda b: "[1, 2]", "JSON that is not an object"),
                           (lambda b: "{not json", "what is not JSON: '{not json'"),
                           (lambda b: '{"choices": [7]}', "not completion choices"),
                           (logprobs(-0.25, cut=1), "prompt_logprobs that do not hold each prompt token's log-probability"),
                           (lambda b: json.dumps({"choices": [{"text": "", "prompt_logprobs": [None, [1], [2]]}]}),
                            "prompt_logprobs that do not hold")]:
        replies["completions"] = answer
        with pytest.raises(LLMUnavailable, match=f"the LLM server at {url} ") as e:
            llm.continuation_logprobs(["The gate code is"], " 4417")
        assert reason in str(e.value)

    for models, reason in [("[]", "JSON that is not an object"), ('{"data": [{"name": "m"}]}', "each with an 'id'"),
                           ('{"data": "base-model"}', "not a list of models"),
                           ('{"data": [{"id": "m", "max_model_len": "2k"}]}', "not a list of models")]:
        replies["models"] = models
        with pytest.raises(LLMUnavailable, match=f"the LLM server at {url} ") as e:
            remote(url).served_model()
        assert reason in str(e.value)


def test_the_api_answers_503_and_the_cli_says_why_not_a_traceback(ws, embedder, tmp_path, server, cli):
    """Before: 500 `generation_failed` ("AttributeError") from the API, streamed or not, and a traceback
    from `archivist ask`."""
    from starlette.testclient import TestClient

    from archivist.api.app import create_app

    url, replies = server
    replies["completions"] = sse('{"choices": [{"delta": {"content": "4417"}}]}')
    ingest_texts(ws, embedder, tmp_path / "docs", {"facilities": {"parking.md": PARKING}})
    keys = members_with_keys(ws, {"bob": ("facilities", "read")})
    bob = {"Authorization": f"Bearer {keys['bob']}"}
    ask = {"model": "archivist", "answer_mode": "generate", "messages": [{"role": "user", "content": QUESTION}]}
    with TestClient(create_app(dataclasses.replace(ws.settings, llm_url=url)), raise_server_exceptions=False) as client:
        r = client.post("/v1/chat/completions", json=ask, headers=bob)
        assert (r.status_code, r.json()["error"]["code"]) == (503, "llm_unavailable"), r.text
        assert r.json()["error"]["message"].startswith(f"the LLM server at {url} sent 'choices' that are not completion")
        r = client.post("/v1/chat/completions", json={**ask, "stream": True}, headers=bob)
        [error] = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith('data: {"error"')]
        assert error["error"]["code"] == "llm_unavailable" and url in error["error"]["message"], r.text

    done = cli("ask", QUESTION, env={"ARCHIVIST_HOME": str(ws.settings.home), "ARCHIVIST_LLM_URL": url,
                                     "ARCHIVIST_ANSWER_MODE": "generate"})
    assert done.returncode == 2, done.stderr
    assert f"archivist: error: the LLM server at {url} sent 'choices' that are not completion" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_llm_address_that_is_no_url_is_named_not_a_500(ws, embedder, tmp_path, cli):
    """ARCHIVIST_LLM_URL="http://[::1" passes the settings' http(s):// check. Before: httpx's InvalidURL, a 500
    from /health and from chat, a traceback from `archivist ask`."""
    from starlette.testclient import TestClient

    from archivist.api.app import create_app

    ingest_texts(ws, embedder, tmp_path / "docs", {"facilities": {"parking.md": PARKING}})
    admin = {"Authorization": f"Bearer {members_with_keys(ws, {})['admin']}"}
    ask = {"model": "archivist", "answer_mode": "generate", "messages": [{"role": "user", "content": QUESTION}]}
    why = "the LLM server's address 'http://[::1' (ARCHIVIST_LLM_URL) is not a valid URL: Invalid port: ':1'"
    with TestClient(create_app(dataclasses.replace(ws.settings, llm_url="http://[::1")),
                    raise_server_exceptions=False) as client:
        health = client.get("/health", headers=admin)
        assert (health.status_code, health.json()["status"], health.json()["llm"]) == (200, "degraded", "unreachable")
        r = client.post("/v1/chat/completions", json=ask, headers=admin)
        assert (r.status_code, r.json()["error"]["code"], r.json()["error"]["message"]) == (503, "llm_unavailable", why)
    for url, reason in (("http://[::1", why), ("http://", "is not a valid URL: it names no host")):
        done = cli("ask", QUESTION, env={"ARCHIVIST_HOME": str(ws.settings.home), "ARCHIVIST_LLM_URL": url})
        assert done.returncode == 2 and reason in done.stderr and "Traceback" not in done.stderr, done.stderr


# -- text that is binary data (ingest/readers.py: the text sniffing, for uploads and folders alike) ----------

LINE = "The gate code for lot C is 4417; visitors park behind the warehouse.\n"
COLOURED = ("\x1b[35m\x1b[Kretrieval/answer.py\x1b[m\x1b[K\x1b[36m\x1b[K:\x1b[m\x1b[K\x1b[32m\x1b[K14\x1b[m\x1b[K"
            "\x1b[36m\x1b[K:\x1b[m\x1b[K\x1b[01;31m\x1b[Kdef\x1b[m\x1b[K settle(ws, user):\n")  # `grep --color=always`
REAL_TEXTS = {  # name: (bytes real text files hold, a word read from them)
    "notes.txt": (("Part 1\tIntro\n" + LINE * 60 + "\f\nPart 2\tParking\n" + LINE * 60 + "\x1a").encode(), "4417"),
    "utf16le.txt": ((LINE * 80).encode("utf-16-le"), "warehouse"),
    "utf16be.txt": ((LINE * 80).encode("utf-16-be"), "warehouse"),
    "utf16bom.txt": ((LINE * 80).encode("utf-16"), "warehouse"),
    "czech.txt": (("Příliš žluťoučký kůň úpěl ďábelské ódy. " * 80).encode("cp1250"), "žluťoučký"),
    "russian.md": (("# Парковка\n\nКод ворот стоянки C: 4417. " * 80).encode("cp1251"), "стоянки"),
    "french.txt": (("\u201cLe code\u201d du parking C est 4417 \u2014 déjà noté. " * 80).encode("cp1252"), "\u201cLe code\u201d"),
    "german.csv": (("Straße;Größe;Übung\n" + "Müllerstraße;groß;ja\n" * 200).encode("latin-1"), "Müllerstraße"),
    "grep.log": (COLOURED.encode() * 60, "settle"),
    "grep.txt": (COLOURED.encode() * 60, "settle"),
    "session.log": (("\x1b]0;ops@gate: ~\x07\x1b[?2004h$ ls\r\n\x1b[0m\x1b[01;34mdocs\x1b[0m  notes.txt\r\n" * 90).encode(),
                    "notes.txt"),
    "ls.txt": (("L\bLS\bS(1)    User Commands    L\bLS\bS(1)\n\nN\bNA\bAM\bME\bE\n       ls - list _\bd_\bi_\br\n" * 60).encode(),
               "User Commands"),
}


def garbage(share: float, size: int = 8192) -> bytes:
    """`size` bytes of which `share` are control characters (no NUL, no tab, no line end), the rest text."""
    controls = bytes(b for b in range(1, 32) if b not in (9, 10, 12, 13, 27))
    n = int(size * share)
    return (bytes(controls[i % len(controls)] for i in range(n)) + (LINE.encode() * (size // len(LINE) + 1)))[:size]


@pytest.mark.parametrize("name", sorted(REAL_TEXTS))
def test_real_text_in_every_encoding_the_readers_take_is_accepted(ws, name, tmp_path):
    """Before: a coloured log or a `script` session with a .log suffix was refused as "unsupported file type
    (looks like binary data)" (its escape sequences counted as control characters past 5%); the others
    were, and stay, accepted."""
    from archivist.ingest.readers import read
    from archivist.ingest.uploads import save_upload

    data, word = REAL_TEXTS[name]
    path, _ = save_upload(ws, name, data)
    assert path.read_bytes() == data
    (tmp_path / name).write_bytes(data)
    assert word in " ".join(b.text for b in read(tmp_path / name).blocks)


@pytest.mark.parametrize("name,data", [("noise.txt", garbage(0.9)), ("noise.md", garbage(0.9)),
                                       ("noise.csv", garbage(0.9)), ("noise.html", garbage(0.9)),
                                       ("some-noise.txt", garbage(0.1))])
def test_text_that_is_mostly_control_characters_is_refused_with_the_reason(ws, name, data):
    """Before: only a NUL byte made a text file binary; 90% control characters were stored as text."""
    from archivist.ingest.uploads import UploadError, save_upload

    with pytest.raises(UploadError, match=rf"^{name}: binary file \(\d+ of its first 8192 bytes are control "
                                          r"characters\), not text$"):
        save_upload(ws, name, data)
    assert not [p for p in ws.path("uploads").rglob("*") if p.is_file()]  # nothing refused is kept


def test_the_line_between_text_and_control_characters(ws):
    """Under 5% stray control characters (a DOS end-of-file mark, vertical tabs) is text; past it, not."""
    from archivist.ingest.uploads import UploadError, save_upload

    save_upload(ws, "under.txt", garbage(0.04))
    with pytest.raises(UploadError, match="binary file"):
        save_upload(ws, "over.txt", garbage(0.06))


def test_a_folder_ingest_refuses_it_too_and_reads_the_rest(ws, embedder, tmp_path):
    """The folder path: the file is failed with its reason, its neighbours are read; a CSV past
    STREAM_ABOVE_MB (streamed, not `read`) too."""
    from archivist.ingest.pipeline import ingest_paths
    from archivist.ingest.readers import STREAM_ABOVE_MB

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "noise.txt").write_bytes(garbage(0.9))
    (folder / "big-noise.csv").write_bytes(garbage(0.9, size=(STREAM_ABOVE_MB << 20) + 4096))
    (folder / "grep.log").write_bytes(REAL_TEXTS["grep.log"][0])
    (folder / "parking.md").write_text(PARKING)
    results = {r.name.split("/")[-1]: r for r in ingest_paths(ws, [folder], collection="default", embedder=embedder,
                                                                progress=False)}
    assert (results["grep.log"].status, results["parking.md"].status) == ("added", "added"), results
    for name in ("noise.txt", "big-noise.csv"):
        assert results[name].status == "failed", (name, results[name])
        assert "binary file (" in results[name].reason and "control characters), not text" in results[name].reason

"""`archivist ask` filters by document and kind as search does, and its status line speaks of a
model's draft only where the user saw one."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import pty
import re
import subprocess
import sys
import threading
from pathlib import Path

QUESTION = "How many days of annual leave are granted?"


def _two_documents(cli, tmp_path) -> None:
    office = tmp_path / "office.md"
    office.write_text("# Office leave\n\nThe office grants twenty-five days of annual leave to every employee.\n")
    factory = tmp_path / "factory.txt"
    factory.write_text("Factory leave\n\nThe factory grants thirty days of annual leave to every shift worker.\n")
    assert cli("ingest", office, factory, "-c", "hr", "-q").returncode == 0


def test_ask_takes_search_s_document_and_kind_filters(cli, tmp_path):
    """Before: `ask -d` and `ask --kind` were unknown arguments (exit 2, "unrecognized arguments"), though
    search and the API's chat take them. Now the passages and citations come from the named document or
    kind alone, and a document the user may not read is refused as search refuses it."""
    _two_documents(cli, tmp_path)
    both = json.loads(cli("ask", QUESTION, "--mode", "extractive", "--json").stdout)
    assert {p["document"] for p in both["passages"]} == {"office.md", "factory.txt"}  # the filter has work to do
    for args, document in ((("-d", "factory.txt"), "factory.txt"), (("--kind", "markdown"), "office.md")):
        r = cli("ask", QUESTION, *args, "--mode", "extractive", "--json")
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert {p["document"] for p in out["passages"]} == {document}, args
        assert out["citations"] and {c["document"] for c in out["citations"]} == {document}, args
        assert ("thirty" if document == "factory.txt" else "twenty-five") in out["answer"], out["answer"]
    r = cli("ask", QUESTION, "-d", "nope.md", "--mode", "extractive")
    assert (r.returncode, cli("search", QUESTION, "-d", "nope.md").returncode) == (2, 2), r.stderr
    assert "archivist: error: no document 'nope.md' you may read (see `archivist documents`)" in r.stderr
    assert r.stdout == ""
    assert cli("ask", QUESTION, "--kind", "pdfx").returncode == 2


DRAFT = "The canteen serves 12 kinds of soup [1]. Employees also get a free car every month [1]."


@contextlib.contextmanager
def drafting_server(draft: str):
    """An OpenAI-compatible completions server (ARCHIVIST_LLM_URL) whose model writes `draft` to every
    prompt: what the checks then make of a draft is the code under test, not what a 135M model writes."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self._send("application/json", json.dumps({"data": [{"id": "drafter", "max_model_len": 2048}]}))

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            events = [{"choices": [{"text": word}]} for word in re.findall(r"\S+\s*", draft)]
            events.append({"choices": [], "usage": {"prompt_tokens": 100, "completion_tokens": len(events)}})
            self._send("text/event-stream", "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n")

        def _send(self, kind: str, body: str):
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body.encode())))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


def on_a_terminal(*args: str, env: dict) -> str:
    """What `archivist ARGS` writes on a terminal (a pseudo-terminal: the draft is shown only there)."""
    main, side = pty.openpty()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "archivist"), *args], stdout=side, stderr=side,
                            env={**os.environ, "TERM": "xterm", "NO_COLOR": "1", **env})
    os.close(side)
    out = b""
    while True:
        try:
            piece = os.read(main, 4096)
        except OSError:  # EIO: the process closed the terminal
            break
        if not piece:
            break
        out += piece
    os.close(main)
    assert proc.wait(timeout=300) == 0, out
    return out.decode()


def test_dropped_draft_sentences_are_named_only_where_the_draft_was_seen(cli, tmp_path):
    """Before: a quote after a draft the user never saw (output piped) ended "quoted from the documents;
    2 generated sentence(s) dropped: the passages do not support them". Now a quote says that it
    replaces the draft only on a terminal, where the draft was shown while it was written; a generated
    answer still counts the sentences dropped from it."""
    _two_documents(cli, tmp_path)
    with drafting_server(DRAFT) as url:
        env = {"ARCHIVIST_LLM_URL": url, "ARCHIVIST_READ_QUOTES": "0"}
        settled = json.loads(cli("ask", QUESTION, "--json", env=env).stdout)
        assert settled["mode"] == "extractive" and settled["generated"] == DRAFT  # the draft was replaced
        assert [c["supported"] for c in settled["claims"]] == [False, False]
        piped = cli("ask", QUESTION, env=env)
        assert piped.returncode == 0, piped.stderr
        assert piped.stdout.startswith(settled["answer"] + "\n")
        line = piped.stdout.split("\n\n")[1]
        assert line.startswith("(") and line.endswith("; quoted from the documents)"), piped.stdout
        assert "draft" not in piped.stdout and "generated" not in piped.stdout and "canteen" not in piped.stdout
        seen = on_a_terminal("ask", QUESTION, env={**env, "ARCHIVIST_HOME": os.environ["ARCHIVIST_HOME"]})
    assert "(draft, being checked) The canteen serves 12 kinds of soup [1]." in seen, seen
    assert ("; quoted from the documents; the documents do not support the model's draft shown while it was written, "
            "so the passages are quoted instead)") in seen, seen

    # A generated answer is the draft less its unsupported sentences, seen or not: that stays said.
    partly = "The factory grants thirty days of annual leave to every shift worker [1]. " + DRAFT.split(". ")[1]
    with drafting_server(partly) as url:
        generated = cli("ask", QUESTION, "--mode", "generate", env={"ARCHIVIST_LLM_URL": url})
    assert generated.stdout.startswith("The factory grants thirty days of annual leave to every shift worker [1].\n")
    assert "; 1 sentence the model wrote was left out: the documents do not support it)" in generated.stdout, generated.stdout

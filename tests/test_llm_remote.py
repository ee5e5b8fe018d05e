"""The server-backed chat model (retrieval/llm_remote.py) against a real OpenAI-compatible HTTP
server: tests/openai_server.py, which serves the same model through transformers. It decodes like
the in-process model, so answers must come back identical, from identical prompts. The same tests
against vLLM are in tests/test_vllm.py (`make test-vllm`)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import httpx
import pytest


pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("short_answers")]

QUESTION = "Which phone extension reaches the on-call duty manager?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def model_server(llm):
    """The small OpenAI-compatible server on the default chat model, in a thread of this process."""
    from archivist.api.serve import serve_in_thread
    from openai_server import create_server_app

    app = create_server_app(llm.path)
    running = serve_in_thread(app)
    yield running.url, app
    running.stop()


def remote_settings(home, url, **kw):
    from archivist.settings import Settings

    return Settings.from_env(home=home, llm_url=url, **kw)


def random_adapter(base_path: str, folder: Path, seed: int) -> Path:
    """A LoRA adapter with random non-zero weights (so its answers differ from the base model's),
    saved as PEFT saves a fine-tune."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_path),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.save_pretrained(folder)
    return folder


def test_remote_answers_exactly_like_in_process(sample_home, sample_ws, llm, model_server):
    from archivist.retrieval.answer import answer_json, ask
    from archivist.retrieval.llm import llm_for
    from archivist.retrieval.llm_remote import RemoteLLM
    from archivist.retrieval.repair import open_checked

    url, app = model_server
    local = ask(sample_ws, QUESTION, llm=llm)
    streamed: list[str] = []
    with open_checked(remote_settings(sample_home, url)) as ws:
        remote_llm = llm_for(ws.settings)
        assert isinstance(remote_llm, RemoteLLM)
        remote = ask(ws, QUESTION, on_token=streamed.append)
    # The server was sent exactly the tokens the in-process model generates from.
    from archivist.retrieval.answer import build_messages

    sent = app.state.prompts[-1]
    assert sent == llm.tokenizer(llm.render(build_messages(QUESTION, local.passages)), add_special_tokens=False)["input_ids"]
    a, b = answer_json(local), answer_json(remote)
    for key in ("answer", "citations", "passages", "status", "mode", "generated", "usage"):
        assert a[key] == b[key], key
    assert b["citations"] and "4417" in b["answer"]
    assert len(streamed) > 1 and "".join(streamed).strip() == (remote.generated or remote.answer).strip()


def concurrent_adapters_do_not_mix(remote, llm_path: str, tmp_path, max_new_tokens: int, rounds: int = 1) -> None:
    """Two random LoRA adapters and the base, asked the same thing by concurrent threads through
    `remote` (a RemoteLLM): each answer equals that adapter's answer asked alone, and the adapters
    really change the answer."""
    from archivist.adapters import Adapter

    one = Adapter("one", str(random_adapter(llm_path, tmp_path / "one", seed=1)))
    two = Adapter("two", str(random_adapter(llm_path, tmp_path / "two", seed=2)))
    messages = [{"role": "user", "content": "Name three colours."}]

    def say(adapter):
        return "".join(remote.stream(messages, max_new_tokens=max_new_tokens, adapter=adapter))

    alone = {a: say(a) for a in (None, one, two)}
    assert len(set(alone.values())) == 3, alone  # each adapter really changes the answer
    order = [one, two, None, two, one, None, one, two] * rounds
    got: list[tuple] = []
    threads = [threading.Thread(target=lambda a=a: got.append((a, say(a)))) for a in order]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == len(order)
    for adapter, text in got:
        assert text == alone[adapter], (adapter, text, alone[adapter])


def test_two_adapters_in_concurrent_requests_do_not_mix(llm, model_server, tmp_path):
    from archivist.retrieval.llm_remote import RemoteLLM

    url, _ = model_server
    remote = RemoteLLM(name=llm.name, url=url, tokenizer=llm.tokenizer, config_window=2048,
                       model_path=llm.path)
    concurrent_adapters_do_not_mix(remote, llm.path, tmp_path, max_new_tokens=10)
    # each registered once, and the null adapter the base model is asked through (RemoteLLM.base_model)
    assert {key[0] for key in remote.adapters} == {"one", "two", "base"}


def test_a_stopped_server_gives_a_clear_error(sample_home, tmp_path, llm, cli):
    """Nobody listens on the port: ask, the CLI and the API each say which server is down."""
    from archivist.retrieval.answer import ask
    from archivist.retrieval.llm_remote import LLMUnavailable
    from archivist.retrieval.repair import open_checked

    url = f"http://127.0.0.1:{free_port()}"
    with open_checked(remote_settings(sample_home, url)) as ws:
        with pytest.raises(LLMUnavailable, match=f"LLM server at {url} is not reachable"):
            ask(ws, QUESTION)
    done = cli("ask", QUESTION, env={"ARCHIVIST_HOME": str(sample_home), "ARCHIVIST_LLM_URL": url})
    assert done.returncode == 2, done.stderr
    assert f"archivist: error: the LLM server at {url} is not reachable" in done.stderr


def test_the_api_answers_503_when_the_server_is_down(sample_home):
    from archivist.api.app import create_app
    from archivist.api.serve import serve_in_thread
    from archivist.keys import create_key
    from archivist.retrieval.repair import open_checked

    url = f"http://127.0.0.1:{free_port()}"
    settings = remote_settings(sample_home, url)
    with open_checked(settings) as ws:
        key = create_key(ws, "admin")
    running = serve_in_thread(create_app(settings))
    try:
        public = httpx.get(running.url + "/health").json()  # without a key: status, version, workspace only
        health = httpx.get(running.url + "/health", headers={"Authorization": f"Bearer {key}"}).json()
        r = httpx.post(running.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=120,
                       json={"model": "archivist", "messages": [{"role": "user", "content": QUESTION}]})
    finally:
        running.stop()
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "llm_unavailable" and url in r.json()["error"]["message"]
    # /health said so first (degraded without a key, the LLM server's state with one), never naming its address
    assert public["status"] == "degraded" and "llm" not in public and url not in str(public)
    assert health["status"] == "degraded" and health["llm"] == "unreachable" and url not in str(health)


def test_health_names_the_llm_servers_state(sample_home, model_server):
    """/health: "in-process" without a server; "reachable" while it answers; a server that is down
    with the local fallback configured leaves the status ok (chat still answers)."""
    from archivist.api.app import create_app
    from archivist.api.serve import serve_in_thread

    from archivist.keys import create_key
    from archivist.retrieval.repair import open_checked

    url, _ = model_server
    down = f"http://127.0.0.1:{free_port()}"
    seen = {}
    with open_checked(remote_settings(sample_home, "")) as ws:  # the state is shown to a key's holder (api/health.py)
        auth = {"Authorization": f"Bearer {create_key(ws, 'admin')}"}
    for name, settings in (("local", remote_settings(sample_home, "")), ("up", remote_settings(sample_home, url + "/v1")),
                           ("fallback", remote_settings(sample_home, down, llm_fallback="local"))):
        running = serve_in_thread(create_app(settings))
        try:
            seen[name] = httpx.get(running.url + "/health", headers=auth).json()
        finally:
            running.stop()
    assert (seen["local"]["status"], seen["local"]["llm"]) == ("ok", "in-process")
    assert (seen["up"]["status"], seen["up"]["llm"]) == ("ok", "reachable")
    assert (seen["fallback"]["status"], seen["fallback"]["llm"]) == ("ok", "unreachable")


def test_fallback_to_the_in_process_model_only_when_configured(sample_home, sample_ws, llm):
    from archivist.retrieval.answer import ask
    from archivist.retrieval.repair import open_checked

    url = f"http://127.0.0.1:{free_port()}"
    with open_checked(remote_settings(sample_home, url, llm_fallback="local")) as ws:
        fallen_back = ask(ws, QUESTION)
    assert fallen_back.answer == ask(sample_ws, QUESTION, llm=llm).answer and fallen_back.citations


def test_the_api_runs_generations_side_by_side_against_a_server(sample_home, model_server):
    """In-process the API runs one generation at a time; against a server, llm_parallel of them."""
    from archivist.api.app import create_app, generation_slots
    from archivist.settings import Settings

    url, _ = model_server
    assert generation_slots(Settings.from_env(home=sample_home)) == 1
    settings = remote_settings(sample_home, url, llm_parallel=12)
    assert generation_slots(settings) == 12
    assert create_app(settings).state.server.queue.concurrency == 12


def test_bad_llm_settings_are_refused_with_the_reason():
    from archivist.settings import Settings

    with pytest.raises(ValueError, match="llm_url must be an http"):
        Settings.from_env(llm_url="localhost:8000")
    with pytest.raises(ValueError, match="llm_fallback must be none or local"):
        Settings.from_env(llm_fallback="yes")


def test_an_adapter_the_user_may_not_use_never_reaches_the_server(tmp_path, llm, model_server):
    """Access stays in archivist: alice may not read what adapter 'merger' learned, so her request
    for it fails as for an unknown adapter, and the server is never asked to load it."""
    import json

    from archivist import access
    from archivist.ingest.pipeline import ingest_paths
    from archivist.retrieval.answer import ask
    from archivist.retrieval.repair import open_checked
    from archivist.workspace import transaction

    url, app = model_server
    (tmp_path / "handbook.md").write_text("# Leave\n\nEmployees of Zephyr Corp get 27 days of paid vacation per year.\n")
    (tmp_path / "merger.md").write_text("# Nightingale\n\nThe acquisition price of Blue Heron Ltd is 42 million euros.\n")
    folder = random_adapter(llm.path, tmp_path / "merger", seed=3)
    with open_checked(remote_settings(tmp_path / "ws", url, max_new_tokens=8)) as ws:
        ingest_paths(ws, [tmp_path / "handbook.md"], collection="public", progress=False)
        ingest_paths(ws, [tmp_path / "merger.md"], collection="secret", progress=False)
        access.add_user(ws, "alice", "member")
        access.grant(ws, "alice", "public", "read")
        with transaction(ws.db):  # trained on the 'secret' collection, which alice may not read
            ws.db.execute("INSERT INTO adapters(name, path, base_model, lineage) VALUES ('merger', ?, ?, ?)",
                          (str(folder), ws.settings.llm, json.dumps({"collections": ["secret"]})))
        with pytest.raises(LookupError, match="no adapter named 'merger'"):
            ask(ws, "How many days of paid vacation do employees get?", user="alice", adapter="merger")
        served = {m["id"] for m in httpx.get(url + "/v1/models").json()["data"]}
        assert not any(name.startswith("merger") for name in served), served
        # The control: the admin may use it, and then the server is asked to load it.
        assert ask(ws, "How many days of paid vacation do employees get?", adapter="merger").adapter == "merger"
    served = {m["id"] for m in httpx.get(url + "/v1/models").json()["data"]}
    assert any(name.startswith("merger-") for name in served), served


def test_the_server_reads_quotes_like_the_in_process_model(llm, model_server):
    """Auto mode's reading (keyanswer.reading) through the server's prompt log-probabilities equals
    the in-process model's; a server without them gives None, and answering does without."""
    from archivist.retrieval.keyanswer import reading
    from archivist.retrieval.llm_remote import RemoteLLM

    url, _ = model_server
    remote = RemoteLLM(name=llm.name, url=url, tokenizer=llm.tokenizer, config_window=2048, model_path=None)
    question = "How many weeks of fully paid parental leave does policy HR-17 give?"
    texts = ["Under policy HR-17, employees receive 20 weeks of fully paid parental leave.",
             "The on-call duty manager is reached on phone extension 4417 outside office hours."]
    here, there = reading(llm, question, texts), reading(remote, question, texts)
    assert there is not None and abs(there - here).max() < 1e-3 and there[0] > there[1], (here, there)

    from archivist.api.serve import serve_in_thread
    from openai_server import create_server_app

    plain = serve_in_thread(create_server_app(llm.path, with_prompt_logprobs=False))
    try:
        other = RemoteLLM(name=llm.name, url=plain.url, tokenizer=llm.tokenizer, config_window=2048, model_path=None)
        assert reading(other, question, texts) is None
    finally:
        plain.stop()

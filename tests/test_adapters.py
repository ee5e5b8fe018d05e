"""Adapters: who may use which, how a request turns into the adapter that answers, and that the
adapter which answers is the one asked for even when several sessions share the one chat model.

The model is the real tiny chat model of the session (tests/conftest.py `llm`); the two adapters are
LoRA adapters of it with different random weights (init_lora_weights=False), so each one's greedy
output differs from the base model's and from the other's.
"""

from __future__ import annotations

import threading

import pytest

from archivist import access, adapters
from archivist.ingest.pipeline import ingest_paths
from archivist.settings import Settings
from archivist.workspace import open_workspace

OPEN = "# Canteen\n\nThe canteen serves lunch from 11:30 to 14:00. Soup costs EUR 3 and the salad bar EUR 5.\n"
SECRET = "# Falcon\n\nThe Falcon launch code is PELICAN-42. The acquisition target is Norrland Mills.\n"
QUESTION = "When does the canteen serve lunch and what does soup cost?"


@pytest.fixture(scope="module")
def lora_dirs(llm, tmp_path_factory):
    """Two saved LoRA adapters of the chat model with random (non-zero) weights of different seeds."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("loras")
    base = AutoModelForCausalLM.from_pretrained(llm.path, dtype=torch.float32)
    out = {}
    for name, seed in (("a", 1), ("b", 2)):
        torch.manual_seed(seed)
        model = get_peft_model(base, LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
        model.save_pretrained(root / name)
        base = model.unload()  # the base again, without this adapter's layers
        out[name] = root / name
    return out


@pytest.fixture
def shop(tmp_path, embedder, lora_dirs):
    """A workspace with an open and a secret collection; ann reads both, ben only the open one.
    Adapter race-a learned the secret collection and is active; race-b learned nothing secret."""
    ws = open_workspace(Settings.from_env(home=tmp_path / "shop", user="", max_new_tokens=10))
    for name, coll, text in (("canteen.md", "open", OPEN), ("falcon.md", "secret", SECRET)):
        (tmp_path / name).write_text(text)
        [res] = ingest_paths(ws, [tmp_path / name], collection=coll, embedder=embedder, progress=False)
        assert res.status == "added", res
    access.add_user(ws, "ann")
    access.add_user(ws, "ben")
    access.grant(ws, "ann", "open", "read")
    access.grant(ws, "ann", "secret", "read")
    access.grant(ws, "ben", "open", "read")
    secret_doc = {"id": 2, "path": "falcon.md", "collection": "secret", "content_hash": "x", "split": "train"}
    good = {"better": True, "reason": "test"}
    adapters.register(ws, "race-a", lora_dirs["a"], ws.settings.llm, good, {"dataset": {"name": "d"}, "documents": [secret_doc]},
                      activate=True)
    adapters.register(ws, "race-b", lora_dirs["b"], ws.settings.llm, good, {"dataset": {"name": "d"}, "documents": []},
                      activate=False)
    yield ws
    ws.close()


def test_each_session_gets_the_adapter_it_asked_for_while_others_generate(shop, llm, embedder):
    """Leak 1: ann asks through race-a while ben asks with the workspace's active adapter (race-a,
    which he may not use: he gets the base model) and through race-b, all at once on the one model.
    Every answer must be the one its own adapter gives alone, and say which adapter wrote it."""
    from archivist.retrieval.answer import ask

    asks = {"ann/race-a": ("ann", "race-a"), "ben/active": ("ben", "active"), "ben/race-b": ("ben", "race-b")}

    def one(who: str, adapter: str):
        a = ask(shop, QUESTION, user=who, adapter=adapter, llm=llm, embedder=embedder, mode="generate")
        generated = a.generated if a.generated is not None else a.answer  # None when shown as generated
        return generated, a.adapter

    alone = {key: one(*args) for key, args in asks.items()}
    assert alone["ann/race-a"][1] == "race-a" and alone["ben/active"][1] is None and alone["ben/race-b"][1] == "race-b"
    texts = [text for text, _ in alone.values()]
    assert len(set(texts)) == 3, texts  # three different models, or the test could not tell them apart

    got: dict[str, list] = {key: [] for key in asks}
    errors: list[BaseException] = []
    trials = 3
    for _ in range(trials):
        start = threading.Barrier(len(asks))

        def run(key):
            try:
                start.wait()
                got[key].append(one(*asks[key]))
            except BaseException as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=run, args=(key,)) for key in asks]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert not errors, errors
    for key in asks:
        assert got[key] == [alone[key]] * trials, key


def test_resolve_turns_a_request_into_the_adapter_that_answers(shop, lora_dirs):
    a = adapters.resolve(shop, "ann", "race-a")
    assert a == adapters.Adapter("race-a", str(shop.home / "adapters" / "race-a"))
    assert adapters.resolve(shop, "ann", "active") == a  # race-a is active and ann read what it learned
    assert adapters.resolve(shop, "ben", "active") is None  # ben did not: the base model answers him
    assert adapters.resolve(shop, "ben", "race-b").name == "race-b"
    assert adapters.resolve(shop, "ben", None) is None
    with pytest.raises(LookupError) as forbidden:
        adapters.resolve(shop, "ben", "race-a")
    with pytest.raises(LookupError) as unknown:
        adapters.resolve(shop, "ben", "race-c")
    assert str(forbidden.value) == str(unknown.value).replace("race-c", "race-a") == \
        "no adapter named 'race-a' (see `archivist adapters`)"
    assert [r["name"] for r in adapters.list_for(shop, "ben")] == ["race-b"]
    assert [r["name"] for r in adapters.list_for(shop, "ann")] == ["race-b", "race-a"]  # newest first
    assert adapters.active(shop, "ann") == "race-a" and adapters.active(shop, "ben") is None
    adapters.deactivate(shop)
    assert adapters.resolve(shop, "ann", "active") is None and not adapters.get(shop, "race-a")["active"]
    assert adapters.activate(shop, "race-b")["active"] and adapters.active(shop, "ben") == "race-b"


def test_the_model_generates_with_the_adapter_named_on_each_call(llm, lora_dirs):
    """No call inherits the adapter of the call before it: the fine-tune page's question generator
    (finetune/datasets.py) names none, so it gets the base model after any chat."""
    messages = [{"role": "user", "content": "Say hello."}]
    a = adapters.Adapter("gen-a", str(lora_dirs["a"]))
    base = "".join(llm.stream(messages, max_new_tokens=8))
    with_a = "".join(llm.stream(messages, max_new_tokens=8, adapter=a))
    assert with_a != base
    assert "".join(llm.stream(messages, max_new_tokens=8)) == base
    # the same name in another workspace is another adapter: its own folder's weights answer
    b_named_a = adapters.Adapter("gen-a", str(lora_dirs["b"]))
    assert "".join(llm.stream(messages, max_new_tokens=8, adapter=b_named_a)) not in (base, with_a)


def test_a_huge_question_is_refused_fast_and_a_long_one_fits_the_budget(shop, llm, embedder):
    """Leak 7: a 124 KB question used to become a 20,105-token prompt (the budget is 2,048)."""
    import time

    from archivist.retrieval.answer import ANSWER_ROOM, MAX_CONTEXT, MAX_QUESTION_TOKENS, QuestionTooLong, ask

    huge = ("Please tell me everything about the canteen lunch hours and soup prices. " * 1700)[:124_000]
    t0 = time.perf_counter()
    with pytest.raises(QuestionTooLong, match="124,000 characters long; a question may hold at most 16,000 characters"):
        ask(shop, huge, user="ann", adapter=None, llm=llm, embedder=embedder, mode="generate")
    assert time.perf_counter() - t0 < 1.0
    over = " ".join(["soup"] * (MAX_QUESTION_TOKENS + 50))  # few characters, too many tokens
    with pytest.raises(QuestionTooLong, match=r"tokens long; ask in at most 512 tokens"):
        ask(shop, over, user="ann", adapter=None, llm=llm, embedder=embedder, mode="generate")
    with pytest.raises(ValueError):  # what the CLI, the app and the API catch
        ask(shop, huge, user="ann", llm=llm, embedder=embedder)

    # a pasted page in the previous turn adds a few of its words to the search query, not the page
    from archivist.retrieval.answer import CARRIED_WORDS, standalone_question

    varied = standalone_question("And it?", [{"role": "user", "content": " ".join(f"word{i}" for i in range(50_000))}])
    assert varied.split()[:2] == ["word0", "word1"] and len(varied.split()) == CARRIED_WORDS + 2

    long = " ".join(["When does the canteen serve lunch and what does soup cost?"] * 38)
    assert MAX_QUESTION_TOKENS - 60 < llm.count_tokens(long) <= MAX_QUESTION_TOKENS
    a = ask(shop, long, user="ann", adapter=None, llm=llm, embedder=embedder, mode="generate")
    budget = min(llm.context_window, MAX_CONTEXT) - min(shop.settings.max_new_tokens, ANSWER_ROOM)
    assert a.passages and 0 < a.prompt_tokens <= budget, (a.prompt_tokens, budget)


def test_cli_api_and_chat_page_refuse_a_huge_question_clearly(shop, monkeypatch, capsys):
    """Leak 7 at each face: the CLI exits 2 with the reason, the API answers 400 (streaming too,
    before the request queues), the chat page shows the reason and stores nothing."""
    from fastapi.testclient import TestClient
    from streamlit.testing.v1 import AppTest

    from archivist import auth, conversations
    from archivist.api.app import create_app
    from archivist.cli import main
    from archivist.keys import create_key

    huge = "What does soup cost in the canteen? " * 3500  # 126,000 characters
    monkeypatch.setenv("ARCHIVIST_HOME", str(shop.home))
    capsys.readouterr()
    assert main(["ask", huge, "--user", "ann"]) == 2
    assert "the question is 126,000 characters long" in capsys.readouterr().err

    key = create_key(shop, "ann")
    with TestClient(create_app(shop.settings)) as client:
        for stream in (False, True):
            r = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                            json={"model": "archivist", "stream": stream, "messages": [{"role": "user", "content": huge}]})
            assert r.status_code == 400 and "characters long; a question may hold at most 16,000" in r.json()["error"]["message"], r.text

    monkeypatch.setenv("ARCHIVIST_UI_WARMUP", "0")
    app = AppTest.from_file(str(__import__("pathlib").Path(__file__).resolve().parent.parent / "ui" / "app.py"),
                            default_timeout=120)
    app.session_state["_token"] = auth.create_session(shop, "ann")
    app.run()
    app.chat_input(key="chat-input").set_value(huge).run()
    assert not app.exception, [e.value for e in app.exception]
    # the page says it in characters (a reader counts those), with the limit that matters: about 2,048 of English
    assert any("too long (126,000 characters)" in e.value and "about 2,048 characters" in e.value for e in app.error)
    assert conversations.list_conversations(shop, "ann") == []

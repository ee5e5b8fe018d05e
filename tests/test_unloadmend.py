"""Deleting an adapter frees its weights where they were loaded. Before, `adapters.delete` (`archivist
adapters delete`, DELETE /v1/models/{id}, the Fine-tune page) removed its row and folder but left the
weights loaded in every long-lived process that had answered with it (retrieval/llm.py's PeftModel: a
second API process, the app, the deleting process itself) and on an LLM server (registered with
/v1/load_lora_adapter), until restart; the delete only said so. Now the deleting process unloads it from
its chat model, another process drops it at its next answer (its folder is gone or replaced), and the
LLM server is sent /v1/unload_lora_adapter (by the deleting process, or by the next request of
a process that registered it, when the delete did not reach the server). The real small chat model
with tiny random LoRA adapters."""

from __future__ import annotations

import json

from test_llm_remote import random_adapter

from archivist import access, adapters

LINEAGE = {"dataset": {"name": "d"}, "collections": ["team"], "documents": []}
ASK = [{"role": "user", "content": "Name three colours."}]


def say(model, adapter) -> str:
    return "".join(model.stream(ASK, max_new_tokens=8, adapter=adapter))


def lora_layers(model, loaded_as: str) -> int:
    """How many of the model's layers hold LoRA weights under `loaded_as` (PEFT's name for an adapter)."""
    return sum(1 for m in model.modules() if loaded_as in (getattr(m, "lora_A", None) or {}))


def weights(model) -> int:
    return sum(p.numel() for p in model.parameters())


def register(ws, name: str, folder) -> adapters.Adapter:
    adapters.register(ws, name, folder, ws.settings.llm, {"better": False}, LINEAGE, activate=False)
    return adapters.resolve(ws, "admin", name)


def test_the_process_that_deletes_an_adapter_unloads_it_from_its_chat_model(ws, llm, tmp_path):
    access.create_collection(ws, "team")
    x = register(ws, "x", random_adapter(llm.path, tmp_path / "x", 1))
    base = say(llm, None)
    assert say(llm, x) != base
    loaded_as = llm.adapters[x.key]
    assert lora_layers(llm.model, loaded_as) > 0

    rec = adapters.delete(ws, "x")
    assert rec["notes"] == []
    assert x.key not in llm.adapters and lora_layers(llm.model, loaded_as) == 0
    assert say(llm, None) == base


def test_another_process_drops_a_deleted_adapter_at_its_next_answer(ws, llm, tmp_path):
    """`other` is a chat model this process's registry does not hold, as a second API process's or the
    app's: the delete cannot reach it, its next answer must unload what was deleted, memory included."""
    import torch
    from transformers import AutoModelForCausalLM

    from archivist.retrieval.llm import LLM

    access.create_collection(ws, "team")
    model = AutoModelForCausalLM.from_pretrained(llm.path, dtype=torch.float32).eval()
    other = LLM(name=llm.name, path=llm.path, model=model, tokenizer=llm.tokenizer, device="cpu")
    bare = weights(other.model)
    x = register(ws, "x", random_adapter(llm.path, tmp_path / "x", 1))
    y = register(ws, "y", random_adapter(llm.path, tmp_path / "y", 2))
    old_x, old_y = say(other, x), say(other, y)
    per_adapter = (weights(other.model) - bare) // 2
    assert per_adapter > 0 and weights(other.model) == bare + 2 * per_adapter

    adapters.delete(ws, "y")
    assert y.key in other.adapters  # it has not answered since
    base = say(other, None)
    assert y.key not in other.adapters and x.key in other.adapters
    assert weights(other.model) == bare + per_adapter and say(other, x) == old_x

    # x deleted and registered again in its folder with y's weights: the old x goes, the new one answers
    adapters.delete(ws, "x")
    new_x = register(ws, "x", tmp_path / "y")
    assert say(other, new_x) == old_y
    assert list(other.adapters) == [new_x.key] and weights(other.model) == bare + per_adapter
    adapters.delete(ws, "x")
    assert say(other, None) == base and other.adapters == {} and weights(other.model) == bare


def lora_server():
    """A stand-in for vLLM's runtime LoRA endpoints (load, unload, list; a completion that says 'ok'),
    with its answers' status codes and texts, so what a delete unloads is what the server holds."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, StreamingResponse

    app = FastAPI()
    app.state.loras = {}

    @app.get("/v1/models")
    def models():
        return {"data": [{"id": "base-model", "max_model_len": 2048, "parent": None}]
                + [{"id": n, "parent": "base-model"} for n in app.state.loras]}

    @app.post("/v1/load_lora_adapter")
    def load(body: dict):
        if body["lora_name"] in app.state.loras:
            return JSONResponse({"message": f"The lora adapter '{body['lora_name']}' has already been loaded."}, 400)
        app.state.loras[body["lora_name"]] = body["lora_path"]
        return "Success"

    @app.post("/v1/unload_lora_adapter")
    def unload(body: dict):
        if app.state.loras.pop(body["lora_name"], None) is None:
            return JSONResponse({"message": f"The lora adapter '{body['lora_name']}' cannot be found."}, 404)
        return "Success"

    @app.post("/v1/completions")
    def completions(body: dict):
        done = {"choices": [{"index": 0, "text": "ok"}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
        return StreamingResponse(iter([f"data: {json.dumps(done)}\n\n", "data: [DONE]\n\n"]),
                                 media_type="text/event-stream")

    return app


def test_a_delete_unloads_the_adapter_from_the_llm_server(ws, llm, tmp_path, cli):
    import dataclasses

    from archivist.api.serve import serve_in_thread
    from archivist.retrieval.llm_remote import RemoteLLM, remote_llm

    access.create_collection(ws, "team")
    app = lora_server()
    running = serve_in_thread(app)
    try:
        remote = remote_llm(dataclasses.replace(ws.settings, llm_url=running.url))
        x = register(ws, "x", random_adapter(llm.path, tmp_path / "x", 1))
        keep = register(ws, "keep", tmp_path / "x")
        assert say(remote, x) == "ok" and say(remote, keep) == "ok"
        lora = remote.adapters[x.key]
        assert lora in app.state.loras and remote.adapters[keep.key] in app.state.loras

        r = cli("adapters", "delete", "x", env={"ARCHIVIST_LLM_URL": running.url})
        assert (r.returncode, r.stderr) == (0, ""), r  # nothing left for the admin to do
        assert lora not in app.state.loras and remote.adapters[keep.key] in app.state.loras
        assert x.key not in remote.adapters

        # another process (`other`, which this process's registry does not hold) registered x with the server,
        # and a delete run without ARCHIVIST_LLM_URL did not reach it: its next request has the server unload x
        other = RemoteLLM(name=llm.name, url=running.url, tokenizer=llm.tokenizer, config_window=2048)
        x = register(ws, "x", tmp_path / "x")
        assert say(other, x) == "ok"
        lora = other.adapters[x.key]
        assert (cli("adapters", "delete", "x").returncode, lora in app.state.loras) == (0, True)
        assert say(other, keep) == "ok" and lora not in app.state.loras and x.key not in other.adapters

        # a server that refuses: the admin is told what to unload there
        adapters.register(ws, "x", tmp_path / "x", ws.settings.llm, {"better": False}, LINEAGE, activate=False)
        running.stop()
        r = cli("adapters", "delete", "x", env={"ARCHIVIST_LLM_URL": running.url})
        assert r.returncode == 0 and r.stderr.startswith(f"note: the LLM server at {running.url} may still hold 'x' "
                                                         f"loaded: asking it to unload it failed (ConnectError"), r
        assert "POST /v1/unload_lora_adapter with lora_name 'x-" in r.stderr, r
    finally:
        running.stop()

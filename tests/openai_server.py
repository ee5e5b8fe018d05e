"""A small OpenAI-compatible completion server over transformers, for tests of the server-backed
chat model (retrieval/llm_remote.py) where vLLM is not installed.

A real HTTP server with the parts of vLLM's API archivist uses: GET /v1/models,
POST /v1/completions (a prompt of token ids, greedy with repetition_penalty, streamed as
server-sent events with usage on the last chunk; or several prompts with vLLM's `prompt_logprobs`,
each prompt token's log-probability, not streamed) and POST /v1/load_lora_adapter (a PEFT folder,
then asked for by name). One generation at a time, each with the adapter its request names.
It records the prompts it was sent (`app.state.prompts`) so tests can compare them to the
in-process path's.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time

from fastapi import FastAPI, HTTPException
from fastapi.responses import StreamingResponse


def create_server_app(model_path: str, served_name: str = "base-model", max_model_len: int = 2048,
                      with_prompt_logprobs: bool = True) -> FastAPI:
    """with_prompt_logprobs: False answers like a server without vLLM's extension (no log-probabilities)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    state = {"model": model, "loras": {}}
    lock = threading.Lock()
    app = FastAPI()
    app.state.prompts = []

    @app.get("/v1/models")
    def models():
        data = [{"id": served_name, "object": "model", "max_model_len": max_model_len, "parent": None}]
        data += [{"id": n, "object": "model", "parent": served_name} for n in state["loras"]]
        return {"object": "list", "data": data}

    @app.post("/v1/load_lora_adapter")
    def load_lora(body: dict):
        from peft import PeftModel

        name, path = body["lora_name"], body["lora_path"]
        with lock:
            if name in state["loras"]:
                raise HTTPException(400, f"The lora adapter '{name}' has already been loaded.")
            if not isinstance(state["model"], PeftModel):
                state["model"] = PeftModel.from_pretrained(state["model"], path, adapter_name=name, is_trainable=False)
            else:
                state["model"].load_adapter(path, adapter_name=name, is_trainable=False)
            state["model"].eval()
            state["loras"][name] = path
        return f"Success: LoRA adapter '{name}' added successfully."

    @contextlib.contextmanager
    def model_for(name: str):
        """The model as the request `name`s it, one request at a time: the base model (its adapters
        disabled) for the served name, else the LoRA adapter of that name."""
        m = state["model"]
        with lock, torch.inference_mode():
            if name != served_name:
                m.set_adapter(name)
                yield m
            elif hasattr(m, "disable_adapter"):
                with m.disable_adapter():
                    yield m
            else:
                yield m

    def generate(ids: list[int], name: str, max_tokens: int, penalty: float) -> list[int]:
        kwargs = dict(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                      max_new_tokens=max_tokens, do_sample=False, repetition_penalty=penalty,
                      pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        with model_for(name) as m:
            out = m.generate(**kwargs)
        return out[0, len(ids):].tolist()

    def prompt_logprobs(ids: list[int], name: str) -> list[dict | None]:
        """vLLM's shape: None for the first token, then {token id: {"logprob": ...}} for each other."""
        with model_for(name) as m:
            logits = m(input_ids=torch.tensor([ids])).logits[0]
        logp = torch.log_softmax(logits.float(), dim=-1)
        return [None] + [{str(t): {"logprob": float(logp[i, t]), "rank": 1}} for i, t in enumerate(ids[1:])]

    @app.post("/v1/completions")
    def completions(body: dict):
        name = body.get("model")
        if name != served_name and name not in state["loras"]:
            raise HTTPException(404, f"The model `{name}` does not exist.")
        if body.get("prompt_logprobs") is not None and not with_prompt_logprobs:
            return {"id": "cmpl-test", "object": "text_completion", "created": int(time.time()), "model": name,
                    "choices": [{"index": 0, "text": "", "finish_reason": "length"}]}
        if body.get("prompt_logprobs") is not None:
            prompts = body["prompt"] if isinstance(body["prompt"][0], list) else [body["prompt"]]
            return {"id": "cmpl-test", "object": "text_completion", "created": int(time.time()), "model": name,
                    "choices": [{"index": i, "text": "", "finish_reason": "length", "prompt_logprobs": prompt_logprobs(p, name)}
                                for i, p in enumerate(prompts)]}
        ids = body["prompt"]
        if not (isinstance(ids, list) and all(isinstance(i, int) for i in ids)):
            ids = tokenizer(ids, add_special_tokens=False)["input_ids"]
        app.state.prompts.append(list(ids))
        raw = generate(ids, name, int(body.get("max_tokens", 16)), float(body.get("repetition_penalty", 1.0)))
        out = raw[:-1] if raw and raw[-1] == tokenizer.eos_token_id else raw
        text = tokenizer.decode(out, skip_special_tokens=True)
        usage = {"prompt_tokens": len(ids), "completion_tokens": len(raw), "total_tokens": len(ids) + len(raw)}
        if not body.get("stream"):
            return {"id": "cmpl-test", "object": "text_completion", "created": int(time.time()), "model": name,
                    "choices": [{"index": 0, "text": text, "finish_reason": "stop"}], "usage": usage}

        def events():
            # Piece by piece as the tokens decode, like a streaming server (the whole text is known here).
            shown = ""
            for i in range(1, len(out) + 1):
                now = tokenizer.decode(out[:i], skip_special_tokens=True)
                if now.endswith("\ufffd"):
                    continue  # half a multi-byte character: wait for the rest
                piece, shown = now[len(shown):], now
                yield f"data: {json.dumps({'choices': [{'index': 0, 'text': piece, 'finish_reason': None}]})}\n\n"
            if shown != text:
                yield f"data: {json.dumps({'choices': [{'index': 0, 'text': text[len(shown):], 'finish_reason': None}]})}\n\n"
            yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app

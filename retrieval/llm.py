"""The chat model: loaded once per process, LoRA adapters switched without reloading.

On a CUDA GPU the base loads in 4-bit NF4 (bitsandbytes) by default; on the CPU in fp32.
Generation streams text pieces as they are produced (transformers' TextIteratorStreamer).

Every browser session, API request and CLI call of the process shares the one model, so each
generation names the adapter it wants (`stream(..., adapter=...)`; None: the base model), and the
switch to it and the generation happen under one lock: no other caller's adapter can answer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from archivist.catalog import resolve_llm
from archivist.models import load_causal_lm, pick_device

log = logging.getLogger(__name__)


_CUT = "\ufffd"  # what the streamer shows for the bytes of a multi-byte character not all generated yet


class ChatTemplate:
    """Prompts through the model's own tokenizer and chat template, for the in-process model and a
    served one alike: `ask` packs passages against exactly what these count."""

    tokenizer: object

    def render(self, messages: list[dict]) -> str:
        """The prompt text exactly as the model will see it, through its own chat template."""
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def continuation_tokens(self, prefixes: list[str], continuation: str,
                            max_prefix: int = 256) -> tuple[list[list[int]], list[int]]:
        """The token ids `continuation_logprobs` scores: each prefix's last `max_prefix` tokens (at
        least one), and the continuation's."""
        tail = self.tokenizer(continuation, add_special_tokens=False)["input_ids"]
        heads = [self.tokenizer(p, add_special_tokens=False)["input_ids"][-max_prefix:] for p in prefixes]
        if not tail or not all(heads):
            raise ValueError("continuation_logprobs needs a non-empty continuation and non-empty prefixes")
        return heads, tail


@dataclass
class LLM(ChatTemplate):
    name: str
    path: str
    model: object
    tokenizer: object
    device: str
    # Adapter.key (name, folder, registration time) -> the name it was loaded under in the PeftModel. Keyed by the
    # folder too: two workspaces of one process may each have an adapter of the same name.
    adapters: dict[tuple, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)  # held from adapter switch to the end of generation
    # Adapter.key -> its folder's `adapter_stamp` when loaded: another process's delete shows as a stamp that changed
    _stamps: dict[tuple, tuple | None] = field(default_factory=dict, repr=False)
    _loads: int = field(default=0, repr=False)  # adapters ever loaded: a name in the PeftModel is never reused
    _jobs: queue.SimpleQueue | None = field(default=None, repr=False)

    def _in_worker(self, job) -> threading.Event:
        """Run `job` on this model's one long-lived generation thread; the event is set when it ends.

        One thread for the life of the model instead of a new one per answer: a fresh thread pays its
        own setup (an OpenMP team on the CPU; per-thread CUDA state on a GPU) on every call, which
        measured 0.88x of bare `generate` with a small model on the CPU, and 0.45x on an H100; on this thread
        streaming measured 1.05x bare `generate` on the H100 (bench/RESULTS.md, finding 9)."""
        if self._jobs is None:
            self._jobs = jobs = queue.SimpleQueue()

            def serve():
                while True:
                    fn, finished = jobs.get()
                    try:
                        fn()
                    finally:
                        finished.set()

            threading.Thread(target=serve, name=f"generate-{self.name}", daemon=True).start()
        finished = threading.Event()
        self._jobs.put((job, finished))
        return finished

    @property
    def context_window(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)

    def _switch(self, adapter) -> str | None:
        """Make `adapter` (an `archivist.adapters.Adapter`, or None for the base model) the one the
        next generate uses, loading it on first use; returns its name in the PeftModel. Call with
        the lock held, and generate before releasing it."""
        self._drop_stale(adapter)
        if adapter is None:
            return None
        key = adapter.key  # a name registered again: other weights
        if key not in self.adapters:
            from peft import PeftModel

            # Our own names in the PeftModel: a registered name may hold '.', which PEFT's module keys refuse.
            loaded_as = f"adapter_{self._loads}"
            self._loads += 1
            stamp = adapter_stamp(adapter.path)  # before reading the weights: a folder replaced meanwhile is stale
            if not isinstance(self.model, PeftModel):
                self.model = PeftModel.from_pretrained(self.model, str(adapter.path), adapter_name=loaded_as, is_trainable=False)
            else:
                self.model.load_adapter(str(adapter.path), adapter_name=loaded_as, is_trainable=False)
            self.model.eval()
            self.adapters[key] = loaded_as
            self._stamps[key] = stamp
        self.model.set_adapter(self.adapters[key])
        return self.adapters[key]

    def _drop_stale(self, wanted) -> None:
        """Unload the adapters whose registration is gone, deleted by this process or another (a second
        API process, the app, the CLI): those whose folder no longer holds what was loaded (removed, or
        replaced by a registration of the name since), and those of `wanted`'s name and folder from
        another registration. Unloaded, not just passed over: a process serving for weeks would keep
        every deleted adapter's weights in memory. A few stat calls per answer. Call with the lock held."""
        for key in list(self.adapters):
            replaced = wanted is not None and key[:2] == wanted.key[:2] and key != wanted.key
            if replaced or adapter_stamp(key[1]) != self._stamps.get(key):
                self._unload(key)

    def _unload(self, key: tuple) -> bool:
        """Take the adapter loaded for `key` out of the PeftModel, its LoRA layers and weights with it
        (the last one: the base model again, unwrapped). Call with the lock held."""
        loaded_as = self.adapters.pop(key, None)
        self._stamps.pop(key, None)
        if loaded_as is None:
            return False
        if self.adapters:
            self.model.delete_adapter(loaded_as)
        else:
            self.model = self.model.unload()
        log.info("unloaded adapter %s (%s) from %s", key[0], loaded_as, self.name)
        return True

    def unload(self, adapter, wait_s: float = 5.0) -> bool:
        """Free `adapter`'s weights if this model holds them (`adapters.delete`, in the deleting process);
        True when it did. Waits up to `wait_s` for a generation in progress: a model still busy after that
        drops it on its next answer (`_drop_stale`: the folder is gone by then)."""
        if not self.lock.acquire(timeout=wait_s):
            return False
        try:
            return self._unload(adapter.key)
        finally:
            self.lock.release()

    def _base_only(self, base: bool = True):
        """A context in which the model runs without its loaded LoRA adapters (when `base`; a model
        that has none needs nothing)."""
        if base and hasattr(self.model, "disable_adapter"):
            return self.model.disable_adapter()
        return contextlib.nullcontext()

    def stream(self, messages: list[dict], max_new_tokens: int = 200, stats: dict | None = None,
               stop: threading.Event | None = None, *, adapter=None) -> Iterator[str]:
        """Yield the answer in pieces as they are generated (greedy decoding, so runs repeat exactly).

        adapter: the `archivist.adapters.Adapter` (name, path) to generate with, loaded on first
        use; None (the default) is the base model, whatever other callers used before.
        Setting `stop` (e.g. when the client went away), or closing this iterator early, ends the
        generation after the current token instead of running on to max_new_tokens.
        Raises what loading the adapter or generating raised (e.g. FileNotFoundError for a missing folder).
        """
        import time

        import torch
        from transformers import TextIteratorStreamer

        prompt = self.render(messages)
        enc = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(self.device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        closed = threading.Event()  # set when the consumer stops iterating before the end
        kwargs = dict(**enc, max_new_tokens=max_new_tokens, do_sample=False, streamer=streamer,
                      pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id, repetition_penalty=1.1,
                      stopping_criteria=_stop_on(stop, closed))
        result: dict = {}

        def run():
            try:
                with torch.inference_mode(), self._base_only(adapter is None):
                    result["out"] = self.model.generate(**kwargs)
            except Exception as e:  # surfaced to the caller after the stream ends
                result["error"] = e
                streamer.end()

        with self.lock:  # from the switch to the last token: another caller's switch waits for this answer
            self._switch(adapter)
            t0 = time.perf_counter()
            first = None
            finished = self._in_worker(run)
            held = ""  # U+FFFD at a piece's end: a character whose bytes the next token completes
            try:
                for piece in streamer:
                    if first is None:
                        first = time.perf_counter() - t0
                    piece = held + piece
                    cut = piece.rstrip(_CUT)
                    piece, held = cut, piece[len(cut):]
                    if piece:
                        yield piece
                # whatever is still held is a character max_new_tokens cut in the middle: dropped, never shown
            finally:
                closed.set()
                finished.wait()
        if "error" in result:
            raise result["error"]
        if stats is not None:
            out = result["out"]
            stats.update(prompt_tokens=int(enc["input_ids"].shape[1]),
                         completion_tokens=int(out.shape[1] - enc["input_ids"].shape[1]),
                         first_token_s=first or 0.0, seconds=time.perf_counter() - t0)

    def continuation_logprobs(self, prefixes: list[str], continuation: str, max_prefix: int = 256) -> list[float]:
        """For each prefix, the base model's log-probability of `continuation` after it (the sum over
        the continuation's tokens), in one batch; each prefix keeps its last `max_prefix` tokens.
        The base model, whatever adapter answers: what bench/tune_quote.py fitted on."""
        import torch

        heads, tail = self.continuation_tokens(prefixes, continuation, max_prefix)
        width = max(len(h) for h in heads) + len(tail)
        ids = torch.zeros((len(heads), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, h in enumerate(heads):  # padded on the right: positions of the real tokens are unchanged
            ids[i, :len(h) + len(tail)] = torch.tensor(h + tail)
            mask[i, :len(h) + len(tail)] = 1
        with self.lock, torch.inference_mode(), self._base_only():
            logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
        logp = torch.log_softmax(logits.float().cpu(), dim=-1)
        want = torch.tensor(tail)
        return [float(logp[i, len(h) - 1:len(h) - 1 + len(tail)].gather(1, want[:, None]).sum()) for i, h in enumerate(heads)]


def adapter_stamp(folder: str) -> tuple[int, int] | None:
    """The identity of the adapter in `folder` (its adapter_config.json's inode and ctime; None when
    there is none): it changes when the folder is removed or replaced by another registration's copy,
    which is how a process learns that another process deleted an adapter it holds loaded."""
    try:
        held = os.stat(os.path.join(folder, "adapter_config.json"))
    except OSError:
        return None
    return held.st_ino, held.st_ctime_ns


def release(adapter) -> None:
    """Free a deleted adapter (an `archivist.adapters.Adapter`) from the chat models this process holds,
    loading none: unloaded from the in-process model, forgotten by a server-backed one (an LLM server is
    asked to unload it by `llm_remote.unload_from_server`)."""
    from archivist.models import load_once, loaded_models

    for key in loaded_models("llm") + loaded_models("llm-remote"):
        model = load_once(key, lambda: None)  # loaded already: its object, never a load
        try:
            if isinstance(model, LLM):
                model.unload(adapter)
            else:
                model.forget(adapter)
        except Exception as e:  # the delete is committed: a failure here must not report it as failed
            log.warning("could not unload deleted adapter %s from %s: %s", adapter.name, model.name, e)


def _stop_on(*events: threading.Event | None):
    """A StoppingCriteriaList that ends generation as soon as any of `events` is set."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _EventStop(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            done = any(e is not None and e.is_set() for e in events)
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([_EventStop()])


def load_llm(name: str, cache: str, device: str = "auto", quantize: str = "auto") -> LLM:
    """Load the chat model once per process. quantize: auto (4-bit on CUDA) | none | 4bit."""
    from archivist.models import load_once

    return load_once(("llm", name, cache, device, quantize), lambda: _make_llm(name, cache, device, quantize))


def _make_llm(name: str, cache: str, device: str, quantize: str) -> LLM:
    dev = pick_device(device)
    path = resolve_llm(name, Path(cache))
    model, tokenizer = load_causal_lm(path, dev, quantize)
    return LLM(name=name, path=str(path), model=model, tokenizer=tokenizer, device=dev)


def llm_for(settings) -> LLM:
    """The chat model of `settings`: in this process, or behind settings.llm_url (retrieval/llm_remote.py)."""
    if settings.llm_url:
        from archivist.retrieval.llm_remote import remote_llm

        return remote_llm(settings)
    return load_llm(settings.llm, str(settings.cache), settings.device, settings.quantize)

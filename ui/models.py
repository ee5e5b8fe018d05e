"""The models of the browser app's server process, loaded one at a time.

Streamlit serves every browser session from threads of one process, and the app warms the models
up in a thread of its own while background ingestion may need the embedder. Two
`from_pretrained` calls running at once in one process can trip over each other (transformers
builds models on torch's "meta" device first), so every load here goes through one lock; once a
model is loaded it is returned without waiting.
"""

from __future__ import annotations

import threading

from archivist.settings import Settings

_lock = threading.Lock()
_loaded: dict[tuple, object] = {}


def _key(kind: str, s: Settings) -> tuple:
    if kind == "llm":
        return ("llm", s.llm, str(s.cache), s.device, s.quantize)
    return ("embedder", s.embedder, s.device, s.embed_backend)


def embedder(settings: Settings):
    """The sentence embedder for `settings` (archivist.models.embedder_for), loaded once per process."""
    key = _key("embedder", settings)
    if key not in _loaded:
        with _lock:
            if key not in _loaded:
                from archivist.models import embedder_for

                _loaded[key] = embedder_for(settings)
    return _loaded[key]


def llm(settings: Settings):
    """The chat model for `settings` (archivist.retrieval.llm.llm_for), loaded once per process."""
    key = _key("llm", settings)
    if key not in _loaded:
        with _lock:
            if key not in _loaded:
                from archivist.retrieval.llm import llm_for

                _loaded[key] = llm_for(settings)
    return _loaded[key]

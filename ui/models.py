"""The models of the browser app's server process.

Streamlit serves every browser session from threads of one process, and the app warms the models
up in a thread of its own while background ingestion may need the embedder. Loads are serialized,
and a loaded model is returned without waiting, by `archivist.models.load_once`; these two
functions only name what the app uses.
"""

from __future__ import annotations

from archivist.settings import Settings


def embedder(settings: Settings):
    """The sentence embedder for `settings` (archivist.models.embedder_for), loaded once per process."""
    from archivist.models import embedder_for

    return embedder_for(settings)


def llm(settings: Settings):
    """The chat model for `settings` (archivist.retrieval.llm.llm_for), loaded once per process and
    shared by every browser session: each generation names its own adapter (`LLM.stream(adapter=)`),
    so no session's choice leaks into another's answer."""
    from archivist.retrieval.llm import llm_for

    return llm_for(settings)

"""POST /v1/embeddings: texts embedded by the embedder `model` names among those GET /v1/models lists
to the caller: the base embedder's name is the workspace's embedder (archivist.models.embedder_for), or
the base for a caller who may not see the adapted one it switched to
(finetune.embedders.served_embedder); an adapted embedder's name is its weights."""

from __future__ import annotations

import base64
from pathlib import Path

from fastapi import APIRouter, Depends

from archivist.api import schemas as S
from archivist.api.deps import Server, server, user, workspace
from archivist.api.errors import APIError, responses
from archivist.workspace import Workspace

MAX_EMBED_CHARS = 2_000_000  # all texts of one embeddings request together

router = APIRouter(tags=["embeddings"])


@router.post("/v1/embeddings", response_model=S.EmbeddingResponse, responses=responses(400, 404, 413))
def embeddings(body: S.EmbeddingRequest, who: str = Depends(user), srv: Server = Depends(server),
               ws: Workspace = Depends(workspace)):
    """Embed texts with the embedder `model` names (normalized vectors; `base64` is little-endian float32)."""
    import numpy as np

    settings = srv.settings
    emb, name = embedder_named(ws, who, body.model)  # never one trained on collections `who` may not read
    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    if not texts:
        raise APIError(400, "input must hold at least one text", "empty_input", "input")
    blank = next((i for i, t in enumerate(texts) if not t.strip()), None)
    if blank is not None:  # its vector is the embedder's for no words at all: refused, as OpenAI refuses ""
        raise APIError(400, f"input[{blank}] is blank: there is nothing to embed", "empty_input", "input")
    if len(texts) > S.MAX_INPUTS:
        raise APIError(400, f"input holds {len(texts)} texts; at most {S.MAX_INPUTS} per request", "too_many_inputs", "input")
    if sum(map(len, texts)) > MAX_EMBED_CHARS:
        raise APIError(400, f"input is longer than {MAX_EMBED_CHARS} characters in all; split it", "input_too_long", "input")
    if body.dimensions is not None and body.dimensions != emb.dim:
        raise APIError(400, f"{name} gives {emb.dim} dimensions, not {body.dimensions}", "bad_dimensions", "dimensions")
    # A text past what the embedder reads was cut there and given the vector of its start, with no sign:
    # refused instead, as OpenAI refuses an input over its model's context, so the client can split it.
    counts = [len(ids) for ids in emb.tokenizer(texts, truncation=False, verbose=False)["input_ids"]]
    over = next((i for i, n in enumerate(counts) if n > emb.max_tokens), None)
    if over is not None:
        raise APIError(400, f"input[{over}] is {counts[over]:,} tokens; {name} reads at most {emb.max_tokens} "
                            "(the rest would be left out of its vector): split it", "input_too_long", "input")
    vecs = emb.embed(texts, batch_size=settings.embed_batch)
    tokens = sum(counts)
    data = []
    for i, v in enumerate(vecs):
        value = (base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode("ascii")
                 if body.encoding_format == "base64" else [float(x) for x in v])
        data.append({"object": "embedding", "index": i, "embedding": value})
    return {"object": "list", "data": data, "model": name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def embedder_named(ws: Workspace, who: str, model: str):
    """The embedder `model` names for `who`, and the name of the weights that make its vectors: the
    ids GET /v1/models lists to `who` as embeddings (api.models.list_models), no other. The base
    embedder's name is the workspace's embedder, as it always meant (what search embeds queries
    with), so a client that names it keeps getting vectors comparable with the index; the response's
    `model` then names the adapted weights when those made them. An adapted embedder `who` may not
    see is an unknown name (404, as a guessed name is: none is confirmed). An inactive adapted
    embedder is loaded from its folder; a stale one is refused, as activating it is (its weights
    learned a document erased since)."""
    from archivist.finetune import embedders
    from archivist.models import embedder_for, load_embedder

    s = ws.settings
    if model == s.embedder:
        emb = embedders.served_embedder(ws, who)
        return emb, (s.embedder if emb.name == s.embedder else Path(emb.name).name)
    seen = next((e for e in embedders.list_embedders(ws, who) if e.get("name") == model), None)
    if seen is None:
        raise APIError(404, f"no embedding model {model!r}: use {s.embedder!r} (the workspace's embedder) "
                            "or an adapted embedder from GET /v1/models", "model_not_found", "model")
    if seen["active"]:
        emb = embedder_for(s)  # the copy search holds, not a second one
        if Path(emb.name).name == model:  # not so when the settings' embedder is not the one it was adapted from
            return emb, model
    elif seen.get("stale"):
        raise APIError(400, f"embedder {model!r} is stale ({seen['stale']}): it is not served; use {s.embedder!r}",
                       "model_stale", "model")
    return load_embedder(str(embedders.folder(ws, model)), s.device, s.embed_backend, str(s.cache)), model

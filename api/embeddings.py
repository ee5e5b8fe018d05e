"""POST /v1/embeddings: texts embedded by the workspace's embedder (archivist.models.embedder_for), or
by the base embedder for a caller who may not see the adapted one it switched to
(finetune.embedders.served_embedder)."""

from __future__ import annotations

import base64

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
    """Embed texts with the workspace's embedder (normalized vectors; `base64` is little-endian float32)."""
    import numpy as np

    from archivist.finetune.embedders import served_embedder

    settings = srv.settings
    if body.model != settings.embedder:
        raise APIError(404, f"no embedding model {body.model!r}; this server embeds with {settings.embedder!r}",
                       "model_not_found", "model")
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
    emb = served_embedder(ws, who)  # never an adapted embedder trained on collections `who` may not read
    if body.dimensions is not None and body.dimensions != emb.dim:
        raise APIError(400, f"{settings.embedder} gives {emb.dim} dimensions, not {body.dimensions}", "bad_dimensions", "dimensions")
    # A text past what the embedder reads was cut there and given the vector of its start, with no sign:
    # refused instead, as OpenAI refuses an input over its model's context, so the client can split it.
    counts = [len(ids) for ids in emb.tokenizer(texts, truncation=False, verbose=False)["input_ids"]]
    over = next((i for i, n in enumerate(counts) if n > emb.max_tokens), None)
    if over is not None:
        raise APIError(400, f"input[{over}] is {counts[over]:,} tokens; {settings.embedder} reads at most {emb.max_tokens} "
                            "(the rest would be left out of its vector): split it", "input_too_long", "input")
    vecs = emb.embed(texts, batch_size=settings.embed_batch)
    tokens = sum(counts)
    data = []
    for i, v in enumerate(vecs):
        value = (base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode("ascii")
                 if body.encoding_format == "base64" else [float(x) for x in v])
        data.append({"object": "embedding", "index": i, "embedding": value})
    return {"object": "list", "data": data, "model": settings.embedder,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

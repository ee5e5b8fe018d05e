"""GET /health: liveness and the generation queue; the one route that needs no key."""

from __future__ import annotations

import os

from fastapi import APIRouter, Depends

from archivist import __version__
from archivist.api.deps import Server, server

router = APIRouter(tags=["server"])


@router.get("/health")
def health(srv: Server = Depends(server)) -> dict:
    """Liveness and the generation queue (running, waiting, completed, cancelled). No key needed."""
    # worker: this process's id; `archivist serve --workers N` runs N of them behind one port
    return {"status": "ok", "version": __version__, "worker": os.getpid(), "generation": srv.queue.stats()}

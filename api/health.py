"""GET /health: liveness, the generation queue and the chat model's server; the one route that
needs no key."""

from __future__ import annotations

import os

from fastapi import APIRouter, Depends

from archivist import __version__
from archivist.api.deps import Server, server
from archivist.retrieval.llm_remote import server_state

router = APIRouter(tags=["server"])


@router.get("/health")
def health(srv: Server = Depends(server)) -> dict:
    """Liveness, the generation queue (running, waiting, completed, cancelled) and where answers
    are generated: `llm` is "in-process", or the state of the `ARCHIVIST_LLM_URL` server
    ("reachable" / "unreachable"). With that server unreachable and no local fallback, chat
    cannot answer: `status` is "degraded" (HTTP 200 still: the process itself is alive; search,
    documents and extractive answers work). No key needed, so the server's address is not named."""
    s = srv.settings
    llm = server_state(s.llm_url) if s.llm_url else "in-process"
    workspace = workspace_state(srv)
    status = "degraded" if (llm == "unreachable" and s.llm_fallback != "local") or workspace != "ok" else "ok"
    # worker: this process's id; `archivist serve --workers N` runs N of them behind one port
    return {"status": status, "version": __version__, "worker": os.getpid(), "llm": llm, "workspace": workspace,
            "generation": srv.queue.stats()}


def workspace_state(srv: Server) -> str:
    """"ok", "disk full" (under 1 MB free: the next write fails) or "unavailable" (its database cannot
    be opened: a read-only mount, another user's files, a damaged file; the server's log says which).
    A monitor sees what every request would meet, without a key and without the workspace's path."""
    import logging
    import shutil

    try:
        if shutil.disk_usage(srv.settings.home).free < 1 << 20:
            return "disk full"
        with srv.workspace() as ws:
            ws.db.execute("SELECT count(*) FROM meta").fetchone()
    except Exception as e:  # noqa: BLE001 - the state is the answer; the log has the reason
        logging.getLogger(__name__).error("health: the workspace cannot be opened: %s", e)
        return "unavailable"
    return "ok"

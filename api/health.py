"""GET /health: liveness, the generation queue and the chat model's server; the one route that
needs no key. Without a valid key it says only whether the server can serve (status, version,
workspace); a key shows how: a member's the chat model's state, the worker and the queue's load, an
admin's also how many answers were completed, cancelled and failed (the team's use of it)."""

from __future__ import annotations

import os

from fastapi import APIRouter, Depends, Request

from archivist import __version__
from archivist.api.deps import Server, server
from archivist.retrieval.llm_remote import server_state

router = APIRouter(tags=["server"])


@router.get("/health")
def health(request: Request, srv: Server = Depends(server)) -> dict:
    """Liveness: `status` "ok", or "degraded" while the workspace is not "ok" or the chat model's
    server (`ARCHIVIST_LLM_URL`) is unreachable without a local fallback (HTTP 200 still: the process
    itself is alive; search, documents and extractive answers work), `version` and `workspace`.
    That is all a caller without a valid key gets: a monitor or load balancer needs no more, and
    nobody else learns how the server is used. With a valid key (`Authorization: Bearer`), also
    `llm` ("in-process", "reachable" / "unreachable", never the server's address), `worker` (this
    process's id) and `generation`: running, waiting, max_waiting and avg_seconds; an admin's key
    adds completed, cancelled and failed."""
    s = srv.settings
    llm = server_state(s.llm_url) if s.llm_url else "in-process"
    workspace, viewer = workspace_state(srv, request.headers.get("authorization"))
    status = "degraded" if (llm == "unreachable" and s.llm_fallback != "local") or workspace != "ok" else "ok"
    out = {"status": status, "version": __version__, "workspace": workspace}
    if viewer is None:
        return out
    load = srv.queue.stats()
    if viewer != "admin":  # the team's totals are an admin's to know; a member sees the load
        load = {k: v for k, v in load.items() if k not in ("completed", "cancelled", "failed")}
    # worker: this process's id; `archivist serve --workers N` runs N of them behind one port
    return {**out, "worker": os.getpid(), "llm": llm, "generation": load}


def workspace_state(srv: Server, authorization: str | None = None) -> tuple[str, str | None]:
    """(state, viewer). state: "ok", "disk full" (under 1 MB free: the next write fails) or
    "unavailable" (its database cannot be opened: a read-only mount, another user's files, a damaged
    file; the server's log says which). viewer: for a valid key in `authorization`, "admin" or
    "member" (its user's role), else None (also when the workspace cannot be opened to check it).
    A monitor sees what every request would meet, without a key and without the workspace's path."""
    import logging
    import shutil

    from archivist import access
    from archivist.api.guard import authenticate

    viewer = None
    try:
        if shutil.disk_usage(srv.settings.home).free < 1 << 20:
            return "disk full", None
        with srv.workspace() as ws:
            ws.db.execute("SELECT count(*) FROM meta").fetchone()
            try:  # the key is checked as the Guard checks it (its use is on the audit log, once a day)
                name = authenticate(ws, authorization)[0] if authorization else None
                viewer = None if name is None else "admin" if access.is_admin(ws, name) else "member"
            except Exception as e:  # noqa: BLE001 - a key that could not be checked shows what no key does
                logging.getLogger(__name__).error("health: the key could not be checked: %s", e)
    except Exception as e:  # noqa: BLE001 - the state is the answer; the log has the reason
        logging.getLogger(__name__).error("health: the workspace cannot be opened: %s", e)
        return "unavailable", None
    return "ok", viewer

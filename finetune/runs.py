"""Fine-tuning runs: the `runs` table, runs/<id>/ folders, and running one in a background process.

    runs/<id>/config.json     the resolved FinetuneConfig (the dataset name is filled in once built)
    runs/<id>/metrics.jsonl   one line per optimizer step: step, loss, tokens_per_s, lr, elapsed
    runs/<id>/log.txt         stdout and stderr of a background run
    runs/<id>/checkpoints/    the latest checkpoint (see train.py)
    runs/<id>/adapter/        the final adapter, before it is registered

Status moves queued -> running -> done | failed | cancelled; `pid` is the process doing the work.
A background run is its own session (it survives the process that started it, e.g. the UI), and
is cancelled with SIGTERM, which makes it save a checkpoint first so `--resume` can finish it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from archivist.workspace import Workspace, transaction

STATUSES = ("queued", "running", "done", "failed", "cancelled")


def new_run_id() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def run_dir(ws: Workspace, run_id: str) -> Path:
    return ws.path("runs", run_id)


def create_run(ws: Workspace, config: dict, run_id: str | None = None) -> str:
    """Insert a queued run and write its config.json; returns the run id."""
    run_id = run_id or new_run_id()
    d = run_dir(ws, run_id)
    (d / "config.json").write_text(json.dumps(config, indent=2, default=str))
    with transaction(ws.db):
        ws.db.execute("INSERT INTO runs(id, status, config) VALUES (?, 'queued', ?)", (run_id, json.dumps(config, default=str)))
    return run_id


def update_run(ws: Workspace, run_id: str, status: str | None = None, **fields) -> None:
    """Set status and any of pid, adapter, error, config (dict), finished_at on a run."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    sets, args = [], []
    if status is not None:
        sets.append("status = ?")
        args.append(status)
        if status in ("done", "failed", "cancelled"):
            fields.setdefault("finished_at", time.time())
        elif status == "running":
            sets.append("finished_at = NULL")
    for k, v in fields.items():
        if k not in ("pid", "adapter", "error", "config", "finished_at"):
            raise ValueError(f"unknown run field {k!r}")
        sets.append(f"{k} = ?")
        args.append(json.dumps(v, default=str) if k == "config" else v)
    if k := fields.get("config"):
        (run_dir(ws, run_id) / "config.json").write_text(json.dumps(k, indent=2, default=str))
    with transaction(ws.db):
        ws.db.execute(f"UPDATE runs SET {', '.join(sets)} WHERE id = ?", (*args, run_id))


def get_run(ws: Workspace, run_id: str) -> dict:
    """A run's row (config parsed), after reconciling a dead process. Raises LookupError for an unknown id."""
    row = ws.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise LookupError(f"no run {run_id!r} (see `archivist runs`)")
    run = dict(row)
    run["config"] = json.loads(run["config"])
    if run["status"] in ("running", "queued") and run["pid"] and not _alive(run["pid"], run_id):
        # a kill -9 or a crash leaves `running` behind: say so, the checkpoint is there to resume from
        update_run(ws, run_id, "failed", error="the process ended without finishing; continue it with "
                                               f"`archivist finetune --resume {run_id}`")
        return get_run(ws, run_id)
    return run


def list_runs(ws: Workspace, limit: int = 50) -> list[dict]:
    """Recent runs, newest first, each with its last metrics line."""
    ids = [r[0] for r in ws.db.execute("SELECT id FROM runs ORDER BY started_at DESC, id DESC LIMIT ?", (limit,))]
    out = []
    for i in ids:
        run = get_run(ws, i)
        m = read_metrics(ws, i)
        run["last"] = m[-1] if m else None
        out.append(run)
    return out


def read_metrics(ws: Workspace, run_id: str) -> list[dict]:
    """Every metrics line of a run (for the UI's live plot); a half-written last line is skipped."""
    p = ws.home / "runs" / run_id / "metrics.jsonl"
    if not p.exists():
        return []
    out = []
    for line in p.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def _alive(pid: int, run_id: str) -> bool:
    """Is `pid` still the process working on `run_id` (not a reused pid)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # not Linux: trust the pid
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False  # a zombie has finished
    if not cmdline.strip("\x00"):
        return True  # between fork and exec (a run just started) the command line reads empty
    return run_id in cmdline or "finetune" in cmdline or os.getpid() == pid


def start_run_background(ws: Workspace, config, run_id: str | None = None) -> str:
    """Start a fine-tune in its own process and session, so it outlives the caller (the UI, a shell).

    config: a FinetuneConfig or its dict. Returns the run id at once; follow it with get_run and
    read_metrics, stop it with cancel_run. With `run_id` of an existing run, resumes that run.
    """
    from dataclasses import asdict, is_dataclass

    cfg = asdict(config) if is_dataclass(config) else dict(config)
    if run_id is None:
        run_id = create_run(ws, cfg)
    else:
        get_run(ws, run_id)
        update_run(ws, run_id, "queued", error=None)
    log = open(run_dir(ws, run_id) / "log.txt", "ab")
    env = dict(os.environ, ARCHIVIST_HOME=str(ws.home), ARCHIVIST_CACHE=str(ws.settings.cache), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "archivist.finetune.train", "--run-id", run_id, "--resume"],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                            cwd=str(ws.home))
    log.close()
    update_run(ws, run_id, pid=proc.pid)
    return run_id


def cancel_run(ws: Workspace, run_id: str, wait: float = 30.0) -> dict:
    """Ask a queued or running run to stop (SIGTERM: it saves a checkpoint, then marks itself cancelled).

    Waits up to `wait` seconds for it to end; a process that is already gone is marked cancelled.
    Returns the run's row. Raises LookupError for an unknown run.
    """
    run = get_run(ws, run_id)
    if run["status"] not in ("queued", "running"):
        return run
    pid = run["pid"]
    if pid and _alive(pid, run_id) and pid != os.getpid():
        try:
            os.killpg(os.getpgid(pid), signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        deadline = time.time() + wait
        while time.time() < deadline and _alive(pid, run_id):
            try:
                os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
            except ChildProcessError:
                pass
            time.sleep(0.2)
    row = ws.db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row["status"] in ("queued", "running") and not (pid and _alive(pid, run_id)):
        update_run(ws, run_id, "cancelled")
    return get_run(ws, run_id)

"""Fine-tuning runs: runs/<id>/ folders, and running one in a background process. A run is a job
of kind `train` (archivist/jobs.py, the `jobs` table): its id is the run id, its spec the resolved
config, its owner the user it trains as, its result the adapter it registered.

    runs/<id>/config.json     the resolved FinetuneConfig (the dataset name is filled in once built)
    runs/<id>/metrics.jsonl   one line per optimizer step: step, loss, tokens_per_s, lr, elapsed
    runs/<id>/log.txt         stdout and stderr of a background run
    runs/<id>/checkpoints/    the latest checkpoint (see checkpoints.py)
    runs/<id>/adapter/        the final adapter, before it is registered

Status moves queued -> running -> done | failed | cancelled; a run whose process ended without
saying so (kill -9, a crash) is `interrupted`. A background run is its own session (it survives
the process that started it, e.g. the UI), and is cancelled with SIGTERM, which makes it save a
checkpoint first so a resume finishes it.

Reading, cancelling and resuming a run take the user (None: the acting user of the settings): a
member sees only their own runs, an admin every run, and resuming keeps the run's owner, so an
admin who resumes a member's run trains on that member's data, never their own.

A retrain (`retrain_config`: an adapter's recorded settings on the current documents, under a new
name that `replaces` it) is started like any run; the CLI's --retrain and the page's button share it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
from pathlib import Path

from archivist import access, audit, files, jobs
from archivist.settings import python_module
from archivist.workspace import Workspace, transaction

STATUSES = jobs.STATES


def new_run_id() -> str:
    return jobs.new_id("run")[len("run-"):]


def run_dir(ws: Workspace, run_id: str) -> Path:
    return ws.path("runs", run_id)


def has_checkpoint(ws: Workspace, run_id: str) -> bool:
    """Whether the run saved a checkpoint a resume continues from (checkpoints.save_checkpoint's `latest`
    pointer); without one a resume starts over from step 0."""
    return (run_dir(ws, run_id) / "checkpoints" / "latest").exists()


def create_run(ws: Workspace, config: dict, run_id: str | None = None, user: str | None = None) -> str:
    """Record a queued run and write its config.json; returns the run id. Its owner is the config's
    `user` (the user it trains as), else `user`, else the acting user.

    A retrain (config `replaces`) is checked and its name claimed in the transaction that records the
    run, so two started at the same instant never both train: the second is refused at once while the
    first is queued or running (`_claim`). Raises ValueError naming the retrain under way, or the
    process (a live run, a registered adapter) that holds the name given; LookupError for a retrain of
    an adapter deleted since its config was read."""
    run_id = run_id or new_run_id()
    # the owner is written into the config, so a resume (by the owner or an admin) trains as the owner
    config = {**config, "user": access.current_user(ws, config.get("user") or user)}
    d = run_dir(ws, run_id)
    with transaction(ws.db):
        config = _claim(ws, config)
        files.replace(d / "config.json", json.dumps(config, indent=2, default=str))
        jobs.create(ws, "train", config["user"], spec=json.loads(json.dumps(config, default=str)),
                    total=config.get("max_steps") or None, job_id=run_id)
    return run_id


def _claim(ws: Workspace, config: dict) -> dict:
    """`config` with the adapter name its run will register, checked inside create_run's transaction.
    A retrain of an adapter whose retrain is queued or running is refused, naming that run (a second
    would train a copy, and one of them would replace the other as the stale adapter's successor). A
    retrain's own name (<stem>-rN, chosen by `retrain_config` before this transaction) that another run
    took meanwhile moves to the next free one; a name given by hand that a registered adapter or another
    run holds (queued, running, or one a resume continues: interrupted, failed, cancelled) is refused
    before training, not at registration after it."""
    name, replaces = config.get("name"), config.get("replaces")
    j = retrains_under_way(ws).get(replaces) if replaces else None
    if j is not None:
        raise ValueError(f"{replaces} is already being retrained {under_way_by(ws, j, config['user'])}; wait for it"
                         + (f", or cancel it with `archivist runs --cancel {j.id}`" if _sees(ws, j, config["user"]) else ""))
    _retrains_a_registered(ws, config)
    if not name:
        return config
    if replaces and re.fullmatch(rf"{re.escape(_stem(replaces))}-r\d+", name):
        return {**config, "name": _fresh_name(ws, replaces, start=int(name.rsplit("-r", 1)[1]))}
    holder = next((j for j in jobs.every(ws, ("train",), states=jobs.LIVE + jobs.RESUMABLE)
                   if (j.spec or {}).get("name") == name), None)
    if holder or _registered(ws, name):
        later = f" once resumed; it is {holder.state}" if holder and holder.state in jobs.RESUMABLE else ""
        if holder is None:
            by = "an adapter has it"
        elif _sees(ws, holder, config["user"]):
            by = f"run {holder.id} will register it{later}"
        else:  # as under_way_by: another user's run is no run to her, so neither its id nor its state
            by = "another user's run will register it"
        raise ValueError(f"the adapter name {name!r} is taken ({by}); choose another --name")
    return config


def _retrains_a_registered(ws: Workspace, config: dict) -> None:
    """Raise LookupError when `config` retrains (`replaces`) an adapter that is not registered: deleted since
    `retrain_config` read it, or while the run was cut short. Its lineage would say it replaces an adapter
    that is gone. Checked in the transaction that queues the run (`_claim`, `resume_run`); adapters.delete
    refuses while a retrain is queued, in its own, so of a retrain and a delete one is always refused."""
    replaces = config.get("replaces")
    if replaces and not _registered(ws, replaces):
        raise LookupError(f"no adapter named {replaces!r} (see `archivist adapters`): it was deleted, so there is "
                          f"nothing to retrain")


def update_run(ws: Workspace, run_id: str, status: str | None = None, **fields) -> None:
    """The run's own bookkeeping (train.py): status and any of pid, adapter, error, config (dict).

    'running' takes the run as this process's work (from queued, or from a state a resume may
    continue), raising JobError when another process runs it; done, failed and cancelled end it.
    """
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    unknown = set(fields) - {"pid", "adapter", "error", "config", "finished_at"}
    if unknown:
        raise ValueError(f"unknown run field {sorted(unknown)[0]!r}")
    if "config" in fields:
        files.replace(run_dir(ws, run_id) / "config.json", json.dumps(fields["config"], indent=2, default=str))  # never torn
        jobs.update_spec(ws, run_id, json.loads(json.dumps(fields["config"], default=str)))
    if status == "running":
        with transaction(ws.db):  # the run starts with its audit record, or not at all
            jobs.start(ws, run_id, resume=True)
            audit.record(ws, "finetune.started", user=jobs.get_owner(ws, run_id), target=run_id,
                         detail=_what_it_trains(ws, run_id))
    elif status == "queued":
        raise ValueError("a run is queued again by resume_run (it checks who asks)")
    elif status is not None:
        result = {"adapter": fields["adapter"]} if fields.get("adapter") else None
        with transaction(ws.db):
            jobs.end(ws, run_id, status, error=fields.get("error"), result=result)
            audit.record(ws, "finetune.finished", user=jobs.get_owner(ws, run_id), target=run_id,
                         detail={"status": status, "adapter": fields.get("adapter"), "error": fields.get("error")})
    elif fields.get("pid"):
        jobs.adopt(ws, run_id, fields["pid"])


def _what_it_trains(ws: Workspace, run_id: str) -> dict:
    """The run's data and recipe from its config, for its `finetune.started` record: which dataset
    (or sources) and collections it learns from; a dataset it builds follows as `dataset.built`."""
    path = run_dir(ws, run_id) / "config.json"
    spec = json.loads(path.read_text()) if path.exists() else {}
    return {k: spec.get(k) for k in ("dataset", "data", "collections", "base", "method", "max_steps", "epochs")}


def get_run(ws: Workspace, run_id: str, user: str | None = None) -> dict:
    """A run `user` may see, as a dict (config parsed; a dead process reconciled to `interrupted`).
    Raises LookupError for an unknown id and for another user's run alike."""
    try:
        job = jobs.get(ws, run_id, user)
    except LookupError:
        raise LookupError(f"no run {run_id!r} (see `archivist runs`)") from None
    if job.kind != "train":
        raise LookupError(f"no run {run_id!r} (see `archivist runs`)")
    return _as_run(job)


def list_runs(ws: Workspace, user: str | None = None, limit: int = 50) -> list[dict]:
    """The runs `user` may see (their own; an admin: every run), newest first, each with its last
    metrics line."""
    return [_with_last(ws, _as_run(job)) for job in jobs.list_jobs(ws, user, kinds=("train",), limit=limit)]


def _with_last(ws: Workspace, run: dict) -> dict:
    """The run with its last metrics line (`last`: the step, loss and tokens/s it reached; None before one)."""
    m = read_metrics(ws, run["id"])
    return {**run, "last": m[-1] if m else None}


def _as_run(job: jobs.Job) -> dict:
    return {"id": job.id, "owner": job.owner, "status": job.state, "pid": job.pid, "config": job.spec,
            "adapter": (job.result or {}).get("adapter"), "error": job.error, "started_at": job.created_at,
            "finished_at": job.finished_at, "resumed": job.resumed}


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


def start_run_background(ws: Workspace, config, run_id: str | None = None, user: str | None = None) -> str:
    """Start a fine-tune in its own process and session, so it outlives the caller (the UI, a shell).

    config: a FinetuneConfig or its dict; its `user` (else `user`) owns the run. Returns the run id
    at once; follow it with get_run and read_metrics, stop it with cancel_run. With `run_id` of an
    existing run, resumes that run (`resume_run`: its own config, its own owner).
    """
    from dataclasses import asdict, is_dataclass

    if run_id is not None:
        return resume_run(ws, run_id, user)
    cfg = asdict(config) if is_dataclass(config) else dict(config)
    run_id = create_run(ws, cfg, user=user)
    _spawn(ws, run_id)
    return run_id


def resume_run(ws: Workspace, run_id: str, user: str | None = None) -> str:
    """Continue `user`'s interrupted, failed or cancelled run from its checkpoint, in the background,
    with the run's own config and as the run's owner. Returns the run id.
    Raises LookupError (unknown, or another user's run, or a retrain of an adapter deleted since), JobError
    (running, queued or done)."""
    with transaction(ws.db):
        _retrains_a_registered(ws, get_run(ws, run_id, user)["config"] or {})
        jobs.requeue(ws, run_id, user)
    _spawn(ws, run_id)
    return run_id


def retrains_under_way(ws: Workspace) -> dict[str, jobs.Job]:
    """{adapter: the queued or running run that retrains it}, whoever started it: what `create_run`
    refuses a second retrain of, and the Fine-tune page greys the Retrain button of (a member sees only
    her own runs, not an admin's retrain of her adapter). A run whose process died is `interrupted` first."""
    jobs.reconcile(ws)
    return {j.spec["replaces"]: j for j in jobs.every(ws, ("train",), states=jobs.LIVE) if (j.spec or {}).get("replaces")}


def _sees(ws: Workspace, job: jobs.Job, user: str | None) -> bool:
    return job.owner == user or access.is_admin(ws, user)


def under_way_by(ws: Workspace, job: jobs.Job, user: str | None) -> str:
    """How a retrain under way is named to `user`: its run and owner to the owner and admins, who may
    see and cancel it; to a member waiting on an admin's retrain of her adapter, nothing of a run she
    may not see ("another user's run is no run", docs/access.md)."""
    return f"by run {job.id} ({job.state}, as {job.owner})" if _sees(ws, job, user) else "by another user's run"


def move_run(ws: Workspace, run_id: str, device: str, user: str | None = None) -> None:
    """Let `user`'s run `run_id` go on on `device` (auto | cpu | cuda) when it is resumed: a checkpoint
    written on a CPU resumes on a GPU and back (checkpoints.py), and with `method` auto the run keeps
    the method it started with (train.setup reads the device the run started on from its checkpoint). Its
    learning rate and data order are functions of (seed, step), so it is the same run; only what runs
    it changed. Raises LookupError (unknown, or another user's run), JobError (queued or running, or
    done: only a run that can be resumed moves), ValueError (a device other than auto, cpu or cuda)."""
    from archivist.finetune.train import FinetuneConfig  # imported (torch) before the write lock is taken

    # its state checked and its config changed under one write lock: a resume started in between by
    # another process would otherwise go on on the old device while its record said the new one
    with transaction(ws.db):
        run = get_run(ws, run_id, user)
        if run["status"] in jobs.LIVE:
            raise jobs.JobError(f"run {run_id} is {run['status']}; it goes on where it runs (cancel it first to move it)")
        if run["status"] not in jobs.RESUMABLE:  # its record says where it trained: a done run stays as it ran
            raise jobs.JobError(f"run {run_id} is {run['status']}; only an interrupted, failed or cancelled run resumes")
        config = {**(run["config"] or {}), "device": device}
        FinetuneConfig(**config)  # refuses a device other than auto, cpu or cuda, as for any run
        update_run(ws, run_id, config=config)


def retrain_config(ws: Workspace, name: str, user: str | None = None, given: dict | None = None):
    """The FinetuneConfig to train adapter `name` again on the current documents (a stale one: it
    learned a document erased since). It keeps the settings its lineage recorded, with the dataset
    rebuilt, under a fresh name (<name>-r2, -r3 ...: one no adapter and no other run has) and with
    `replaces` naming `name`, so the new adapter's lineage says which one it replaces. It trains as
    `user` (None: the acting user), never as whoever trained `name` first: that user's access (an
    admin's: everyone's feedback) would build the dataset. `given` ({field: value}: flags on the
    command line, or the page's choices) wins over the recorded settings, as on any other run.

    The CLI (`archivist finetune --retrain`) and the app's Fine-tune page both start a retrain with it.
    Raises LookupError for an adapter that does not exist or `user` may not use (the same words),
    ValueError for a `dataset` in `given` (a retrain learns from the current documents) or bad settings.
    """
    from archivist import adapters
    from archivist.finetune.train import FinetuneConfig

    user = access.current_user(ws, user)
    if not adapters.may_use(ws, user, name):  # unknown, or one the user may not use: the same words
        raise LookupError(f"no adapter named {name!r} (see `archivist adapters`)")
    rec = adapters.get(ws, name)
    if not may_retrain(ws, user, name):
        raise access.AccessDenied(f"{user} may not retrain {name}: a member retrains only the adapters they trained "
                                  f"(an admin any); ask an admin to retrain it")
    given = dict(given or {})
    if given.get("dataset"):
        raise ValueError(f"a retrain of {name} rebuilds its dataset from the current documents; leave out --dataset")
    fresh = _fresh_name(ws, name)
    fields = {f.name for f in dataclasses.fields(FinetuneConfig)}
    recorded = {k: v for k, v in ((rec["lineage"] or {}).get("settings") or {}).items() if k in fields}
    return FinetuneConfig(**{**recorded, "dataset": None, "name": fresh, **given, "replaces": name, "user": user})


def may_retrain(ws: Workspace, user: str | None, name: str) -> bool:
    """Whether `user` (None: the acting user) may retrain adapter `name`: an admin any adapter they may
    use, a member only one they trained (its lineage's `user`). A retrain learns from its starter's own
    data and its lineage says it `replaces` the adapter: a member replacing an admin's adapter with one
    trained on her narrower access would stand in as its successor. One rule for the CLI's --retrain
    and the Fine-tune page's button (both through `retrain_config`); the API starts no training."""
    from archivist import adapters

    user = access.current_user(ws, user)
    if not adapters.may_use(ws, user, name):
        return False
    if access.is_admin(ws, user):
        return True
    rec = adapters.get(ws, name)
    if ((rec["lineage"] or {}).get("settings") or {}).get("user") != user:
        return False
    # the lineage keeps a name: a person given the name of a deleted trainer is not her (an account made after the adapter)
    born = ws.db.execute("SELECT created_at FROM users WHERE name = ?", (user,)).fetchone()
    return born is not None and born[0] <= rec["created_at"]


def _stem(name: str) -> str:
    return re.sub(r"-r\d+$", "", name)


def _fresh_name(ws: Workspace, name: str, start: int = 2) -> str:
    """The first <stem of name>-rN, from N = `start`, that no adapter and no run has: a run still to
    register (queued, running, or cut short and resumable) holds its name as well."""
    taken = {(j.spec or {}).get("name") for j in jobs.every(ws, ("train",))}
    stem = _stem(name)
    return next(n for n in (f"{stem}-r{i}" for i in range(start, 10_000)) if n not in taken and not _registered(ws, n))


def _registered(ws: Workspace, name: str) -> bool:
    from archivist import adapters

    try:
        adapters.get(ws, name)
    except LookupError:
        return False
    return True


def _spawn(ws: Workspace, run_id: str) -> None:
    owner = jobs.get_owner(ws, run_id)
    log = open(run_dir(ws, run_id) / "log.txt", "ab")
    # the run acts as its owner: its dataset is built, and a resume checked, with that user's access
    env = dict(os.environ, ARCHIVIST_HOME=str(ws.home), ARCHIVIST_CACHE=str(ws.settings.cache), ARCHIVIST_USER=owner,
               PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([*python_module("archivist.finetune.train"), "--run-id", run_id, "--resume"],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                            cwd=str(ws.home))
    log.close()
    jobs.adopt(ws, run_id, proc.pid)


def cancel_run(ws: Workspace, run_id: str, user: str | None = None, wait: float = 30.0) -> dict:
    """Ask `user`'s queued or running run to stop (SIGTERM: it saves a checkpoint, then marks itself
    cancelled). Waits up to `wait` seconds for it to end. Returns the run's dict with its last
    metrics line (`last`), as list_runs gives it: the step a resume continues from.
    Raises LookupError for an unknown run and for another user's run alike."""
    get_run(ws, run_id, user)
    jobs.cancel(ws, run_id, user, wait=wait)
    return _with_last(ws, get_run(ws, run_id, user))

"""Adapted embedders (`archivist finetune --target retriever`, finetune/retriever.py): the registry
under embedders/ and the switch to one.

    embedders/<name>/   safetensors weights and archivist.json, the manifest: lineage (base,
                        collections, documents), config, metrics, who trained it, `stale` when a
                        document it learned from was erased

A user sees an adapted embedder (`list_embedders`) and is handed its vectors (`served_embedder`)
only when they may read every collection it learned from (`may_use`). `activate` re-embeds every
chunk with one and switches the workspace to it (admin only; a resumable job, retrieval/reembed.py);
`delete` removes one (admin only; the active one goes back to the base embedder first); why an active one may embed every user's queries is in finetune/retriever.py's module doc.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import re
import shutil
from pathlib import Path

from archivist import access, audit, files
from archivist.workspace import Workspace, WorkspaceError, transaction

log = logging.getLogger(__name__)

FOLDER = "embedders"
MANIFEST = "archivist.json"


def folder(ws: Workspace, name: str) -> Path:
    return ws.home / FOLDER / access.check_name(name, "embedder name")


def fresh_name(root: Path, prefix: str) -> str:
    """`<prefix>-<n>` with n one past the highest such folder under `root` (1 when there is none)."""
    n = 1 + max([int(m.group(1)) for p in (root.iterdir() if root.exists() else [])
                 if (m := re.match(rf"{re.escape(prefix)}-(\d+)$", p.name))] or [0])
    return f"{prefix}-{n}"


def save(ws: Workspace, name: str, model, manifest: dict) -> Path:
    """Write the model (safetensors) and its manifest to embedders/<name>/, atomically (a temp
    folder renamed). The generation name carries a hash of the weights: the ONNX export cache is
    shared by workspaces and keyed by folder name and file sizes, which a fine-tune keeps. Raises
    FileExistsError for a name taken (by another save meanwhile too), WorkspaceError when it cannot
    be written (a full disk): nothing of it is left then.

    The temp folder is this save's own, locked while it works, as a dataset's
    (`files.building`): two saves at once never write into or remove each other's, and the folders of
    saves killed midway (a model's worth of weights each) are removed by the next save."""
    target = folder(ws, name)
    exists = _taken(name, target)
    check_free(ws, name)
    docs = manifest.get("documents") or {}
    learned = (docs.get("train") or []) + (docs.get("held_out") or [])
    try:
        files.remove_abandoned_folders(target.parent)
        with files.building(target.parent, name) as tmp:  # removed on the way out unless renamed into place
            model.save(str(tmp), safe_serialization=True)
            digest = hashlib.sha256((tmp / "model.safetensors").read_bytes()).hexdigest()[:12]
            manifest = {**manifest, "name": name, "generation": f"{name}-{digest}", "weights_sha256": digest}
            # a document erased while it trained was erased before this folder existed, so the erase marked
            # the embedders there were then (ingest/erase.py, `learned_from`), not this one: the mark goes in
            # with the folder (marked after the rename, a kill in between left it fresh for good)
            erased = audit.erased_documents(ws, learned)
            if erased:
                manifest["stale"] = _erased_why(erased)
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
            try:
                files.publish(tmp, target)
            except OSError as e:
                if target.exists():  # another save of this name renamed its folder there first
                    raise FileExistsError(exists) from e
                raise
    except FileExistsError:
        raise
    except Exception as e:  # an OSError, or safetensors' own error wrapping one
        full = getattr(e, "errno", None) == errno.ENOSPC or "No space left" in str(e)
        if not (full or isinstance(e, OSError)):
            raise
        raise WorkspaceError(f"cannot save the adapted embedder {name!r} under {target.parent}: "
                             f"{'the disk is full' if full else e}; nothing of it was kept") from e
    # an erase recorded between that look and the rename scanned embedders/ before the folder was there
    if (late := audit.erased_documents(ws, learned)) != erased:
        mark_stale(ws, [name], _erased_why(late))
    return target


def check_free(ws: Workspace, name: str) -> None:
    """Raise FileExistsError when an adapted embedder has `name`: `save` checks, and the recipe before
    it trains (minutes of a CPU's time, lost when the save at the end found the name taken)."""
    target = folder(ws, name)
    if target.exists():
        raise FileExistsError(_taken(name, target))


def _taken(name: str, target: Path) -> str:
    return (f"an embedder named {name!r} exists already ({target}); choose another --name, or delete it "
            f"(`archivist embedders delete {name}`)")


def _erased_why(erased: dict[int, str]) -> str:
    return f"trained on a deleted document: {', '.join(sorted(erased.values()))}"


def load_manifest(ws: Workspace, name: str) -> dict:
    path = folder(ws, name) / MANIFEST
    if not path.exists():
        raise LookupError(f"no adapted embedder named {name!r} (embedders/{name}/{MANIFEST} is missing)")
    return files.read_manifest(path, "embedder")


def is_registered(ws: Workspace, name: str) -> bool:
    """Whether an adapted embedder has `name` (False for a name no embedder could have)."""
    try:
        return (folder(ws, name) / MANIFEST).is_file()
    except ValueError:
        return False


def may_use(ws: Workspace, user: str | None, manifest: dict) -> bool:
    """A user sees an adapted embedder (its metrics, its lineage) only when they may read every
    collection it was trained on, as for LLM adapters."""
    return access.may_read_all(ws, user, manifest.get("collections", []))


def list_embedders(ws: Workspace, user: str | None = None) -> list[dict]:
    """Adapted embedders the user may see, oldest first, with `active` set on the one in use."""
    from archivist.models import active_embedder

    active = active_embedder(ws.home)
    return [{**m, "active": bool(active and active.get("generation") == m.get("generation"))}
            for _, m in sorted(_manifests(ws), key=lambda pm: pm[0].stat().st_mtime) if may_use(ws, user, m)]


def _manifests(ws: Workspace, strict: bool = False) -> list[tuple[Path, dict]]:
    """Every adapted embedder's folder and manifest, by name (a folder without one is half written).
    A manifest that does not parse (edited by hand, damaged) is logged and left out, so one broken
    folder does not break every listing; with `strict` (an erase, which must not pass over an
    embedder it cannot read) it raises ValueError naming the file."""
    root = ws.home / FOLDER
    out = []
    for p in sorted(root.iterdir() if root.exists() else []):
        if p.name.startswith(".") or not (p / MANIFEST).exists():
            continue
        try:
            out.append((p, files.read_manifest(p / MANIFEST, "embedder")))
        except ValueError as e:
            if strict:
                raise
            log.warning("skipping adapted embedder: %s", e)
    return out


def served_embedder(ws: Workspace, user: str | None = None):
    """The embedder whose vectors `user` may be handed (`POST /v1/embeddings`): the workspace's
    (`embedder_for`, the active adapted one included) when they may see it, else the base named by
    the settings. Its outputs for any text a caller chooses are the adapted weights' function of the
    collections it learned from, as good as the weights to someone who cannot read those."""
    from archivist.models import active_embedder, embedder_for, load_embedder

    s = ws.settings
    active = active_embedder(ws.home)
    manifest = ws.home / active["path"] / MANIFEST if active and active.get("path") else None
    try:
        m = files.read_manifest(manifest, "embedder") if manifest is not None and manifest.exists() else {}
    except ValueError as e:  # damaged: who may use it cannot be told, so no one is handed its vectors
        log.warning("serving the base embedder: %s", e)
        m = {}
    if active is None or (m.get("generation") == active.get("generation") and may_use(ws, user, m)):
        return embedder_for(s)
    return load_embedder(s.embedder, s.device, s.embed_backend, str(s.cache))


def learned_from(ws: Workspace, document_id: int) -> list[str]:
    """The adapted embedders whose training documents include `document_id`, by name. Raises
    ValueError naming a manifest that does not parse: it may be one of them."""
    out = []
    for p, m in _manifests(ws, strict=True):
        docs = m.get("documents") or {}
        if document_id in (docs.get("train") or []) + (docs.get("held_out") or []):
            out.append(p.name)
    return out


def mark_stale(ws: Workspace, names: list[str], why: str) -> None:
    """Mark adapted embedders stale (`why` is shown with them): their weights learned a document
    that is gone. An active one keeps embedding queries (a query vector is compared with readable
    chunks only; see finetune/retriever.py's module doc) until an admin switches back (`archivist finetune --target retriever --resume base`) or adapts again."""
    for name in names:
        path = folder(ws, name) / MANIFEST
        manifest = files.read_manifest(path, "embedder")
        if manifest.get("stale") != why:
            # on disk before the rename: after a power cut a torn or empty manifest would hide the
            # embedder (and its stale mark) from every listing and from the next erase
            files.replace(path, json.dumps({**manifest, "stale": why}, indent=1))


# -- activation: re-embed every chunk and switch ---------------------------------------------------


def activate(ws: Workspace, name: str, user: str | None = None, progress: bool = True, job_id: str | None = None):
    """Re-embed every chunk with adapted embedder `name` (or "base": the settings' embedder) and
    switch to it; resumable. Needs the admin role: it changes the embedder of every user's queries.

    The re-embed is a row of the `jobs` table (kind reembed, spec {"embedder": name}): `archivist
    jobs` shows its progress, `archivist jobs cancel` stops it at the next step (nothing switched),
    and a killed one is found interrupted and finished by `archivist jobs resume ID`
    (`resume_reembed`). An unfinished job for the same embedder is taken over rather than a second
    one started. Returns retrieval.reembed's Result (switched False when cancelled)."""
    from archivist import jobs
    from archivist.models import embedder_for, load_embedder
    from archivist.retrieval import reembed

    admin = access.require_admin(ws, user, "switch the workspace's embedder")
    s = ws.settings
    if name == "base":
        target = reembed.Target(load_embedder(s.embedder, s.device, s.embed_backend, str(s.cache)), "")
    else:
        m = load_manifest(ws, name)
        if m.get("stale"):  # its weights learned a document erased since: serving it would serve that text
            raise ValueError(f"embedder {name!r} is stale ({m['stale']}): train a new one")
        if m["base"] != s.embedder:
            raise ValueError(f"embedder {name!r} was adapted from {m['base']!r}, but the settings' embedder is {s.embedder!r}")
        path = folder(ws, name)
        target = reembed.Target(load_embedder(str(path), s.device, s.embed_backend, str(s.cache)), m["generation"],
                                path=f"{FOLDER}/{name}", base=m["base"])
    job = _reembed_job(ws, name, admin, job_id)
    if name != "base" and not (folder(ws, name) / MANIFEST).exists():
        # deleted after the look above, before this job was queued: `delete` refuses while a re-embed
        # into it is queued or running, so from here on its folder stays (a switch to a removed folder
        # would leave every search without its query embedder)
        jobs.fail(ws, job, f"embedder {name!r} was deleted")
        raise LookupError(f"no adapted embedder named {name!r}: it was deleted")
    try:
        with jobs.keep_alive(ws, job):
            report = jobs.Reporter(ws, job)
            result = reembed.reembed(ws, target, progress=progress, on_step=lambda done, total: report(
                done, total, f"re-embedding with {name}: {done} of {total} chunks"))
    except BaseException as e:  # a kill (SIGKILL) never gets here: reconcile finds the job interrupted
        jobs.fail(ws, job, f"{type(e).__name__}: {e}")
        raise
    summary = {"embedder": name, "chunks": result.chunks, "embedded": result.embedded, "seconds": round(result.seconds, 1)}
    if not result.switched:
        jobs.end(ws, job, "cancelled", result=summary, message="cancelled: the staged vectors are kept; resume to finish")
        return result
    jobs.end(ws, job, "done", result=summary, message=f"switched to {name}: {result.chunks} chunks", done=result.chunks)
    audit.record(ws, "embedder.activated", user=admin, target=name,
                 detail={"chunks": result.chunks, "generation": target.generation})
    embedder_for(s)  # the new pointer is read; loads the model the next search needs now rather than then
    return result


def _reembed_job(ws: Workspace, name: str, owner: str, job_id: str | None) -> str:
    """The id of the running re-embed job for `name`: `job_id`, else an unfinished (interrupted,
    failed or cancelled) one for the same embedder, else a new one."""
    from archivist import jobs

    if job_id is None:
        unfinished = [j for j in jobs.list_jobs(ws, owner, kinds=("reembed",))
                      if j.state in jobs.RESUMABLE and j.spec.get("embedder") == name]
        if unfinished:
            return jobs.start(ws, unfinished[0].id, resume=True).id
        job_id = jobs.create(ws, "reembed", owner, spec={"embedder": name},
                             total=ws.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]).id
        return jobs.start(ws, job_id).id
    return jobs.start(ws, job_id, resume=True).id


def resume_reembed(ws: Workspace, job_id: str, user: str | None = None, progress: bool = True):
    """`archivist jobs resume ID` for a re-embed: finish switching to the job's embedder (the staged
    vectors are kept). Raises LookupError for a job the user may not see, JobError for one that
    is not interrupted, failed or cancelled."""
    from archivist import jobs

    job = jobs.get(ws, job_id, user)
    if job.state not in jobs.RESUMABLE:
        raise jobs.JobError(f"job {job_id} is {job.state}; only an interrupted, failed or cancelled job can be resumed")
    return activate(ws, job.spec["embedder"], user, progress, job_id=job.id)


# -- deleting --------------------------------------------------------------------------------------


def delete(ws: Workspace, name: str, force: bool = False, user: str | None = None, progress: bool = True) -> dict:
    """Delete adapted embedder `name` (a bad fine-tune, one trained on a collection that must go): its
    folder embedders/<name>/ (weights and manifest) and its ONNX export in the model cache, with an
    `embedder.delete` audit record. `user` (None: the acting user) must have the admin role.

    Every chunk's vector was made by the active embedder and every query is embedded by it, so the
    active one is refused unless `force`; with it every collection is first re-embedded with the base
    embedder and switched to it (`activate(ws, "base")`: a resumable job, the current vectors serve
    searches meanwhile), and only then is the folder removed. A re-embed cut short (killed, cancelled)
    leaves it active and its folder in place: no collection is ever left with vectors no query
    embedder matches; `delete` again (or `jobs resume`) goes on from the staged vectors. Going back to
    the embedder active before it would be a guess: the base is what the settings name.

    A name registered again is other weights in the same folder: model loads are keyed on the
    weights file's identity (`archivist.models.load_embedder`) and its ONNX export is removed here, so
    no process serves the deleted weights under the new registration.

    Returns {"name", "was_active", "generation", "reembed" (chunks, seconds; None when it was not
    active), "notes"} (what the admin must still do, in words; empty when nothing). Raises
    AccessDenied for a member (before the name is looked up, so it confirms no name), LookupError
    for an unknown embedder, ValueError for the active one without `force` and while a re-embed
    into it is queued or running (it would switch every search to a folder that is gone)."""
    from archivist import jobs
    from archivist.models import drop_stale_embedders, onnx_export_folder

    actor = access.require_admin(ws, user, "delete an adapted embedder")
    manifest = load_manifest(ws, name)
    jobs.reconcile(ws)  # a re-embed whose process died is no longer under way
    _refuse_live_reembed(ws, name)
    reembedded = None
    if _in_use(ws, manifest):
        if not force:
            names = [r[0] for r in ws.db.execute("SELECT name FROM collections ORDER BY name")]
            raise ValueError(f"embedder {name!r} is the active embedder: every collection ({', '.join(names) or 'none yet'}) "
                             f"is embedded with it and every search embeds its query with it. Delete it with --force "
                             f"(the app asks): every chunk is re-embedded with the base embedder "
                             f"{ws.settings.embedder!r} first (search keeps working meanwhile), then it is deleted")
        result = activate(ws, "base", actor, progress)
        if not result.switched:
            raise ValueError(f"the re-embed with the base embedder was cancelled: {name!r} is still active and kept; "
                             f"delete it again to go on from the staged vectors")
        reembedded = {"chunks": result.chunks, "seconds": round(result.seconds, 1)}
    path = folder(ws, name)
    export = onnx_export_folder(path, ws.settings.cache)
    with transaction(ws.db):  # the write lock: no re-embed into it is queued, nor a switch to it made, meanwhile
        _refuse_live_reembed(ws, name)
        if _in_use(ws, load_manifest(ws, name)):  # another admin switched to it since the re-embed above
            raise ValueError(f"embedder {name!r} was made active again meanwhile; delete it again (with --force)")
        audit.record(ws, "embedder.delete", user=actor, target=name,
                     detail={"was_active": reembedded is not None, "generation": manifest.get("generation"),
                             "base": manifest.get("base"), "collections": manifest.get("collections")})
        gone = files.set_aside(path)  # the name is free and unlisted at once; a kill now leaves a folder the next save removes
    notes = []
    for left in (gone, export):
        try:
            shutil.rmtree(left)
        except FileNotFoundError:
            pass
        except OSError as e:
            notes.append(f"{left} could not be removed ({e}); remove it by hand")
    export.with_name(f"{export.name}.lock").unlink(missing_ok=True)  # the export's file lock, empty
    drop_stale_embedders()  # its weights leave this process's memory now, not at its exit
    return {"name": name, "was_active": reembedded is not None, "generation": manifest.get("generation"),
            "reembed": reembedded, "notes": notes}


def is_active(ws: Workspace, name: str) -> bool:
    """Whether adapted embedder `name` is the workspace's (`_in_use`): DELETE /v1/models refuses it."""
    return _in_use(ws, load_manifest(ws, name))


def _in_use(ws: Workspace, manifest: dict) -> bool:
    """Whether the workspace's vectors are this embedder's: the pointer's generation, or the one the
    switch's transaction recorded (a kill before the pointer's rename leaves SQLite ahead of it)."""
    from archivist.models import active_embedder

    generation = manifest.get("generation")
    active = active_embedder(ws.home)
    return bool(generation) and generation in ((active or {}).get("generation"), ws.meta("embedder_generation", ""))


def _refuse_live_reembed(ws: Workspace, name: str) -> None:
    from archivist import jobs

    for job in jobs.every(ws, ("reembed",), states=jobs.LIVE):
        if (job.spec or {}).get("embedder") == name:
            raise ValueError(f"embedder {name!r} is being switched to by re-embed job {job.id} ({job.state}, as "
                             f"{job.owner}); wait for it to finish, or cancel it (`archivist jobs cancel {job.id}`), "
                             f"then delete it")

"""The adapter registry: adapters/<name>/ plus a row in the `adapters` table.

    adapters/<name>/adapter_model.safetensors   LoRA weights (PEFT layout: the chat loads it with PeftModel)
    adapters/<name>/adapter_config.json         rank, alpha, targets, base path
    adapters/<name>/metrics.json                base vs adapter on the held-out split (evaluate.compare)
    adapters/<name>/lineage.json                base model and its hash, dataset manifest, documents,
                                                settings, code version, time

One adapter at most is active (`adapters.active`); `archivist.retrieval.answer.ask` uses it.
An adapter that did worse than its base is registered but not activated; its note says why.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

from archivist import __version__
from archivist.workspace import Workspace, transaction

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}$")


def _code_version() -> str:
    """archivist's version, plus the git commit when running from a checkout."""
    repo = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{__version__}+{commit}" if commit else __version__


def lineage(ws: Workspace, base: str, base_path: str, base_hash: str, dataset, config: dict, method: str, device: str,
            run_id: str | None, train: dict) -> dict:
    """Everything needed to tell where an adapter came from and to repeat it."""
    import importlib.metadata as md

    versions = {}
    for pkg in ("torch", "transformers", "peft", "bitsandbytes"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return {
        "base_model": base, "base_path": str(base_path), "base_hash": base_hash,
        "method": method, "device": device, "run_id": run_id,
        "dataset": {"name": dataset.name, "path": str(dataset.path), "manifest": dataset.manifest},
        "documents": [{k: d[k] for k in ("id", "path", "collection", "content_hash", "split")} for d in dataset.manifest.get("documents", [])],
        # every collection a passage of an example came from (cited, distractor, or of a document
        # deleted since): who may use the adapter follows from this list
        "collections": sorted(set(dataset.manifest.get("collections") or [])
                              | {d["collection"] for d in dataset.manifest.get("documents", [])}),
        "settings": config, "train": train, "code_version": _code_version(), "versions": versions,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def register(ws: Workspace, name: str, adapter_dir: str | Path, base: str, metrics: dict, lineage: dict,
             run_id: str | None = None, activate: bool = True) -> dict:
    """Copy a saved PEFT adapter into adapters/<name>/ with metrics.json and lineage.json, and add its row.

    It is activated when `activate` and the evaluation found it at least as good as the base;
    otherwise its note says why not. Returns the adapter's record (see get_adapter).
    Raises ValueError for a bad or taken name, FileNotFoundError when adapter_dir holds no adapter.
    """
    if not _NAME.match(name) or name.lower() == "none":
        raise ValueError(f"adapter name {name!r}: use letters, digits, '.', '_' and '-' (and not 'none')")
    src = Path(adapter_dir)
    if not (src / "adapter_config.json").exists():
        raise FileNotFoundError(f"{src}: no adapter_config.json (not a saved adapter)")
    if ws.db.execute("SELECT 1 FROM adapters WHERE name = ?", (name,)).fetchone():
        raise ValueError(f"an adapter named {name!r} already exists (choose another --name)")
    dest = ws.home / "adapters" / name
    tmp = dest.with_name(f".{name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False, default=str))
    (tmp / "lineage.json").write_text(json.dumps(lineage, indent=2, ensure_ascii=False, default=str))
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    better = bool(metrics.get("better"))
    note = metrics.get("reason", "")
    other_base = base != ws.settings.llm
    if not better:
        note = f"not activated: {note}"
    elif not activate:
        note = f"not activated (--no-activate): {note}"
    elif other_base:
        note = f"not activated: trained on {base!r} but the chat model is {ws.settings.llm!r}; {note}"
    summary = {k: metrics.get(k) for k in ("n", "base", "adapter", "better", "reason")}
    with transaction(ws.db):
        ws.db.execute("INSERT INTO adapters(name, path, base_model, run_id, metrics, lineage, active, note) "
                      "VALUES (?, ?, ?, ?, ?, ?, 0, ?)",
                      (name, str(dest), base, run_id, json.dumps(summary, default=str),
                       json.dumps({k: v for k, v in lineage.items() if k != "dataset"} | {"dataset": lineage["dataset"]["name"]}, default=str),
                       note))
    if better and activate and not other_base:
        set_active(ws, name)
    return get_adapter(ws, name)


def get_adapter(ws: Workspace, name: str) -> dict:
    """One adapter's record: name, path, base_model, run_id, metrics, lineage, active, note, created_at."""
    row = ws.db.execute("SELECT * FROM adapters WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise LookupError(f"no adapter named {name!r} (see `archivist adapters`)")
    rec = dict(row)
    rec["metrics"] = json.loads(rec["metrics"]) if rec["metrics"] else None
    rec["lineage"] = json.loads(rec["lineage"]) if rec["lineage"] else None
    rec["active"] = bool(rec["active"])
    return rec


def list_adapters(ws: Workspace, user: str | None = None) -> list[dict]:
    """The registered adapters `user` (None: the acting user) may use, newest first, with their
    metrics. An adapter trained on a collection the user may not read is not listed at all: its
    name and metrics are about documents the user cannot see (`access.may_use_adapter`)."""
    from archivist.access import may_use_adapter

    names = [r[0] for r in ws.db.execute("SELECT name FROM adapters ORDER BY created_at DESC, name")]
    return [get_adapter(ws, n) for n in names if may_use_adapter(ws, user, n)]


def set_active(ws: Workspace, name: str | None, force: bool = False) -> dict | None:
    """Make `name` the adapter the chat uses (None: the base model alone).

    Raises LookupError for an unknown adapter, ValueError when it was trained on another base than
    the workspace's chat model (unless force).
    """
    if name is None or name.lower() == "none":
        with transaction(ws.db):
            ws.db.execute("UPDATE adapters SET active = 0 WHERE active = 1")
        return None
    rec = get_adapter(ws, name)
    if rec["base_model"] != ws.settings.llm and not force:
        raise ValueError(f"adapter {name!r} was trained on {rec['base_model']!r} but the chat model is {ws.settings.llm!r}; "
                         f"set ARCHIVIST_LLM={rec['base_model']} (or --llm), or pass --force")
    with transaction(ws.db):
        ws.db.execute("UPDATE adapters SET active = 0 WHERE active = 1")
        ws.db.execute("UPDATE adapters SET active = 1 WHERE name = ?", (name,))
    return get_adapter(ws, name)


def export_merged(ws: Workspace, name: str, out: str | Path) -> Path:
    """Merge an adapter into an fp32 copy of its base and save it as a standalone model folder
    (safetensors, tokenizer with its chat template, generation config, lineage). The folder loads
    with AutoModelForCausalLM and chats like the adapter did.

    A qlora adapter was trained against the NF4-rounded base; merged into the full-precision base
    its outputs differ slightly from the quantized chat's. Raises FileExistsError for a non-empty `out`.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from archivist.models import resolve_llm

    rec = get_adapter(ws, name)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty")
    base_path = str(resolve_llm(rec["base_model"], ws.settings.cache))
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, rec["path"]).merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    (tmp / "archivist-merged.json").write_text(json.dumps({"adapter": name, "base_model": rec["base_model"],
                                                           "lineage": rec["lineage"], "metrics": rec["metrics"]},
                                                          indent=2, default=str))
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    return out

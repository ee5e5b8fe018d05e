"""What the finetune stage adds to the adapter registry (`archivist.adapters`, which owns the
`adapters` table and folders): the lineage record a training run writes with its adapter, and
merging an adapter into its base for export.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

from archivist import __version__, access, adapters, audit, files
from archivist.workspace import Workspace


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
            run_id: str | None, train: dict, documents: list[dict] | None = None) -> dict:
    """Everything needed to tell where an adapter came from and to repeat it. `documents`: those the
    weights learned from, when more than the dataset lists now (a resumed run's checkpoint learned a
    document erased since, train.py `_learned`); default the dataset's. `replaces`: the adapter a
    retrain learned again (config["replaces"], runs.retrain_config), None for a first training."""
    from archivist.catalog import installed_versions

    documents = dataset.manifest.get("documents", []) if documents is None else documents
    versions = installed_versions(("torch", "transformers", "peft", "bitsandbytes"))
    return {
        "base_model": base, "base_path": str(base_path), "base_hash": base_hash,
        "method": method, "device": device, "run_id": run_id,
        "dataset": {"name": dataset.name, "path": str(dataset.path), "manifest": dataset.manifest},
        "documents": [{k: d[k] for k in ("id", "path", "collection", "content_hash", "split")} for d in documents],
        # every collection a passage of an example came from (cited, distractor, or of a document
        # deleted since): who may use the adapter follows from this list
        "collections": sorted(set(dataset.manifest.get("collections") or [])
                              | {d["collection"] for d in documents}),
        "settings": config, "train": train, "replaces": config.get("replaces"),
        "code_version": _code_version(), "versions": versions,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def export_merged(ws: Workspace, name: str, out: str | Path, user: str | None = None) -> Path:
    """Merge an adapter into an fp32 copy of its base and save it as a standalone model folder
    (safetensors, tokenizer with its chat template, generation config, lineage). The folder loads
    with AutoModelForCausalLM and chats like the adapter did.

    A qlora adapter was trained against the NF4-rounded base; merged into the full-precision base
    its outputs differ slightly from the quantized chat's. Raises FileExistsError for a non-empty `out`,
    LookupError for an adapter that does not exist or that `user` (None: the acting user) may not use.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from archivist.catalog import resolve_llm

    adapters.resolve(ws, user, name)  # the weights can repeat their training text: only for its readers
    rec = adapters.get(ws, name)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty")
    base_path = str(resolve_llm(rec["base_model"], ws.settings.cache))
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, rec["path"]).merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    tmp = out.with_name(out.name + ".tmp")
    actor, where = access.current_user(ws, user), {"to": str(out.resolve())}
    # Recorded before a byte is written: a process killed mid-write leaves the record of a partial
    # export, never an export without its record; a write that fails says so in a second record.
    audit.record(ws, "adapter.exported", user=actor, target=name, detail=where)
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        (tmp / "archivist-merged.json").write_text(json.dumps({"adapter": name, "base_model": rec["base_model"],
                                                               "lineage": rec["lineage"], "metrics": rec["metrics"]},
                                                              indent=2, default=str))
        if out.exists():
            out.rmdir()
        files.publish(tmp, out)
    except Exception as e:
        shutil.rmtree(tmp, ignore_errors=True)
        audit.record(ws, "adapter.export_failed", user=actor, target=name, detail={**where, "error": f"{type(e).__name__}: {e}"})
        raise
    return out

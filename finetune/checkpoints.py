"""Checkpoints of a training run, in runs/<id>/checkpoints/: safetensors only, written aside then pointed to.

    save_checkpoint   the LoRA weights, AdamW's state, the RNG state and the step, in step-N/; `latest`
                      names it only once it is on disk, and the older ones are deleted
    load_checkpoint   restores the latest into the model and optimizer (`--resume`), or raises
                      CheckpointDamaged with the model and optimizer untouched

The recipe (train.py) saves one every --save-every steps, at the end and when cancelled; runs.py
reads `latest` to tell whether a run can be resumed. Nothing in one is tied to the device it was
written on: tensors are saved from the CPU, the optimizer's state moves to its parameters' device as
it loads, so a run checkpointed on a CPU resumes on a GPU and back (`latest_state` tells the recipe
which device the run started on, so that `--method auto` keeps the method it chose there).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from archivist import files


def save_checkpoint(folder: Path, model, optimizer, step: int, extra: dict) -> Path:
    """LoRA weights, AdamW state, RNG state and the step, in runs/<id>/checkpoints/step-N; `latest`
    is switched to it atomically only once it is complete, so a kill -9 mid-write loses nothing."""
    import torch
    from safetensors.torch import save_file

    target = folder / f"step-{step:06d}"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    save_file({n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad},
              str(target / "lora.safetensors"))
    state = optimizer.state_dict()
    tensors = {f"{i}.{k}": v.detach().cpu().contiguous() for i, s in state["state"].items() for k, v in s.items()}
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    save_file(tensors, str(target / "optimizer.safetensors"))
    (target / "state.json").write_text(json.dumps({"step": step, "param_groups": state["param_groups"], **extra}))
    files.sync_tree(target)  # on disk before `latest` names it: the older checkpoints are deleted next
    files.replace(folder / "latest", target.name)
    for old in folder.glob("step-*"):
        if old != target:
            shutil.rmtree(old, ignore_errors=True)
    return target


def latest_state(folder: Path) -> dict:
    """The latest checkpoint's state.json (step, param groups, and what the recipe added: the device it
    trained on, and the one the run started on), without its tensors; {} when there is none or it
    cannot be read (`load_checkpoint` then says which file is damaged)."""
    try:
        return json.loads((folder / (folder / "latest").read_text().strip() / "state.json").read_text())
    except (OSError, ValueError):
        return {}


class CheckpointDamaged(ValueError):
    """A run's latest checkpoint cannot be read (a file truncated, overwritten or missing); the
    message names the file and the reason. Nothing was restored from it."""


def load_checkpoint(folder: Path, model, optimizer) -> dict | None:
    """Restore the latest checkpoint into model and optimizer; returns its state.json (None: none yet).
    Every file is read before anything is restored: raises CheckpointDamaged naming the file that
    cannot be read, with the model and optimizer untouched."""
    import torch
    from safetensors.torch import load_file

    pointer = folder / "latest"
    if not pointer.exists():
        return None
    target = folder / pointer.read_text().strip()
    read = {}
    for name, load in (("lora.safetensors", load_file), ("optimizer.safetensors", load_file),
                       ("state.json", lambda f: json.loads(Path(f).read_text()))):
        try:
            read[name] = load(str(target / name))
        except Exception as e:  # safetensors raises its own error type for a torn file
            reason = e.strerror if isinstance(e, OSError) and e.strerror else f"{type(e).__name__}: {e}"
            raise CheckpointDamaged(f"the checkpoint file {target / name} is damaged ({reason})") from e
    weights, tensors, state = read["lora.safetensors"], read["optimizer.safetensors"], read["state.json"]
    params = dict(model.named_parameters())
    if set(weights) - set(params) or "step" not in state or "param_groups" not in state:
        raise CheckpointDamaged(f"the checkpoint {target} does not belong to this run's model (or lacks its step)")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    opt_state: dict = {}
    for key, value in tensors.items():
        if key.startswith("rng."):
            continue
        i, k = key.split(".", 1)
        opt_state.setdefault(int(i), {})[k] = value
    optimizer.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return state

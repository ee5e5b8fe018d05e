"""Summarize a py-spy raw profile of bench/finetune.py: where the archivist workers' time goes.

    python bench/pyspy_summary.py bench/data/train.pyspy [--worker "--worker archivist --method lora"]

Splits each worker's samples into the training loop (forward, backward, optimizer step, the rest)
and what surrounds it (imports, loading the model, everything else), as shares of the worker's time.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path


def frame_name(frame: str) -> str:
    """'train (archivist/finetune/train.py:331)' -> 'train (train.py)'."""
    name, _, where = frame.partition(" (")
    return f"{name} ({Path(where.split(':')[0]).name})" if where else name


def summarize(path: Path, worker: str) -> dict[str, float]:
    shares: collections.Counter = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        if len(frames) < 2 or worker not in frames[1]:
            continue
        names = [frame_name(f) for f in frames[2:]]
        joined = ";".join(names)
        if "train (train.py)" in joined:
            part = next((label for key, label in (("backward", "backward"), ("AdamW.step", "optimizer step"),
                                                   ("Optimizer.step", "optimizer step"), ("collate", "batching (collate)"),
                                                   ("forward", "forward")) if key in joined), "other")
            shares["training loop: " + part] += int(n)
        elif "_find_and_load" in joined:
            shares["outside the loop: imports"] += int(n)
        elif "load_base" in joined or "add_lora" in joined:
            shares["outside the loop: loading the model, adding LoRA"] += int(n)
        else:
            shares["outside the loop: other"] += int(n)
    total = sum(shares.values()) or 1
    return {k: v / total for k, v in shares.most_common()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("raw")
    ap.add_argument("--worker", default="--worker archivist --method lora")
    args = ap.parse_args(argv)
    for key, share in summarize(Path(args.raw), args.worker).items():
        print(f"{share:6.1%}  {key}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The retriever adapted to each public corpus (`archivist finetune --target retriever`), against the base.

    python bench/retriever.py [--corpus python,handbook,git] [--max-chunks 4000] [--activate auto|always]
                              [--questions extractive,sentence] [--split tuning|heldout|both]

Per corpus: a copy of bench/data/ws/public-<corpus> (bench/answers.py ingests it) is scored with the
base embedder on the frozen public questions (dense, lexical, hybrid; tuning and held-out splits),
then adapted with the default recipe (synthetic questions from its own documents; no evaluation
question is used for training or for any choice) and re-embedded, then scored again. Prints hit@5
and MRR@10 per split, the paired bootstrap difference adapted - base of hybrid and dense, the
training time and the re-embedding's share of time spent encoding (1.0 = raw encoding speed).
`--activate always` switches to the adapted model whatever the recipe's own held-out evaluation says
(which it prints, with whether `auto` would have activated), so that its effect is measured anyway.
The source workspace is copied without being opened (only a missing one is ingested first).
Writes bench/data/results/retriever-<corpus>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import log, machine, open_ws, save_result  # noqa: E402

import answers  # noqa: E402

MODES = ["dense", "lexical", "hybrid"]


def score(ws, corpus: str, splits: tuple[str, ...]) -> dict:
    from archivist.retrieval.evaluate import evaluate_retrieval

    out = {}
    for split in splits:
        qs = answers.questions(corpus, split)
        qs = [q for q in qs if q.relevant]
        r = evaluate_retrieval(ws, qs, modes=MODES, k=10)
        out[split] = {"modes": r["modes"], "per_query": r["per_query"]}
    return out


def differences(base: dict, adapted: dict) -> dict:
    from archivist.retrieval.evaluation import paired_difference

    out = {}
    for split in base:
        for mode in ("hybrid", "dense"):
            for m in ("hit@5", "mrr@10"):
                a = [q[mode][m] for q in adapted[split]["per_query"]]
                b = [q[mode][m] for q in base[split]["per_query"]]
                out[f"{split}/{mode}/{m}"] = paired_difference(a, b)
    return out


def run(corpus: str, max_chunks: int, activate: str = "auto", questions: str = "extractive,sentence",
        splits: tuple[str, ...] = ("tuning", "heldout")) -> dict:
    from archivist.finetune.retriever import RetrieverConfig, finetune_retriever

    home = answers.workspace_copy(corpus, "retriever")
    with open_ws(home) as ws:
        chunks = ws.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        t0 = time.perf_counter()
        base = score(ws, corpus, splits)
        log(f"{corpus}: base scored in {time.perf_counter() - t0:.0f} s")
        report = finetune_retriever(ws, RetrieverConfig(max_chunks=max_chunks, activate=activate, questions=questions), progress=True)
        log(f"{corpus}: {json.dumps({k: report[k] for k in ('name', 'better', 'activated', 'seconds')})}")
        ev = report["evaluation"]
        for label, side in (("hybrid", ev), ("dense", ev["dense"])):
            for m in ("hit@5", "mrr@10"):
                d = side["difference"][m]
                log(f"{corpus} synthetic held-out ({ev['questions']} questions, {ev['corpus']} chunks) {label}/{m}: "
                    f"{side['base'][m]:.3f} -> {side['adapted'][m]:.3f}, {d['diff']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]")
    with open_ws(home) as ws:  # a fresh handle reads the switched embedder and index
        adapted = score(ws, corpus, splits) if report["activated"] else base
    result = {"corpus": corpus, "questions": questions, "chunks": chunks, "machine": machine(), "report": report,
              "base": {s: v["modes"] for s, v in base.items()}, "adapted": {s: v["modes"] for s, v in adapted.items()},
              "differences": differences(base, adapted)}
    save_result(f"retriever-{corpus}{'' if questions == 'extractive,sentence' else '-' + questions.replace(',', '-')}", result)
    for split in splits:
        for mode in MODES:
            b, a = result["base"][split][mode], result["adapted"][split][mode]
            log(f"{corpus}/{split}/{mode}: hit@5 {b['hit@5']:.3f} -> {a['hit@5']:.3f}, MRR@10 {b['mrr@10']:.3f} -> {a['mrr@10']:.3f}")
    for key, d in result["differences"].items():
        log(f"{corpus} {key}: {d['diff']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default="python,handbook,git")
    ap.add_argument("--max-chunks", type=int, default=4000)
    ap.add_argument("--activate", choices=("auto", "always"), default="auto",
                    help="always: switch to the adapted model even when the recipe would not, to measure it")
    ap.add_argument("--questions", default="extractive,sentence", help="the recipe's synthetic question kinds")
    ap.add_argument("--split", choices=("tuning", "heldout", "both"), default="both",
                    help="which split of people's questions to score (choices are made on tuning alone)")
    args = ap.parse_args(argv)
    splits = ("tuning", "heldout") if args.split == "both" else (args.split,)
    for corpus in args.corpus.split(","):
        run(corpus, args.max_chunks, args.activate, args.questions, splits)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Answers and retrieval on public documents the project never tuned on (bench/evalsets/PUBLIC.md).

    python bench/answers.py [--corpus git,handbook,python] [--mode extractive,auto] [--split tuning|heldout|both]
    python bench/answers.py --calibrate        # choose the answered / not-found thresholds on the tuning splits

Each corpus (built by bench/corpora.py) is ingested once into bench/data/ws/public-<corpus> with the
default settings. Then, per corpus and split:

  retrieval   hit@1/5/10 and MRR@10 of dense, lexical and hybrid (`evaluate_retrieval`)
  answers     per answer mode: key-answer accuracy (status *answered* and the answer names the gold),
              confident misses (*answered* but wrong), uncertain and not-found rates on answerable
              questions, and not-found on unanswerable ones (`answer_metrics`)

Thresholds. Every question's best-quote confidence is recorded with the status thresholds switched
off, so `--calibrate` can choose them afterwards from the tuning splits alone: `quote_answered` is
the lowest value whose confident misses stay at most 4% of answerable tuning questions (the target
is 5%), and `quote_not_found` the highest whose not-found stays at most 4%. The held-out split is
then scored with the thresholds in the code (Settings), never with values chosen on it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BENCH, DATA, EVALSETS, log, machine, md_table, open_ws, report  # noqa: E402

CORPORA = ("git", "handbook", "python")
FOLDERS = {"git": "git", "handbook": "debian-handbook", "python": "python"}  # as bench/corpora.py names them
PUBLIC = DATA / "public"
TARGET_MISS = 0.04  # calibration margin under the 5% confident-miss target


def build_corpus(name: str) -> Path:
    folder = PUBLIC / FOLDERS[name]
    if not (folder.exists() and any(folder.iterdir())):
        subprocess.run([sys.executable, str(BENCH / "corpora.py"), "--out", str(PUBLIC), "--corpus", name], check=True)
    return folder


def workspace(name: str):
    """The corpus's workspace, ingested once (re-running ingest skips what is there)."""
    from archivist.ingest.pipeline import ingest_paths

    home = DATA / "ws" / f"public-{name}"
    ws = open_ws(home)
    if not ws.db.execute("SELECT 1 FROM documents LIMIT 1").fetchone():
        t0 = time.perf_counter()
        ingest_paths(ws, [build_corpus(name)], collection="default", progress=False)
        log(f"{name}: ingested in {time.perf_counter() - t0:.0f} s")
    return ws


def questions(name: str, split: str | None):
    from archivist.retrieval.evaluate import load_set

    qs = load_set(EVALSETS / f"{name}.jsonl", "answers")
    return [q for q in qs if split in (None, "both") or q.extra.get("split") == split]


def run_answers(ws, qs, mode: str, raw: bool) -> list[dict]:
    """Ask each question; with `raw` (extractive mode only), the status thresholds are switched off
    (every quote is *uncertain*) so the confidence can be thresholded afterwards; other modes run
    with the thresholds in the code, and their rows keep the status they got."""
    from archivist.retrieval.evaluate import evaluate_answers

    if raw:
        ws.settings.quote_answered, ws.settings.quote_not_found = float("inf"), float("-inf")
    res = evaluate_answers(ws, qs, user=None, adapter=None, mode=mode)
    rows = res["per_question"]
    for q, r in zip(qs, rows):
        r.update(id=q.extra.get("id"), kind=q.extra.get("kind"), split=q.extra.get("split"), answers=q.answers)
    return rows


def status_at(row: dict, answered: float, not_found: float) -> str:
    """The status a row would get with these thresholds (rows recorded with them switched off);
    a generated answer keeps the status it got."""
    if row["mode"] == "generated":
        return row["status"]
    if row["mode"] == "not_found" or row["confidence"] < not_found:
        return "not_found"
    return "answered" if row["confidence"] >= answered else "uncertain"


def metrics(rows: list[dict], answered: float, not_found: float) -> dict:
    ans = [r for r in rows if r["gold"] is not None]
    una = [r for r in rows if r["gold"] is None]
    st = [status_at(r, answered, not_found) for r in ans]
    out = {"answerable": len(ans), "unanswerable": len(una)}
    if ans:
        out["key_accuracy"] = sum(s == "answered" and r["contains_gold"] for s, r in zip(st, ans)) / len(ans)
        out["confident_miss"] = sum(s == "answered" and not r["contains_gold"] for s, r in zip(st, ans)) / len(ans)
        out["uncertain"] = st.count("uncertain") / len(ans)
        out["not_found"] = st.count("not_found") / len(ans)
        out["gold_in_quote"] = sum(bool(r["contains_gold"]) for r in ans) / len(ans)
    if una:
        out["unanswerable_not_found"] = sum(status_at(r, answered, not_found) == "not_found" for r in una) / len(una)
    return out


def calibrate(rows: list[dict]) -> tuple[float, float]:
    """(quote_answered, quote_not_found) from tuning rows: see the module docstring."""
    ans = [r for r in rows if r["gold"] is not None and r["mode"] != "not_found"]
    n = len([r for r in rows if r["gold"] is not None])
    confs = sorted({round(r["confidence"], 4) for r in ans})
    answered = next((c for c in confs if sum(r["confidence"] >= c and not r["contains_gold"] for r in ans) <= TARGET_MISS * n),
                    float("inf"))
    gated = sum(r["gold"] is not None and r["mode"] == "not_found" for r in rows)
    not_found = max((c for c in confs if gated + sum(r["confidence"] < c for r in ans) <= TARGET_MISS * n), default=0.0)
    return answered, min(not_found, answered)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default=",".join(CORPORA))
    ap.add_argument("--mode", default="extractive", help="answer modes, comma-separated: extractive,auto,generate")
    ap.add_argument("--split", default="both", choices=["tuning", "heldout", "both"])
    ap.add_argument("--calibrate", action="store_true", help="print thresholds chosen on the tuning splits")
    ap.add_argument("--no-retrieval", action="store_true")
    args = ap.parse_args(argv)
    from archivist.retrieval.evaluate import evaluate_retrieval

    corpora = args.corpus.split(",")
    modes = args.mode.split(",")
    splits = ["tuning", "heldout"] if args.split == "both" else [args.split]
    if args.calibrate:
        splits = ["tuning"]
    raw: dict = {}
    retrieval_rows, answer_rows = [], []
    for name in corpora:
        ws = workspace(name)
        defaults = (ws.settings.quote_answered, ws.settings.quote_not_found)
        for split in splits:
            qs = questions(name, split)
            if not args.no_retrieval:
                rq = [q for q in qs if q.relevant]
                r = evaluate_retrieval(ws, rq, modes=["dense", "lexical", "hybrid"], k=10)
                for mode, m in r["modes"].items():
                    retrieval_rows.append([name, split, mode, len(rq), m["hit@1"], m["hit@5"], m["hit@10"], m["mrr@10"]])
            for mode in modes:
                t0 = time.perf_counter()
                rows = run_answers(ws, qs, mode, raw=mode == "extractive")
                raw[f"{name}/{split}/{mode}"] = rows
                m = metrics(rows, *defaults)
                log(f"{name} {split} {mode}: {len(qs)} questions in {time.perf_counter() - t0:.0f} s")
                answer_rows.append([name, split, mode, m["answerable"], m["key_accuracy"], m["confident_miss"],
                                    m["uncertain"], m["not_found"], m.get("unanswerable_not_found", float("nan")),
                                    m["gold_in_quote"]])
        ws.close()
    (DATA / "results").mkdir(parents=True, exist_ok=True)
    (DATA / "results" / "answers-rows.json").write_text(json.dumps(raw, indent=1, default=str))
    if args.calibrate:
        for mode in modes:
            rows = [r for k, v in raw.items() if k.endswith(f"/tuning/{mode}") for r in v]
            a, nf = calibrate(rows)
            print(f"{mode}: quote_answered {a:.4f}, quote_not_found {nf:.4f} "
                  f"(tuning: {json.dumps({k: round(v, 3) for k, v in metrics(rows, a, nf).items()})})")
        return 0
    body = [f"Frozen sets (bench/evalsets/PUBLIC.md), default settings, thresholds from the code "
            f"(quote_answered {defaults[0]}, quote_not_found {defaults[1]}), {machine()['date']}.", ""]
    if retrieval_rows:
        body += ["Retrieval:", "", md_table(["corpus", "split", "mode", "questions", "hit@1", "hit@5", "hit@10", "MRR@10"],
                                            retrieval_rows), ""]
    body += ["Answers (rates over answerable questions; the last but one column over unanswerable ones; "
             "`gold in quote`: the quoted or generated text holds the gold whatever its status):", "",
             md_table(["corpus", "split", "mode", "answerable", "key accuracy", "confident misses", "uncertain",
                       "not found", "unanswerable not found", "gold in quote"], answer_rows)]
    report("answers", "Answers and retrieval on unseen public documents", "\n".join(body),
           {"retrieval": retrieval_rows, "answers": answer_rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A cross-encoder for the quote, trained on synthetic questions from the documents: tried on the
TUNING splits only (bench/RESULTS.md, finding 39).

    python bench/cross_quote.py --make      # synthetic groups from the three public workspaces
    python bench/cross_quote.py --train     # the cross-encoder (MiniLM-L6 from the embedder's weights)
    python bench/cross_quote.py --score     # its scores of every tuning candidate (tune_quote.py's rows)
    python bench/cross_quote.py --judge     # the ranker with and without it, out of fold

Finding 38's one-off cross-encoder, trained on the other folds' ~220 tuning questions, put the gold
first for 0.202 of the answerable tuning questions (the fitted ranker: 0.505): far too few questions.
Here the questions come from the documents, thousands of them, and no evaluation question is used
to make them or to train:

  a group    one chunk of a public workspace with up to four other chunks of its document (its
             neighbours first), as retrieval/quote.py's `candidates` cuts them into quotable units;
  question   a unit of the first chunk that holds a key span (keyanswer.key_span: an option, command,
             path, setting ...) with the span taken out and a third of its other words dropped, so
             that it names what the answer is about but not the answer (people's questions do not
             hold the words of the sentence that answers them either);
  positives  every unit of the group that holds the span; the rest are the negatives, near misses
             from the same page.

The model is trained listwise (softmax over a group's units). It is judged as retrieval/keyanswer.py's
ranker is (tune_quote.py --models): how often the best-ranked candidate holds the gold, alone and as
one more feature of the logistic ranker, 5 folds by question; and what scoring costs per question.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import answers  # noqa: E402
import tune_quote as tq  # noqa: E402
from common import log  # noqa: E402

RESULTS = tq.RESULTS
GROUPS = RESULTS / "cross-quote-groups.json"
MODEL = RESULTS / "cross-quote-model"
SCORES = RESULTS / "cross-quote-scores.json"
PER_CORPUS = 800  # groups made per corpus
UNITS = 8  # units of a group kept for training: its positives and a sample of the rest
MAX_LEN = 128
DROP = 1 / 3


def _units_of(rows) -> list[tuple[int, str, str]]:
    from archivist.records import Hit
    from archivist.retrieval.quote import candidates

    hits = [Hit(chunk_id=r[0], document_id=r[1], document="", collection="", text=r[3], score=0.0,
                heading=tuple(h for h in (r[4] or "").split(" > ") if h)) for r in rows]
    return candidates(hits)


def question_from(unit: str, span: str, rng: random.Random) -> str:
    """The unit with its key span and a third of its other words taken out."""
    words = [w for w in unit.replace(span, " ").split() if not re.fullmatch(r"\W+", w)]
    kept = [w for w in words if rng.random() >= DROP]
    return " ".join(kept).rstrip(".:;,") + "?"


def make(rng: random.Random) -> list[dict]:
    from archivist.retrieval.evaluation import contains_answer
    from archivist.retrieval.keyanswer import key_span

    groups = []
    for name in tq.CORPORA:
        ws = answers.workspace(name)
        rows = ws.db.execute("SELECT id, document_id, seq, text, heading FROM chunks ORDER BY document_id, seq").fetchall()
        ws.close()
        by_doc: dict[int, list] = {}
        for r in rows:
            by_doc.setdefault(r[1], []).append(tuple(r))
        order = [r for r in rows]
        rng.shuffle(order)
        made = 0
        for r in order:
            if made >= PER_CORPUS:
                break
            doc = by_doc[r[1]]
            j = doc.index(tuple(r))
            others = [doc[i] for i in (j - 1, j + 1) if 0 <= i < len(doc)]
            rest = [c for i, c in enumerate(doc) if abs(i - j) > 1]
            others += rng.sample(rest, min(len(rest), 4 - len(others)))
            units = _units_of([tuple(r)] + others)
            own = [u for u in units if u[0] == 1 and len(u[1].split()) >= 6]
            keyed = [(u, key_span(u[1], "")) for u in own]
            keyed = [(u, k) for u, k in keyed if k and len(k) >= 3]
            if not keyed:
                continue
            unit, span = rng.choice(keyed)
            question = question_from(unit[1], span, rng)
            if len(question.split()) < 4:
                continue
            labels = [contains_answer(span, u[1]) for u in units]
            pos = [u[1] for u, y in zip(units, labels) if y]
            neg = [u[1] for u, y in zip(units, labels) if not y]
            if not neg or not pos:
                continue
            neg = rng.sample(neg, min(len(neg), UNITS - min(len(pos), 3)))
            groups.append({"corpus": name, "question": question, "span": span, "pos": pos[:3], "neg": neg})
            made += 1
        log(f"{name}: {made} groups")
    return groups


def train(groups: list[dict], seed: int = 0, lr: float = 3e-5, batch_groups: int = 4) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from archivist.finetune.retriever import freeze_encoder_below, optimizer_step
    from archivist.catalog import resolve_embedder

    torch.manual_seed(seed)
    base = resolve_embedder("all-minilm-l6-v2")
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    freeze_encoder_below(model.bert, len(model.bert.encoder.layer) // 2)  # the top half trains: half the backward pass
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.01)
    rng = random.Random(seed)
    order = groups[:]
    rng.shuffle(order)
    steps = len(order) // batch_groups
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / (steps // 10 + 1), (steps - s) / steps))
    model.train()
    seen, t0 = [], time.time()
    for s in range(steps):
        batch = order[s * batch_groups:(s + 1) * batch_groups]
        qs, ps, sizes = [], [], []
        for g in batch:
            units = g["pos"] + g["neg"]
            qs += [g["question"]] * len(units)
            ps += units
            sizes.append((len(g["pos"]), len(units)))
        enc = tok(qs, ps, truncation=True, max_length=MAX_LEN, padding=True, return_tensors="pt")
        logits = model(**enc).logits[:, 0]
        loss, at = 0.0, 0
        for npos, n in sizes:
            lp = torch.log_softmax(logits[at:at + n], 0)
            loss = loss - torch.logsumexp(lp[:npos], 0)  # probability mass on the positives
            at += n
        seen.append(optimizer_step(loss / len(sizes), opt, sched, trainable))
        if s % 50 == 0:
            log(f"step {s}/{steps} loss {np.mean(seen[-50:]):.3f} ({time.time() - t0:.0f} s)")
    model.save_pretrained(MODEL)
    tok.save_pretrained(MODEL)
    log(f"trained {steps} steps in {time.time() - t0:.0f} s")


def tuning_rows() -> list[dict]:
    return [r for r in tq.load() if r["asked_of"] == r["corpus"] and r["answers"] and r["passages"]]


def score(rows) -> dict:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from archivist.retrieval.quote import candidates

    torch.set_grad_enabled(False)
    tok = AutoTokenizer.from_pretrained(MODEL)
    model = AutoModelForSequenceClassification.from_pretrained(MODEL).eval()
    out, times = {}, []
    for r in rows:
        texts = [c[1] for c in candidates(tq._hits(r))]
        if not texts:
            continue
        t0 = time.process_time()
        enc = tok([r["question"]] * len(texts), texts, truncation=True, max_length=MAX_LEN, padding=True,
                  return_tensors="pt")
        out[r["question"]] = model(**enc).logits[:, 0].tolist()
        times.append(time.process_time() - t0)
    log(f"scored {len(out)} questions; CPU s per question median {np.median(times):.3f}, "
        f"p95 {np.percentile(times, 95):.3f}; candidates median {np.median([len(v) for v in out.values()])}")
    return {"scores": out, "cpu_s_median": float(np.median(times)), "cpu_s_p95": float(np.percentile(times, 95))}


def judge(rows, scores: dict) -> dict:
    from sklearn.linear_model import LogisticRegression

    from archivist.models import embedder_for
    from archivist.retrieval import keyanswer as ka
    from archivist.retrieval.quote import candidates
    from archivist.settings import Settings

    embedder = tq.CachedEmbedder(embedder_for(Settings.from_env()))
    qs = []
    for r in rows:
        hits = tq._hits(r)
        cands = candidates(hits)
        if not cands or r["question"] not in scores:
            continue
        x = ka.candidate_features(r["question"], cands, hits, tq._stats(r), embedder)
        ce = np.array(scores[r["question"]])
        extra = np.stack([ce, ce - ce.max(), np.exp(ce - ce.max()) / np.exp(ce - ce.max()).sum()], 1)
        qs.append({"r": r, "x": x, "ce": extra, "y": np.array([tq._right(r, c[1]) for c in cands])})
    folds = np.array(tq._folds([q["r"] for q in qs]))
    out = {"questions": len(qs), "gold_in_any_candidate": round(float(np.mean([q["y"].any() for q in qs])), 3),
           "cross-encoder alone: gold in its best": round(float(np.mean([q["y"][int(np.argmax(q["ce"][:, 0]))]
                                                                          for q in qs])), 3)}
    logistic = tq.pointwise(lambda: LogisticRegression(max_iter=3000))
    for name, variant in (("ranker (committed features)", qs),
                          ("ranker + cross-encoder", [{**q, "x": np.hstack([q["x"], q["ce"]])} for q in qs])):
        top = tq.gold_in_best_oof(variant, folds, logistic)
        out[f"{name}: gold in the best"] = round(float(top.mean()), 3)
        out[f"{name}: by corpus"] = {c: round(float(np.mean([t for t, q in zip(top, qs) if q["r"]["corpus"] == c])), 3)
                                     for c in tq.CORPORA}
        out[f"{name}: per question"] = top.tolist()
    from archivist.retrieval.evaluation import paired_difference

    out["difference"] = paired_difference(out["ranker + cross-encoder: per question"],
                                          out["ranker (committed features): per question"])
    for k in [k for k in out if k.endswith("per question")]:
        del out[k]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--make", action="store_true")
    ap.add_argument("--train", action="store_true")
    ap.add_argument("--score", action="store_true")
    ap.add_argument("--judge", action="store_true")
    args = ap.parse_args(argv)
    if args.make:
        groups = make(random.Random(0))
        GROUPS.write_text(json.dumps(groups))
        log(f"{len(groups)} groups, {sum(len(g['pos']) + len(g['neg']) for g in groups)} pairs")
        for g in groups[:: max(1, len(groups) // 6)]:
            print(json.dumps({k: g[k] for k in ("corpus", "question", "span")}, ensure_ascii=False))
    if args.train:
        train(json.loads(GROUPS.read_text()))
    if args.score:
        SCORES.write_text(json.dumps(score(tuning_rows())))
    if args.judge:
        result = judge(tuning_rows(), json.loads(SCORES.read_text())["scores"])
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

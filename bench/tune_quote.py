"""Tune the quote scorer (retrieval/quote.py) on the TUNING splits of the public sets, fast.

    python bench/tune_quote.py --collect          # search once per tuning question, keep its passages
    python bench/tune_quote.py                    # score quotes offline: gold in the quote, and by confidence

Retrieval does not change while the quote scorer is tuned, so the passages of every tuning question
are searched once (bench/data/results/tune-quote-<corpus>.json, bench/tune_rows.py) and each scorer
variant is scored offline against them. Held-out questions are never loaded here.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from answers import CORPORA  # noqa: E402
from common import RESULTS  # noqa: E402
from tune_rows import CachedEmbedder, collect, load  # noqa: E402

TARGET_MISS = 0.04  # calibration margin under the 5% targets (confident misses, not found)


def evaluate(rows, embedder, module=None, **weights) -> dict:
    from archivist.records import Hit
    from archivist.retrieval import quote as current
    from archivist.retrieval.evaluation import contains_answer, strip_citations

    DEFAULT, Weights, quote = (module or current).DEFAULT, (module or current).Weights, (module or current).quote

    w = Weights(**{**asdict(DEFAULT), **weights})
    scored = []
    for r in rows:
        if not r["answers"] or r["asked_of"] != r["corpus"]:
            continue
        hits = [Hit(**{**h, "heading": tuple(h["heading"])}) for h in r["passages"]]
        q = quote(r["question"], hits, embedder, weights=w)
        text = strip_citations(q.text) if q else ""
        scored.append((q.confidence if q else 0.0, any(contains_answer(g, text) for g in r["answers"]), r))
    n = len(scored)
    right = sum(ok for _, ok, _ in scored)
    scored.sort(key=lambda x: -x[0])
    # key accuracy at the threshold that keeps confident misses <= 4%
    best, misses, hits_, cut = 0, 0, 0, float("inf")
    for conf, ok, _ in scored:
        hits_ += ok
        misses += not ok
        if misses <= 0.04 * n:
            best, cut = hits_, conf
    low = sorted(c for c, _, _ in scored)
    return {"n": n, "gold_in_quote": round(right / n, 3), "key_accuracy_at_4pct_miss": round(best / n, 3),
            "answered_threshold": round(cut, 4), "confidence_p1": round(low[max(0, int(0.01 * n) - 1)], 4)}


def _hits(r, key="passages"):
    from archivist.records import Hit

    return [Hit(**{**h, "heading": tuple(h["heading"]), "boxes": tuple(tuple(b) for b in h.get("boxes") or ())})
            for h in r[key]]


def _right(r, text: str) -> bool:
    from archivist.retrieval.evaluation import contains_answer, strip_citations

    return bool(r["answers"]) and any(contains_answer(g, strip_citations(text)) for g in r["answers"])


def _fit(x, y, c: float = 1.0):
    from sklearn.linear_model import LogisticRegression

    m = LogisticRegression(C=c, max_iter=2000).fit(x, y)
    return m.coef_[0], float(m.intercept_[0])


def _stats(r):
    """The question's term statistics as --collect stored them."""
    from archivist.retrieval.keyanswer import TermStats

    return TermStats([tuple(t) for t in r["terms"]], r["n_live"])


def _folds(rows, k: int = 5):
    """Question folds by a hash of the question text: the same question asked of another corpus
    falls in the same fold."""
    import hashlib

    return [int(hashlib.sha256(r["question"].encode()).hexdigest(), 16) % k for r in rows]


QUOTE_ANSWERED = 0.9  # Settings.quote_answered: a quote scoring this by retrieval/quote.py is answered as well
CROSS = 2  # one in CROSS of the generated unanswerable questions is used (the 2-core box embeds every candidate)


def _generated_unanswerable(r) -> bool:
    """A tuning question asked of another corpus whose passages do not hold its gold, in the sample."""
    import hashlib

    return (r["asked_of"] != r["corpus"] and bool(r["answers"])
            and int(hashlib.sha256((r["asked_of"] + r["question"]).encode()).hexdigest(), 16) % CROSS == 0
            and not _right(r, " ".join(h["text"] for h in r["passages"])))


def embed_all(rows, embedder, corpus: str) -> None:
    """Embed the candidates of the rows --fit uses that were asked of `corpus` (one process per corpus)."""
    from archivist.retrieval.quote import candidates

    for r in rows:
        if r["asked_of"] == corpus and (r["asked_of"] == r["corpus"] or _generated_unanswerable(r)):
            cands = candidates(_hits(r))
            embedder.embed([r["question"]] + [c[1] for c in cands])
    embedder.save(corpus)


READ_WEIGHTS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0)  # keyanswer.READ_WEIGHT's grid (--reader)


READ_MODEL = None  # --read-model: the model that reads (default: the chat model of the settings)
READ_TOP = None  # --read-top: keyanswer.READ_TOP as committed


def read_variant(top: bool = True) -> str:
    """"" for the committed reading (the chat model of the settings, keyanswer.READ_TOP candidates,
    each alone); else "-MODEL", "-topN", "-heading" for what --read-model, --read-top, --read-heading
    change: the suffix of the variant's --fit --reader results, and (top False) of its reading cache."""
    from archivist.retrieval import keyanswer

    parts = [READ_MODEL, f"top{READ_TOP}" if READ_TOP and top else "", "heading" if keyanswer.READ_HEADING else ""]
    return "".join(f"-{p}" for p in parts if p)


def reading_cache() -> Path:
    """The readings cached by --read (texts are keys, so a larger --read-top extends the same file)."""
    return RESULTS / f"tune-quote-reading{read_variant(top=False)}.json"


def read_all(rows, embedder) -> None:
    """--read: the chat model's reading (keyanswer.reading) of the best READ_TOP candidates, by the
    committed ranker, of every row --fit uses; kept in RESULTS/tune-quote-reading.json."""
    import numpy as np

    from archivist.retrieval import keyanswer as ka
    from archivist.retrieval.llm import llm_for
    from archivist.retrieval.quote import candidates
    from archivist.settings import Settings

    settings = Settings.from_env()
    llm = llm_for(replace(settings, llm=READ_MODEL) if READ_MODEL else settings)
    done = json.loads(reading_cache().read_text()) if reading_cache().exists() else {}
    for n, r in enumerate(r for r in rows if r["asked_of"] == r["corpus"] or _generated_unanswerable(r)):
        hits = _hits(r)
        cands = candidates(hits)
        if not cands:
            continue
        st = _stats(r)
        probs = ka._sigmoid(ka.candidate_features(r["question"], cands, hits, st, embedder) @ ka.CANDIDATE_COEF
                            + ka.CANDIDATE_BIAS)
        texts = [ka.read_text(cands[i]) for i in np.argsort(-probs, kind="stable")[:ka.READ_TOP]]
        seen = done.setdefault(r["question"], {})
        todo = [t for t in texts if t not in seen]
        if todo:
            seen.update(zip(todo, ka.reading(llm, r["question"], todo).tolist()))
        if n % 50 == 0:
            print("read", n, flush=True)
            reading_cache().write_text(json.dumps(done))
    reading_cache().write_text(json.dumps(done))


def cached_reader():
    """keyanswer's reader from --read's cache. A candidate the cache lacks (the ranker's best
    READ_TOP change with the code: finding 41's key-span rules did) stops the run with the way out."""
    done = json.loads(reading_cache().read_text())

    def read(question, texts):
        missing = [t for t in texts if t not in done.get(question, {})]
        if missing:
            raise SystemExit(f"{reading_cache()} has no reading of {missing[0]!r} for {question!r}: the candidates "
                             "changed since --read ran; run --read again (it reads only what is missing)")
        return [done[question][t] for t in texts]

    return read


def fit(rows, embedder, gate: float, drop: tuple[str, ...] = (), reader=None) -> dict:
    """Fit the candidate ranker and the two question-level models of retrieval/keyanswer.py on the
    tuning rows; choose key_answered and key_not_found on out-of-fold predictions (5 folds by
    question). Prints the coefficients to paste into keyanswer.py and the tuning metrics.
    drop: question features held at zero (an ablation: their coefficients come out 0).
    reader: fit the *_READ_* models instead (keyanswer.key_answer with a reader): the committed
    ranker is kept, READ_WEIGHT is the one of READ_WEIGHTS whose quote holds the gold most often on
    the answerable tuning questions (the smaller on a tie), then the question-level models are fitted."""
    import numpy as np

    from archivist.retrieval import keyanswer as ka
    from archivist.retrieval.quote import candidates

    own = [r for r in rows if r["asked_of"] == r["corpus"]]
    # a generated unanswerable question is one whose gold the other corpus's passages do not hold
    cross = [r for r in rows if _generated_unanswerable(r)]
    stats = {id(r): _stats(r) for r in rows}
    names = ka.QUESTION_FEATURES + (ka.READ_FEATURES if reader else ())
    if reader:
        answerable = [r for r in own if r["answers"] and r["passages"]]

        def gold_in_quote(weight: float) -> float:
            ka.READ_WEIGHT = weight
            ks = [ka.key_answer(r["question"], _hits(r), embedder, stats[id(r)], r["answerability"], reader=reader)
                  for r in answerable]
            return sum(bool(k) and _right(r, k.text) for r, k in zip(answerable, ks)) / len(answerable)

        grid = {w: gold_in_quote(w) for w in READ_WEIGHTS}
        print("READ_WEIGHT: the quote holds the gold", {w: round(v, 3) for w, v in grid.items()})
        ka.READ_WEIGHT = max(grid, key=lambda w: (grid[w], -w))
    else:
        # 1. the candidate ranker, on answerable own-corpus questions
        xs, ys = [], []
        for r in own:
            if not r["answers"]:
                continue
            hits = _hits(r)
            cands = candidates(hits)
            if not cands:
                continue
            xs.append(ka.candidate_features(r["question"], cands, hits, stats[id(r)], embedder))
            ys += [_right(r, c[1]) for c in cands]
        x, y = np.vstack(xs), np.array(ys)
        ka.CANDIDATE_COEF, ka.CANDIDATE_BIAS = _fit(x, y)
        print("candidates:", len(y), "positive:", int(y.sum()))
    # 2. the question-level features with that ranker
    table = []
    for r in own + cross:
        hits = _hits(r)
        k = ka.key_answer(r["question"], hits, embedder, stats[id(r)], r["answerability"], reader=reader) if hits else None
        feats = [k.features[f] for f in names] if k else None
        table.append({"r": r, "k": k, "x": feats, "own": r["asked_of"] == r["corpus"],
                      "answerable": r["asked_of"] == r["corpus"] and bool(r["answers"]),
                      "right": bool(k) and r["asked_of"] == r["corpus"] and _right(r, k.text),
                      "gated": r["answerability"] < gate})
    live = [t for t in table if t["x"] is not None]
    X = np.array([t["x"] for t in live])
    for f in drop:
        X[:, names.index(f)] = 0.0
    folds = np.array(_folds([t["r"] for t in live]))
    oof_right, oof_ans = np.zeros(len(live)), np.zeros(len(live))
    own_mask = np.array([t["own"] for t in live])
    y_right = np.array([t["right"] for t in live])
    y_ans = np.array([t["answerable"] for t in live])
    for f in range(5):
        tr, te = folds != f, folds == f
        c, b = _fit(X[tr & own_mask], y_right[tr & own_mask])
        oof_right[te] = 1 / (1 + np.exp(-(X[te] @ c + b)))
        c, b = _fit(X[tr], y_ans[tr])
        oof_ans[te] = 1 / (1 + np.exp(-(X[te] @ c + b)))
    right, ans = _fit(X[own_mask], y_right[own_mask]), _fit(X, y_ans)
    if reader:
        (ka.RIGHT_READ_COEF, ka.RIGHT_READ_BIAS), (ka.ANSWERABLE_READ_COEF, ka.ANSWERABLE_READ_BIAS) = right, ans
    else:
        (ka.RIGHT_COEF, ka.RIGHT_BIAS), (ka.ANSWERABLE_COEF, ka.ANSWERABLE_BIAS) = right, ans
    for t, pr, pa in zip(live, oof_right, oof_ans):
        t["p_right"], t["p_ans"] = float(pr), float(pa)
    for t in table:
        t.setdefault("p_right", 0.0)
        t.setdefault("p_ans", 0.0)
    ownt = [t for t in table if t["own"]]
    # Thresholds hold on EVERY corpus, not on the pool: the targets are per held-out split, and a
    # pooled 4% let git's tuning split reach 4.7% confident misses (7.1% on its held-out split).
    corpora = sorted({t["r"]["corpus"] for t in ownt})

    def worst(rate) -> float:
        return max(rate([t for t in ownt if t["r"]["corpus"] == c]) for c in corpora)

    def not_found_rate(rows, c):
        n = max(1, sum(t["answerable"] for t in rows))
        return sum(t["answerable"] and (t["gated"] or t["p_ans"] < c) for t in rows) / n

    cuts = sorted({round(t["p_ans"], 4) for t in ownt if t["answerable"] and not t["gated"]})
    not_found = max((c for c in cuts if worst(lambda rows: not_found_rate(rows, c)) <= TARGET_MISS), default=0.0)
    shown = [t for t in ownt if not t["gated"] and t["p_ans"] >= not_found and t["k"]]

    def miss_rate(rows, c):
        n = max(1, sum(t["answerable"] for t in rows))
        return sum(t in shown_ids and t["answerable"] and not t["right"] and _status(t, c, not_found) == "answered"
                   for t in rows) / n

    shown_ids = _Ids(shown)
    cuts = sorted({round(t["p_right"], 4) for t in shown})
    answered = next((c for c in cuts if worst(lambda rows: miss_rate(rows, c)) <= TARGET_MISS), 1.0)
    out = {"key_answered": answered, "key_not_found": not_found, **tuning_metrics(ownt, answered, not_found),
           "per_question": [{"corpus": t["r"]["corpus"], "question": t["r"]["question"], "answerable": t["answerable"],
                             "right": t["right"], "status": _status(t, answered, not_found), "gated": t["gated"],
                             "p_right": t["p_right"], "p_answerable": t["p_ans"],
                             "top_quote": t["k"].features["top_quote"] if t["k"] else 0.0} for t in ownt],
           "without the quote rule": tuning_metrics(ownt, answered, not_found, float("inf")),
           **{f"quote rule at {q}": tuning_metrics(ownt, answered, not_found, q) for q in (0.9, 0.95, 1.0, 1.05)}}
    by = {}
    for corpus in CORPORA:
        by[corpus] = tuning_metrics([t for t in ownt if t["r"]["corpus"] == corpus], answered, not_found)
    out["by_corpus"] = by
    # for comparison: the thresholds held on the pool of corpora, as chosen before
    pooled_nf = max((c for c in sorted({round(t["p_ans"], 4) for t in ownt if t["answerable"] and not t["gated"]})
                     if not_found_rate(ownt, c) <= TARGET_MISS), default=0.0)
    pooled_shown = [t for t in ownt if not t["gated"] and t["p_ans"] >= pooled_nf and t["k"]]
    shown_ids = _Ids(pooled_shown)
    pooled_ans = next((c for c in sorted({round(t["p_right"], 4) for t in pooled_shown})
                       if miss_rate(ownt, c) <= TARGET_MISS), 1.0)
    out["pooled thresholds"] = {"key_answered": pooled_ans, "key_not_found": pooled_nf, **{
        c: tuning_metrics([t for t in ownt if t["r"]["corpus"] == c], pooled_ans, pooled_nf) for c in CORPORA}}
    una_cross = [t for t in table if not t["own"]]
    out["generated_unanswerable_not_found"] = round(
        sum(t["gated"] or t["p_ans"] < not_found for t in una_cross) / max(1, len(una_cross)), 3)
    np.set_printoptions(precision=4, suppress=True)
    if reader:
        print("READ_WEIGHT =", ka.READ_WEIGHT)
        print("RIGHT_READ_COEF =", repr(np.round(ka.RIGHT_READ_COEF, 4)), "BIAS", round(ka.RIGHT_READ_BIAS, 4))
        print("ANSWERABLE_READ_COEF =", repr(np.round(ka.ANSWERABLE_READ_COEF, 4)), "BIAS",
              round(ka.ANSWERABLE_READ_BIAS, 4))
        return out
    print("CANDIDATE_COEF =", repr(np.round(ka.CANDIDATE_COEF, 4)), "BIAS", round(ka.CANDIDATE_BIAS, 4))
    print("RIGHT_COEF =", repr(np.round(ka.RIGHT_COEF, 4)), "BIAS", round(ka.RIGHT_BIAS, 4))
    print("ANSWERABLE_COEF =", repr(np.round(ka.ANSWERABLE_COEF, 4)), "BIAS", round(ka.ANSWERABLE_BIAS, 4))
    return out


def pointwise(make):
    """A `fit_` for `gold_in_best_oof`: the classifier `make()` fitted on the training questions'
    candidates (each holding the gold or not), scoring candidates by its probability."""
    import numpy as np

    def fit_(train):
        m = make().fit(np.vstack([q["x"] for q in train]), np.concatenate([q["y"] for q in train]))
        return lambda x: m.predict_proba(x)[:, 1]
    return fit_


def gold_in_best_oof(qs, folds, fit_):
    """Out of fold, per question (a dict with "x", its candidates' features, and "y", whether each
    holds the gold): whether the best candidate by `fit_(the other folds' questions)` holds the gold."""
    import numpy as np

    top = np.zeros(len(qs))
    for f in range(5):
        score = fit_([q for q, g in zip(qs, folds) if g != f])
        for i in np.flatnonzero(folds == f):
            top[i] = qs[i]["y"][int(np.argmax(score(qs[i]["x"])))]
    return top


def compare_models(rows, embedder, reader=None) -> dict:
    """--models: whether another kind of model would use keyanswer.py's features better (tuning split
    only, out of fold, 5 folds by question). The candidate ranker: how often the best-ranked candidate
    holds the gold, for the committed logistic form, a listwise (softmax over a question's candidates)
    linear model and gradient-boosted trees. P(right): the AUC of right against wrong quotes among the
    answerable questions it decides on, logistic against trees, with and without the chosen
    candidate's own CANDIDATE_FEATURES beside the question's. Nothing is fitted into the code."""
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from archivist.retrieval import keyanswer as ka
    from archivist.retrieval.quote import candidates

    own = [r for r in rows if r["asked_of"] == r["corpus"] and r["answers"] and r["passages"]]
    qs = []
    for r in own:
        hits = _hits(r)
        cands = candidates(hits)
        st = _stats(r)
        k = ka.key_answer(r["question"], hits, embedder, st, r["answerability"], reader=reader) if cands else None
        if not k:
            continue
        x = ka.candidate_features(r["question"], cands, hits, st, embedder)
        first = next(i for i, c in enumerate(cands) if (c[0], c[1]) == k.picked[0])
        names = ka.QUESTION_FEATURES + (ka.READ_FEATURES if "read" in k.features else ())
        qs.append({"r": r, "x": x, "y": np.array([_right(r, c[1]) for c in cands]), "right": _right(r, k.text),
                   "q": np.array([k.features[f] for f in names]), "cx": x[first]})
    folds = np.array(_folds([q["r"] for q in qs]))

    def trees():
        return HistGradientBoostingClassifier(max_iter=150, learning_rate=0.05, max_depth=3, min_samples_leaf=40,
                                              random_state=0)

    def listwise(train, steps: int = 300, rate: float = 0.1, l2: float = 0.01):
        allx = np.vstack([q["x"] for q in train])
        mu, sd = allx.mean(0), allx.std(0) + 1e-6
        data = [((q["x"] - mu) / sd, q["y"] / q["y"].sum()) for q in train if q["y"].any()]
        w = np.zeros(len(mu))
        for _ in range(steps):
            grad = np.zeros_like(w)
            for x, target in data:
                p = np.exp(x @ w - (x @ w).max())
                grad += x.T @ (p / p.sum() - target)
            w -= rate * (grad / len(data) + l2 * w)
        return lambda x: ((x - mu) / sd) @ w

    out: dict = {"questions": len(qs), "gold_in_any_candidate": round(float(np.mean([q["y"].any() for q in qs])), 3)}
    for name, fit_ in (("logistic (committed form)", pointwise(lambda: LogisticRegression(max_iter=3000))),
                       ("listwise linear", listwise), ("gradient-boosted trees", pointwise(trees))):
        out[f"ranker {name}: gold in the best candidate"] = round(float(gold_in_best_oof(qs, folds, fit_).mean()), 3)
    y = np.array([q["right"] for q in qs])
    for feats in ("question", "question + chosen candidate"):
        X = np.array([np.concatenate([q["q"], q["cx"]]) if "candidate" in feats else q["q"] for q in qs])
        for name, make in (("logistic", lambda: LogisticRegression(max_iter=3000)), ("trees", trees)):
            p = np.zeros(len(qs))
            for f in range(5):
                p[folds == f] = make().fit(X[folds != f], y[folds != f]).predict_proba(X[folds == f])[:, 1]
            out[f"P(right) {name}, {feats} features: AUC"] = round(float(roc_auc_score(y, p)), 3)
    return out


class _Ids:
    """Membership by identity for the dict rows of `fit` (dicts are not hashable)."""

    def __init__(self, rows):
        self.ids = {id(r) for r in rows}

    def __contains__(self, row) -> bool:
        return id(row) in self.ids


def _status(t, answered: float, not_found: float, quote_answered: float = QUOTE_ANSWERED) -> str:
    """A tuning row's out-of-fold status (see fit), by the rule `settle` shows answers by."""
    from archivist.retrieval import keyanswer as ka
    from archivist.retrieval.verify import asks_yes_no

    if t["gated"] or not t["k"]:
        return "not_found"
    return ka.key_status(t["p_ans"], t["p_right"], t["k"].features["top_quote"], not_found=not_found, answered=answered,
                         quote_answered=quote_answered, yes_no=asks_yes_no(t["r"]["question"]))


def tuning_metrics(table, answered: float, not_found: float, quote_answered: float = QUOTE_ANSWERED) -> dict:
    """Out-of-fold metrics of the fitted models on tuning rows (see fit)."""
    ans = [t for t in table if t["answerable"]]
    una = [t for t in table if not t["answerable"]]

    def status(t):
        return _status(t, answered, not_found, quote_answered)

    n = max(1, len(ans))
    return {"answerable": len(ans), "unanswerable": len(una),
            "key_accuracy": round(sum(status(t) == "answered" and t["right"] for t in ans) / n, 3),
            "confident_miss": round(sum(status(t) == "answered" and not t["right"] for t in ans) / n, 3),
            "uncertain": round(sum(status(t) == "uncertain" for t in ans) / n, 3),
            "not_found": round(sum(status(t) == "not_found" for t in ans) / n, 3),
            "gold_in_quote": round(sum(t["right"] for t in ans) / n, 3),
            "unanswerable_not_found": round(sum(status(t) == "not_found" for t in una) / max(1, len(una)), 3)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--collect", action="store_true")
    ap.add_argument("--corpus", default=",".join(CORPORA), help="the workspaces --collect asks the questions of")
    ap.add_argument("--set", action="append", default=[], help="weight=value (repeatable)")
    ap.add_argument("--grid", action="store_true", help="search the weights on a small grid (tuning split only)")
    ap.add_argument("--embed", help="embed the candidates --fit needs of the questions asked of this corpus")
    ap.add_argument("--fit", action="store_true", help="fit retrieval/keyanswer.py's models (tuning split only)")
    ap.add_argument("--read", action="store_true", help="cache the chat model's reading of the rows --fit uses")
    ap.add_argument("--read-model", help="--read, --reader: this model reads instead of the chat model (a catalog name)")
    ap.add_argument("--read-top", type=int, help="--read, --reader: read this many candidates (keyanswer.READ_TOP)")
    ap.add_argument("--read-heading", action="store_true", help="--read, --reader: read candidates under their heading path")
    ap.add_argument("--reader", action="store_true", help="--fit the models used with a reader (keyanswer *_READ_*)")
    ap.add_argument("--models", action="store_true", help="compare other model kinds on keyanswer's features (tuning)")
    ap.add_argument("--drop", default="", help="question features to leave out of --fit (comma-separated)")
    ap.add_argument("--gate", type=float, default=None, help="the answerability gate (default: Settings.min_relevance)")
    ap.add_argument("--against", help="also score this file's quote module (e.g. the committed version) for comparison")
    args = ap.parse_args(argv)
    global READ_MODEL, READ_TOP
    READ_MODEL, READ_TOP = args.read_model, args.read_top
    from archivist.retrieval import keyanswer

    keyanswer.READ_TOP = args.read_top or keyanswer.READ_TOP
    keyanswer.READ_HEADING = args.read_heading or keyanswer.READ_HEADING
    if args.collect:
        collect(args.corpus.split(","))
        if not args.fit:
            return 0
    from archivist.models import embedder_for
    from archivist.settings import Settings

    rows = load()
    emb = CachedEmbedder(embedder_for(Settings.from_env()))
    weights = {k: float(v) for k, v in (s.split("=") for s in args.set)}
    if args.embed:
        embed_all(rows, emb, args.embed)
        return 0
    if args.read:
        read_all(rows, emb)
        emb.save("read")
        if not args.fit:
            return 0
    if args.models:
        print(json.dumps(compare_models(rows, emb, cached_reader() if args.reader else None), indent=1))
        return 0
    if args.fit:
        gate = args.gate if args.gate is not None else Settings.from_env().min_relevance
        result = fit(rows, emb, gate, tuple(f for f in args.drop.split(",") if f),
                     cached_reader() if args.reader else None)
        emb.save()
        per = result.pop("per_question")
        (RESULTS / f"tune-quote-fit{'-reader' + read_variant() if args.reader else ''}.json").write_text(json.dumps(per))
        print(json.dumps(result, indent=1))
        return 0
    if args.grid:
        import itertools

        grid = {"cosine": [0.5, 1.0], "overlap": [0.25, 0.5, 1.0], "heading": [0.0, 0.3], "kind": [0.1, 0.25, 0.5],
                "rank": [0.05, 0.15, 0.3]}
        results = []
        for combo in itertools.product(*grid.values()):
            w = dict(zip(grid, combo))
            m = evaluate(rows, emb, None, **w)
            results.append((m["gold_in_quote"], m["key_accuracy_at_4pct_miss"], w))
            print(m, w, flush=True)
        results.sort(key=lambda x: (-x[0], -x[1]))
        print("best:", results[:5])
        return 0
    modules = {"current": None}
    if args.against:
        import importlib.util

        spec = importlib.util.spec_from_file_location("quote_against", args.against)
        modules["against"] = sys.modules["quote_against"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(modules["against"])
    for label, module in modules.items():
        for corpus in sorted({r["corpus"] for r in rows}):
            print(label, corpus, evaluate([r for r in rows if r["corpus"] == corpus], emb, module, **weights), flush=True)
        print(label, "all", evaluate(rows, emb, module, **weights), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

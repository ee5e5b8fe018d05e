"""Document expansion ("doc2query") in the lexical index, scored on the TUNING splits (issue 19).

    python bench/expand.py [--corpus git,handbook,python,valgrind] [--variant all3,new3,recipe1] [--split tuning]
    python bench/expand.py --split heldout --variant <the one chosen>   # once, after a choice on the tuning splits

Paraphrased questions miss the page that answers them because they share few of its words (findings
37, 39, 41). doc2query adds to each chunk's index entry the questions a generator writes from the
chunk itself, so a chunk is also found by the words people ask with. Here the generators are the
project's own, no LLM (too slow on a 2-core CPU): finetune/qa.py's extractive fact questions, and the
retriever recipe's `question_for` (a fact question, else a sentence of the chunk: what `archivist
finetune --target retriever` trains on). Only the documents are read, so it is as legitimate on a
held-out corpus as on a tuning one. Variants (`VARIANTS`):

  all3     up to 3 extractive questions per chunk, all their words, weight 1 (classic doc2query:
           the questions appended to the chunk)
  new3     the same questions, only their words whose stem the chunk lacks (stop words left out:
           a query never searches them), weight 0.5
  recipe1  the retriever recipe's one question per chunk (`question_for`, seeded), all words, weight 1

The expansion goes into the LEXICAL index only, as a BM25F field of its own: the index's title slot
(`Fields.title`, 0 and so unused by default), which `Index.with_chunks` weighs and counts in the
chunk's length like any field; the copy's settings carry the same weight, so search takes the
index as current. The dense side is the workspace's own FAISS index, never re-embedded.

Per corpus a copy of bench/data/ws/public-<corpus> is made under --work (bench/data is never
written); the served default is scored first on it, then each variant's index is saved into the copy
and the same questions asked again through `evaluate_retrieval` (the real `search` path), lexical and
hybrid. Differences from the default: `evaluation.paired_difference` (10,000 resamples, 95%), by
question and, in the JSON, by gold document (`common.by_document`, a cluster bootstrap). Rule fixed beforehand: a variant
is kept only if the pooled hybrid MRR@10 interval is above zero and no corpus's hybrid hit@5
interval is below zero.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import answers  # noqa: E402
from common import DATA, by_document, log, md_table, open_ws  # noqa: E402

# name -> (generator, questions per chunk, words: "all" | "new", weight of the expansion field)
VARIANTS = {
    "all3": ("extractive", 3, "all", 1.0),
    "new3": ("extractive", 3, "new", 0.5),
    "recipe1": ("recipe", 1, "all", 1.0),
}
METRICS = ("hit@1", "hit@5", "hit@10", "mrr@10")
MODES = ("lexical", "hybrid")
_WORD = re.compile(r"[^\W_]+")  # lexicon's unicode61 word


def questions_of(text: str, generator: str, n: int, rng: random.Random) -> list[str]:
    """The synthetic questions a chunk's text gives: finetune/qa.py's extractive ones (up to `n`), or
    the retriever recipe's one (`question_for`, extractive or sentence)."""
    if generator == "extractive":
        from archivist.finetune.qa import extractive_pairs

        return [qa.question for qa in extractive_pairs(text, max_pairs=n)]
    from archivist.finetune.retriever import QUESTION_KINDS, question_for

    found = question_for(text, QUESTION_KINDS, rng)
    return [found[0]] if found else []


def expansion(text: str, heading: str, generator: str, n: int, words: str, rng: random.Random) -> str:
    """What is indexed beside a chunk: its questions as written ("all"), or only their words whose
    stem neither its text nor its heading holds, stop words left out ("new")."""
    asked = questions_of(text, generator, n, rng)
    if words == "all":
        return "\n".join(asked)
    from archivist.retrieval import lexicon
    from archivist.retrieval.query import STOPWORDS

    have = set(lexicon.tokens(f"{heading}\n{text}"))
    return " ".join(w for q in asked for w in _WORD.findall(q.lower()) if w not in STOPWORDS and lexicon.stem(w) not in have)


def expanded_index(ws, variant: str):
    """The workspace's lexical index with each chunk's expansion in the title field, weighted as the
    variant says; and how many chunks got one."""
    from dataclasses import replace

    from archivist.retrieval.lexicon import Index, fields_of

    generator, n, words, weight = VARIANTS[variant]
    rng = random.Random(0)  # the recipe's seed
    rows = ws.db.execute("SELECT c.id, c.document_id, d.collection_id, c.text, c.heading FROM chunks c "
                         "JOIN documents d ON d.id = c.document_id ORDER BY c.id").fetchall()
    rows = [(*r, expansion(r[3] or "", r[4] or "", generator, n, words, rng)) for r in rows]
    fields = replace(fields_of(ws), title=weight)
    return Index.empty(fields).with_chunks(rows), sum(bool(r[5]) for r in rows)


def scored(ws, qs, embedder) -> dict[str, list[dict]]:
    """mode -> per question {metric: value}, as `evaluate_retrieval` scores the served search."""
    from archivist.retrieval.evaluate import evaluate_retrieval

    r = evaluate_retrieval(ws, qs, modes=list(MODES), k=10, embedder=embedder)
    return {mode: [{m: row[mode][m] for m in METRICS} for row in r["per_query"]] for mode in MODES}


def run_corpus(name: str, split: str, variants: list[str], work: Path) -> dict | None:
    """{"pages": gold pages per question, "default"/variant: `scored`, "expanded": chunks expanded};
    None when the split has no question with a relevant page (Valgrind's tuning split)."""
    from archivist.models import embedder_for
    from archivist.retrieval import lexicon_store
    from archivist.retrieval.evaluate import QueryCache

    qs = [q for q in answers.questions(name, split) if q.relevant]
    if not qs:
        log(f"{name}: no {split} question with a relevant page; skipped")
        return None
    source = DATA / "ws" / f"public-{name}"
    if not (source / "ingested").exists():
        answers.workspace(name).close()
    home = work / f"expand-{name}"
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(source, home)
    out = {"pages": [list(q.relevant) for q in qs], "expanded": {}}
    ws = open_ws(home)
    embedder = QueryCache(embedder_for(ws.settings))  # each question embedded once, for every index and mode
    out["default"] = scored(ws, qs, embedder)
    ws.close()
    for variant in variants:
        ws = open_ws(home, lexical_title_weight=VARIANTS[variant][3])
        index, n = expanded_index(ws, variant)
        saved = lexicon_store._save(ws, index)  # the bench's own copy; search then loads it as current
        out["expanded"][variant] = n
        out[variant] = scored(ws, qs, embedder)
        if lexicon_store.current(ws) is not saved:  # rebuilt from SQLite meanwhile: the variant was not searched
            raise RuntimeError(f"{home}: the expanded lexical index was replaced during the run")
        ws.close()
        before, after = (np.mean([r["mrr@10"] for r in out[k]["hybrid"]]) for k in ("default", variant))
        log(f"{name} {variant}: {n} of {len(index.ids)} chunks expanded; hybrid MRR@10 {before:.4f} -> {after:.4f}")
    return out


def compare(results: dict, variant: str, mode: str, corpora: list[str]) -> dict:
    """metric -> {"default", "variant", "diff", "low", "high", "better", "worse", "by_document": [low, high],
    "documents": how many gold documents that drew} over the questions of `corpora` pooled."""
    from archivist.retrieval.evaluation import paired_difference

    out = {}
    for m in METRICS:
        a = [r[m] for c in corpora for r in results[c][variant][mode]]
        b = [r[m] for c in corpora for r in results[c]["default"][mode]]
        pages = [[f"{c}/{p}" for p in ps] for c in corpora for ps in results[c]["pages"]]
        d = paired_difference(a, b)
        g = by_document(a, b, pages)
        out[m] = {"default": float(np.mean(b)), "variant": float(np.mean(a)), **d, "by_document": [g["low"], g["high"]],
                  "documents": g.get("groups")}
    return out


def kept(table: dict, corpora: list[str]) -> bool:
    """The rule fixed beforehand: pooled hybrid MRR@10 interval above zero, no corpus's hybrid hit@5
    interval below zero."""
    return table["pooled"]["hybrid"]["mrr@10"]["low"] > 0 and all(table[c]["hybrid"]["hit@5"]["high"] >= 0 for c in corpora)


def tables(table: dict, results: dict, variants: list[str]) -> str:
    """The markdown the run prints: the metrics of the default and each variant, pooled and per corpus;
    each variant's differences with their intervals; the rule's verdict."""
    corpora = list(results)
    rows, diffs = [], []
    for scope in ["pooled", *corpora]:
        n = sum(len(results[c]["pages"]) for c in (corpora if scope == "pooled" else [scope]))
        for mode in MODES:
            base = table[variants[0]][scope][mode]
            rows.append([scope, n, mode, "default", *(f"{base[m]['default']:.4f}" for m in METRICS)])
            for v in variants:
                t = table[v][scope][mode]
                rows.append([scope, n, mode, v, *(f"{t[m]['variant']:.4f}" for m in METRICS)])
                diffs.append([scope, mode, v, *(f"{t[m]['diff']:+.4f} [{t[m]['low']:+.4f}, {t[m]['high']:+.4f}]"
                                                for m in METRICS)])
    return "\n".join([md_table(["corpus", "questions", "mode", "index", "hit@1", "hit@5", "hit@10", "MRR@10"], rows), "",
                      "Variant - default, paired bootstrap by question (95%):", "",
                      md_table(["corpus", "mode", "variant", "hit@1", "hit@5", "hit@10", "MRR@10"], diffs), "",
                      "Kept by the rule: " + ", ".join(f"{v} {'yes' if kept(table[v], corpora) else 'no'}" for v in variants)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default=",".join(answers.FOLDERS),
                    help="public corpora, comma-separated (Valgrind's set is held out whole: skipped on tuning)")
    ap.add_argument("--variant", default=",".join(VARIANTS), help=f"comma-separated choice of {', '.join(VARIANTS)}")
    ap.add_argument("--split", default="tuning", choices=["tuning", "heldout"])
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "archivist-expand"),
                    help="folder for the workspace copies and the results (bench/data is never written)")
    args = ap.parse_args(argv)
    variants = args.variant.split(",")
    for v in variants:
        if v not in VARIANTS:
            raise SystemExit(f"--variant: unknown {v!r}; choose from {', '.join(VARIANTS)}")
    for name in args.corpus.split(","):
        if name not in answers.FOLDERS:
            raise SystemExit(f"--corpus: unknown {name!r}; choose from {', '.join(answers.FOLDERS)}")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in args.corpus.split(","):
        r = run_corpus(name, args.split, variants, work)
        if r is not None:
            results[name] = r
    corpora = list(results)
    if not corpora:
        raise SystemExit(f"no {args.split} questions in {args.corpus}")
    table = {v: {**{c: {mode: compare(results, v, mode, [c]) for mode in MODES} for c in corpora},
                 "pooled": {mode: compare(results, v, mode, corpora) for mode in MODES}} for v in variants}
    expanded = {v: {c: results[c]["expanded"][v] for c in corpora} for v in variants}
    body = f"Split {args.split}; chunks expanded per variant: {json.dumps(expanded)}.\n\n" + tables(table, results, variants)
    print(body)
    (work / f"expand-{args.split}.md").write_text(body + "\n")
    data = {"table": table, "expanded": expanded, "results": results}
    (work / f"expand-{args.split}.json").write_text(json.dumps(data, indent=1))
    log(f"written {work / f'expand-{args.split}.md'} and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())

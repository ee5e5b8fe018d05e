"""Score key-span rules offline on the TUNING splits' stored answer rows (bench/answers.py --split tuning).

    python bench/answers.py --split tuning --mode extractive,auto-quote --no-retrieval   # rows with key_sentence
    python bench/key_span.py [--rows FILE ...]

A quote shown as the answer starts with its key span ("apt-mark auto — <sentence> [n]"), and key
accuracy reads that span (retrieval.evaluation.key_right). In extractive and auto-quote modes the span
decides nothing but what is shown first, so a span rule can be scored on the rows without asking
again: each row keeps the sentence and question its span was taken from (`key_sentence`). Per rule:

  key accuracy / confident misses   over answerable questions, the rows' statuses kept (answered
                                    and the span, or the text without one, names the gold)
  span right / wrong / none         over every row whose key sentence holds the gold, whatever its
                                    status: the span names it, names something else, or is empty

Held-out rows are refused: rules are chosen on the tuning splits only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS  # noqa: E402

ROWS = RESULTS / "answers-rows-git-handbook-python-tuning.json"


def served(sentence: str, question: str) -> str:
    from archivist.retrieval.keyanswer import key_span

    return key_span(sentence, question)


RULES = {"served": served}  # a rule to try: add it here, as served is, and pass --rules served,<name>


def score(rows: list[dict], rule) -> dict:
    from archivist.retrieval.evaluation import contains_answer

    ans = [r for r in rows if r["gold"] is not None]
    right = miss = held = span_right = span_wrong = span_none = 0
    for r in ans:
        golds = r.get("answers") or [r["gold"]]
        sentence = r.get("key_sentence")
        span = rule(*sentence) if sentence else ""
        if r["status"] == "answered":
            ok = any(contains_answer(g, span) for g in golds) if span else bool(r["contains_gold"])
            right, miss = right + ok, miss + (not ok)
        if sentence and any(contains_answer(g, sentence[0]) for g in golds):
            held += 1
            if not span:
                span_none += 1
            elif any(contains_answer(g, span) for g in golds):
                span_right += 1
            else:
                span_wrong += 1
    n = max(1, len(ans))
    return {"answerable": len(ans), "key_accuracy": right / n, "confident_miss": miss / n, "held": held,
            "span_right": span_right, "span_wrong": span_wrong, "span_none": span_none}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", nargs="*", default=[str(ROWS)])
    ap.add_argument("--rules", default=",".join(RULES))
    ap.add_argument("--show", default="", help="print the rows where this rule's span differs from served's")
    args = ap.parse_args(argv)
    runs = {}
    for path in args.rows:
        for key, rows in json.loads(Path(path).read_text()).items():
            if "/heldout/" in key or any(r.get("split") == "heldout" for r in rows):
                raise SystemExit(f"{path}: {key} holds held-out rows; rules are chosen on the tuning splits only")
            runs[key] = rows
    for key, rows in runs.items():
        for name in args.rules.split(","):
            m = score(rows, RULES[name])
            print(f"{key:32} {name:10} key acc {m['key_accuracy']:.3f}  miss {m['confident_miss']:.3f}  | span of "
                  f"{m['held']} gold sentences: right {m['span_right']}, wrong {m['span_wrong']}, none {m['span_none']}")
        if args.show:
            for r in rows:
                if r.get("key_sentence") and r["gold"] is not None:
                    a, b = served(*r["key_sentence"]), RULES[args.show](*r["key_sentence"])
                    if a != b:
                        print(f"   {r['status']:9} gold {r['gold']!r}: {a!r} -> {b!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

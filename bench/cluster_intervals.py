"""Paired intervals of stored answers rows drawn by document as well as by question.

    python bench/cluster_intervals.py [--rows FILE ...] [--a auto-quote] [--b extractive]

Findings 20-46 of bench/RESULTS.md drew their paired bootstrap intervals question by question, but
several questions of a public set ask about the same page and rise and fall together, so those
intervals are too narrow. Of the changes those findings kept, only finding 32's (auto mode's quote
read by the chat model, judged as auto-quote against extractive on the same questions) has
per-question rows still stored: the answers rows of bench/answers.py (bench/data/results/
answers-rows-*.json). For each rows file, each corpus and split holding both modes, and the
corpora pooled per split, this prints mode a − mode b by question (`paired_difference`) and by
document (common.by_document: the question's gold pages from its evalset line), for key accuracy,
confident misses and gold in quote over answerable questions, and not found over unanswerable ones
(each such question is a document of its own, so its two intervals agree). Nothing is rerun: the
rows are read as stored, scored as bench/answers.py scores them (`names_gold`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import EVALSETS, RESULTS, by_document, md_table, names_gold, save_result  # noqa: E402

ROWS = ("answers-rows-git-handbook-python-both.json", "answers-rows-git-handbook-python-valgrind-heldout.json")
METRICS = {  # metric: (which questions, the per-question score)
    "key accuracy": (True, lambda r: r["status"] == "answered" and names_gold(r)),
    "confident misses": (True, lambda r: r["status"] == "answered" and not names_gold(r)),
    "gold in quote": (True, lambda r: bool(r["contains_gold"])),
    "unanswerable not found": (False, lambda r: r["status"] == "not_found"),
}


def gold_pages(corpus: str) -> dict[str, list[str]]:
    """{question id: its gold pages, each prefixed with the corpus} from the corpus's evalset."""
    lines = (EVALSETS / f"{corpus}.jsonl").read_text(encoding="utf-8").splitlines()
    return {q["id"]: [f"{corpus}/{p}" for p in q.get("relevant") or []]
            for q in map(json.loads, filter(str.strip, lines))}


def pairs(rows: dict, a: str, b: str) -> dict[tuple[str, str], list[tuple[dict, dict]]]:
    """{(corpus, split): [(row of mode a, row of mode b)]} for every corpus and split of a rows file
    (keys "corpus/split/mode") run in both modes. Raises ValueError naming the key whose two modes
    asked different questions."""
    out = {}
    for key, rows_a in rows.items():
        corpus, split, mode = (key.split("/") + [""])[:3]
        if mode != a or key.count("/") != 2 or f"{corpus}/{split}/{b}" not in rows:
            continue
        rows_b = rows[f"{corpus}/{split}/{b}"]
        if [r["id"] for r in rows_a] != [r["id"] for r in rows_b]:
            raise ValueError(f"{key} and {corpus}/{split}/{b} hold different questions")
        out[(corpus, split)] = list(zip(rows_a, rows_b))
    return out


def intervals(paired: list[tuple[dict, dict]], pages: list[list[str]]) -> dict[str, dict]:
    """{metric: {"by question", "by document"}} of mode a − mode b over the questions each metric counts."""
    from archivist.retrieval.evaluation import paired_difference

    out = {}
    for metric, (answerable, score) in METRICS.items():
        keep = [i for i, (ra, _) in enumerate(paired) if (ra["gold"] is not None) == answerable]
        if keep:
            a = [float(score(paired[i][0])) for i in keep]
            b = [float(score(paired[i][1])) for i in keep]
            out[metric] = {"by question": paired_difference(a, b), "by document": by_document(a, b, [pages[i] for i in keep])}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", nargs="+", default=list(ROWS), help="answers rows files under bench/data/results")
    ap.add_argument("--a", default="auto-quote", help="the mode with the change")
    ap.add_argument("--b", default="extractive", help="the mode without it")
    args = ap.parse_args(argv)

    table, data = [], {}
    for name in args.rows:
        path = RESULTS / name
        if not path.is_file():
            raise SystemExit(f"{path}: no such rows file (bench/answers.py writes them)")
        by_split: dict[str, list] = {}
        for (corpus, split), paired in pairs(json.loads(path.read_text()), args.a, args.b).items():
            golds = gold_pages(corpus)
            missing = [ra["id"] for ra, _ in paired if ra["id"] not in golds]
            if missing:
                raise SystemExit(f"{path}: questions {missing[:3]} are not in {EVALSETS / f'{corpus}.jsonl'}")
            pages = [golds[ra["id"]] for ra, _ in paired]
            groups = [(corpus, split)] + ([("pooled", split)] if corpus != "valgrind" else [])  # finding 32 pooled three
            for group in groups:
                by_split.setdefault(group, []).extend(zip(paired, pages))
        for (corpus, split), items in sorted(by_split.items()):
            found = intervals([p for p, _ in items], [g for _, g in items])
            data[f"{name}/{corpus}/{split}"] = found
            for metric, d in found.items():
                q, c = d["by question"], d["by document"]
                table.append([name.removeprefix("answers-rows-").removesuffix(".json"), corpus, split, metric,
                              f"{q['questions']} / {c['groups']}", f"{q['diff']:+.3f}",
                              f"[{q['low']:+.3f}, {q['high']:+.3f}]", f"[{c['low']:+.3f}, {c['high']:+.3f}]",
                              f"{q['better']} / {q['worse']}"])
    save_result("cluster-intervals", data)
    print(md_table(["rows", "corpus", "split", "metric", "questions / documents", f"{args.a} − {args.b}",
                    "by question [95%]", "by document [95%]", "better / worse"], table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

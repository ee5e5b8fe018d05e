"""Check the frozen public evaluation sets against the built corpora; prints counts. No retrieval.

    python bench/corpora.py --out bench/data/public --corpus all     # and --corpus valgrind
    python bench/evalsets/check_sets.py [--corpora bench/data/public] [--others] [git handbook python valgrind]

For every line of bench/evalsets/<set>.jsonl: the shape (id, question, relevant, answer, kind, split),
ids unique, split as expected_splits says (a third of each kind held out, chosen by sha256 of
the id), every relevant page present in the
built corpus, and every key answer (each spelling) found in at least one of its relevant pages
(case-insensitive, whitespace-normalized text of the page). --others also lists, for each answerable question, the other
pages whose text holds one of its key answers: a string search that helps the writer spot a question
another page answers too; it is not a retrieval run. Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import re
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
SETS = {"git": "git", "handbook": "debian-handbook", "python": "python", "valgrind": "valgrind"}  # set -> corpus folder
KINDS = {"keyword", "paraphrase", "detail", "unanswerable", "yesno"}
HELD_OUT_ONLY = {"valgrind"}  # a set measured once and never tuned on: every question is held out (VALGRIND.md)
KEYS = {"id", "question", "relevant", "answer", "kind", "split"}


def normalize(text: str) -> str:
    """Lower-cased text with every run of whitespace made one space (and typographic quotes made plain)."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    return " ".join(text.lower().split())


BLOCK_TAGS = re.compile(r"(?is)</?(?:p|div|section|li|ul|ol|dl|dt|dd|h[1-6]|br|hr|tr|td|th|table|pre|blockquote|title)\b[^>]*>")


def page_text(path: Path) -> str:
    """The visible text of one built HTML page, normalized: block elements end words, inline markup
    does not (Sphinx writes math.comb(n, k) as several spans)."""
    raw = path.read_text(encoding="utf-8")
    raw = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", raw)
    raw = BLOCK_TAGS.sub(" ", raw)
    raw = re.sub(r"(?s)<[^>]+>", "", raw)
    return normalize(html.unescape(raw).replace("\u00a0", " ").replace("\u00b6", " "))


def expected_splits(questions: list[dict], held_out_only: bool = False) -> dict[str, str]:
    """id -> "heldout" | "tuning": within each kind, the third of the ids (rounded) that come first
    in sha256(id) order is held out, so every kind is held out in proportion and the choice depends
    on nothing but the ids. held_out_only: every question is held out."""
    if held_out_only:
        return {q["id"]: "heldout" for q in questions if isinstance(q.get("id"), str)}
    out: dict[str, str] = {}
    for kind in sorted({q.get("kind") for q in questions}, key=str):
        ids = sorted((q["id"] for q in questions if q.get("kind") == kind and isinstance(q.get("id"), str)),
                     key=lambda i: hashlib.sha256(i.encode()).hexdigest())
        cut = round(len(ids) / 3)
        out.update({i: "heldout" if n < cut else "tuning" for n, i in enumerate(ids)})
    return out


def shape_errors(q: dict, splits: dict[str, str]) -> list[str]:
    """What is wrong with one question's fields (empty when nothing)."""
    errs = []
    if set(q) != KEYS:
        errs.append(f"keys {sorted(q)} != {sorted(KEYS)}")
        return errs
    if not isinstance(q["question"], str) or len(q["question"].split()) < 3:
        errs.append("question too short")
    if q["kind"] not in KINDS:
        errs.append(f"kind {q['kind']!r}")
    if q["split"] != splits.get(q["id"]):
        errs.append(f"split {q['split']!r}, the sha256 rule says {splits.get(q['id'])!r}")
    if q["kind"] == "unanswerable":
        if q["relevant"] != [] or q["answer"] is not None:
            errs.append("unanswerable needs relevant [] and answer null")
    elif q["kind"] == "yesno" and q["answer"] not in (["yes"], ["no"]):
        errs.append('yesno needs answer ["yes"] or ["no"]')
    else:
        if not (isinstance(q["relevant"], list) and q["relevant"] and all(isinstance(r, str) for r in q["relevant"])):
            errs.append("relevant must be a non-empty list of page names")
        if not (isinstance(q["answer"], list) and q["answer"] and all(isinstance(a, str) and a.strip() for a in q["answer"])):
            errs.append("answer must be a non-empty list of strings")
    return errs


def check(set_path: Path, folder: Path, others: bool = False) -> tuple[int, Counter]:
    """Check one set file against one built corpus folder; prints each problem and returns
    (number of problems, Counter of (kind, split))."""
    name = set_path.stem
    if not set_path.is_file():
        print(f"{name}: set file {set_path} missing", file=sys.stderr)
        return 1, Counter()
    if not folder.is_dir():
        print(f"{name}: corpus folder {folder} missing; build it with bench/corpora.py", file=sys.stderr)
        return 1, Counter()
    texts = {p.name: page_text(p) for p in sorted(folder.glob("*.html"))}
    try:
        lines = [json.loads(line) for line in set_path.read_text(encoding="utf-8").splitlines()]
    except json.JSONDecodeError as e:
        print(f"{set_path}: not JSON lines ({e})", file=sys.stderr)
        return 1, Counter()
    splits = expected_splits(lines, name in HELD_OUT_ONLY)
    errors, counts, ids, questions = 0, Counter(), set(), set()
    for n, q in enumerate(lines, 1):
        errs = shape_errors(q, splits)
        if not errs:
            if q["id"] in ids:
                errs.append("duplicate id")
            if normalize(q["question"]) in questions:
                errs.append("duplicate question")
            ids.add(q["id"])
            questions.add(normalize(q["question"]))
            missing = [r for r in q["relevant"] if r not in texts]
            if missing:
                errs.append(f"pages not in the corpus: {missing}")
            elif q["answer"] is not None and q["kind"] != "yesno":  # a yes/no answer is not a span of the page
                absent = [a for a in q["answer"] if not any(normalize(a) in texts[r] for r in q["relevant"])]
                if absent:
                    errs.append(f"key answer {absent} in none of {q['relevant']}")
                elif others:
                    elsewhere = sorted(p for p, t in texts.items() if p not in q["relevant"]
                                       and any(normalize(a) in t for a in q["answer"]))
                    if elsewhere:
                        print(f"  {q['id']} ({q['kind']}) answer also in {len(elsewhere)}: {elsewhere[:6]}")
        if errs:
            errors += len(errs)
            print(f"{name}.jsonl line {n} ({q.get('id')}): " + "; ".join(errs))
        counts[(q.get("kind"), q.get("split"))] += 1
    return errors, counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sets", nargs="*", help=f"which sets (default all): {' '.join(SETS)}")
    ap.add_argument("--corpora", type=Path, default=HERE.parent / "data" / "public")
    ap.add_argument("--others", action="store_true", help="list other pages that hold a key answer")
    args = ap.parse_args(argv)
    unknown = [s for s in args.sets if s not in SETS]
    if unknown:
        ap.error(f"unknown set {unknown}; choose from {list(SETS)}")
    total = 0
    for name in args.sets or list(SETS):
        errors, counts = check(HERE / f"{name}.jsonl", args.corpora / SETS[name], args.others)
        total += errors
        kinds = sorted({k for k, _ in counts})
        row = ", ".join(f"{k} {counts[(k, 'tuning')] + counts[(k, 'heldout')]} "
                        f"({counts[(k, 'heldout')]} held out)" for k in kinds)
        print(f"{name}: {sum(counts.values())} questions: {row}; {errors} problems")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())

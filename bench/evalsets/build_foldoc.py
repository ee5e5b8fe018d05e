"""Build "what is X" retrieval questions from FOLDOC entries (package dict-foldoc).

    python bench/evalsets/build_foldoc.py [--entries 300] [--out bench/evalsets/foldoc.jsonl]

Takes the first `--entries` FOLDOC entries in bench/corpus.py's fixed order (so every corpus made
with at least that many entries holds them) and writes one question per usable entry, alternating
two kinds:
  - "headword":   "What is <headword>?"
  - "definition": the entry's first sentence with its headword and aliases masked, asked as
                  "What is the term for <sentence>?" (a reverse-dictionary lookup: the asker knows
                  the idea, not the word).
The relevant document is the entry's own page, foldoc/<slug>.html. Deterministic: the same package
version gives the same file.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

if str(Path(__file__).resolve().parent.parent) not in sys.path:
    sys.path.append(str(Path(__file__).resolve().parent.parent))  # bench/, for corpus.py
from corpus import PACKAGES, ensure_packages, foldoc_entries, plain  # noqa: E402

_SENT_END = re.compile(r"(?<=[a-z0-9)\]])\.\s+(?=[A-Z(])")


def first_sentence(text: str) -> str:
    s = _SENT_END.split(plain(text), 1)[0].strip()
    s = re.sub(r"^\([^)]{1,40}\)\s*", "", s)  # a leading "(ISA)" names the entry
    return s.rstrip(".").strip()


def mask(sentence: str, names: list[str]) -> str:
    for name in sorted(names, key=len, reverse=True):
        if len(name) >= 2:
            sentence = re.sub(r"(?<!\w)" + re.escape(name) + r"(?!\w)", "this", sentence, flags=re.IGNORECASE)
    return sentence


def questions(n_entries: int) -> list[dict]:
    out = []
    for i, e in enumerate(foldoc_entries()[:n_entries]):
        kind = "definition" if i % 2 else "headword"
        rel = [f"{e.slug}.html"]
        if kind == "definition":
            s = mask(first_sentence(e.paragraphs[0]), [e.headword, *e.aliases])
            words = s.split()
            if 8 <= len(words) <= 40 and "this" != words[0].lower():
                body = s[0].lower() + s[1:] if not re.match(r"[A-Z]{2}", s) else s
                out.append({"question": f"What is the term for {body}?", "relevant": rel, "kind": kind,
                            "headword": e.headword})
                continue
            kind = "headword"
        out.append({"question": f"What is {e.headword}?", "relevant": rel, "kind": kind, "headword": e.headword})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="FOLDOC 'what is X' questions")
    ap.add_argument("--entries", type=int, default=300, help="use the first N entries of the fixed order")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "foldoc.jsonl")
    args = ap.parse_args(argv)
    ensure_packages([PACKAGES["foldoc"]])
    qs = questions(args.entries)
    with open(args.out, "w", encoding="utf-8") as f:
        for q in qs:
            f.write(json.dumps(q, ensure_ascii=False) + "\n")
    kinds = {k: sum(q["kind"] == k for q in qs) for k in ("headword", "definition")}
    print(f"{len(qs)} questions ({kinds}) -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Calibrate the claim check (retrieval/verify.py) on sentences generated from documents, never on
evaluation questions.

    python bench/calibrate_verify.py [FILES...]      # default: the sample documents in samples/

From every passage (the blocks under one heading) it makes claims with a known verdict:

    supported   a sentence of the passage, as is, and "paraphrased": up to a third of its ordinary
                content words replaced by other common English words
    invented    an identifier or rare word swapped for one of another passage
    number      a number changed
    negated     a negation added to, or taken from, the sentence
    wrong       a sentence of the passage checked against the most similar other passage

and reports, for each MIN_OVERLAP on a grid, the share of supported claims accepted and of each
kind of invention caught. The chosen value is the one with the best balanced accuracy; it is
written to bench/data/results/calibrate_verify.json and the table to the .md beside it.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, RESULTS  # noqa: E402

from archivist.retrieval import verify  # noqa: E402

COMMON = ("make take give keep show find help need work move send hold turn start place point part "
          "group system number case fact way time people thing").split()
GRID = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8]


def passages(files: list[Path]) -> list[str]:
    """The text under each heading of each file, as the readers extract it."""
    from archivist.ingest.readers import read

    out = []
    for f in files:
        groups: dict[tuple, list[str]] = {}
        for b in read(f).blocks:
            groups.setdefault(b.heading, []).append(b.text)
        out += ["\n".join(t) for t in groups.values() if len(" ".join(t).split()) >= 12]
    return out


def _sentences(text: str) -> list[str]:
    out = []
    for a, b in verify.sentences(text):
        s = " ".join(text[a:b].split())
        if len(s.split()) >= 5 and not s.startswith("|"):
            out.append(s)
    return out


def claims(ps: list[str], rng: random.Random) -> list[tuple[str, str, list[str]]]:
    """(kind, claim, [passage]) with the verdict known from how it was made."""
    terms = [t for p in ps for s in _sentences(p) for k, t in verify.asserted_terms(s) if k != "number"]
    out = []
    for i, p in enumerate(ps):
        others = [q for j, q in enumerate(ps) if j != i]
        nearest = max(others, key=lambda q: len(set(verify.content_stems(p)) & set(verify.content_stems(q))))
        for s in _sentences(p):
            out.append(("supported", s, [p]))
            words = s.split()
            plain = [j for j, w in enumerate(words) if w.isalpha() and w.islower() and len(w) > 3
                     and w not in verify.FUNCTION_WORDS and verify.zipf(w) >= verify.RARE_ZIPF]
            for j in rng.sample(plain, min(len(plain), max(1, len(words) // 8))):
                words[j] = rng.choice(COMMON)
            out.append(("supported", " ".join(words), [p]))
            own = [t for k, t in verify.asserted_terms(s) if k != "number"]
            foreign = [t for t in terms if t.lower() not in p.lower()]
            if own and foreign:
                out.append(("invented", s.replace(rng.choice(own), rng.choice(foreign), 1), [p]))
            nums = re.findall(r"(?<![\w.-])\d+", s)
            if nums:
                n = rng.choice(nums)
                out.append(("number", re.sub(rf"(?<![\w.-]){n}(?!\d)", str(int(n) + rng.randint(1, 9)), s, count=1), [p]))
            neg = re.sub(r"\b(is|are|can|does|do|must|will|should)\b", r"\1 not", s, count=1)
            if neg == s:
                neg = re.sub(r"\b(not|never) ", "", s, count=1)
            if neg != s:
                out.append(("negated", neg, [p]))
            if s.lower() not in nearest.lower():
                out.append(("wrong", s, [nearest]))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    files = args.files or sorted(p for p in (REPO / "samples").iterdir() if p.suffix not in (".jsonl",) and p.name != "README.md")
    rng = random.Random(args.seed)
    made = claims(passages(files), rng)
    kinds = sorted({k for k, _, _ in made})
    rows = []
    for t in GRID:
        ok = {k: [verify.check_sentence(c, ps, min_overlap=t)[0] for kk, c, ps in made if kk == k] for k in kinds}
        rate = {k: (sum(v) / len(v) if k == "supported" else 1 - sum(v) / len(v)) for k, v in ok.items()}
        caught = [rate[k] for k in kinds if k != "supported"]
        rows.append({"min_overlap": t, **{k: round(r, 3) for k, r in rate.items()},
                     "balanced": round((rate["supported"] + sum(caught) / len(caught)) / 2, 3)})
    best = max(rows, key=lambda r: (r["balanced"], -abs(r["min_overlap"] - verify.MIN_OVERLAP)))
    counts = {k: sum(kk == k for kk, _, _ in made) for k in kinds}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "calibrate_verify.json").write_text(json.dumps({"counts": counts, "grid": rows, "chosen": best}, indent=2))
    head = "| min_overlap | supported accepted | " + " | ".join(f"{k} caught" for k in kinds if k != "supported") + " | balanced |"
    lines = [f"claims made from {len(files)} files: " + ", ".join(f"{k} {n}" for k, n in counts.items()), "", head,
             "|" + "---|" * (len(kinds) + 2)]
    for r in rows:
        lines.append(f"| {r['min_overlap']} | {r['supported']:.3f} | " + " | ".join(f"{r[k]:.3f}" for k in kinds if k != "supported")
                     + f" | {r['balanced']:.3f} |")
    lines.append(f"\nchosen: min_overlap {best['min_overlap']} (in the code: {verify.MIN_OVERLAP})")
    (RESULTS / "calibrate_verify.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

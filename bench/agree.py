"""Would the chat model's draft vouch for the quote? Scored on bench/finetune_unseen.py's rows (bench/RESULTS.md, finding 43).

    python bench/agree.py --corpus handbook --split tuning

In auto mode the model drafts an answer; when the draft fails the claim check the user sees the
passages' key answer (the quote), *answered* only when the fitted P(right) reaches its threshold,
and most right quotes end *uncertain*. The draft and the quote are picked by different means (the
model writing over the passages; the fitted ranker over their sentences), so when the model's own
text names the very term the quote would put in front of it, the quote may be right more often.

The rule, fixed before any row was scored: a row of auto mode whose shown answer is the quote
(`mode` "extractive") and whose status is *uncertain* becomes *answered* when

  span   the key span of the quote's first sentence (`keyanswer.key_span`, what an answered quote
         shows in front) is not empty and appears verbatim in the draft (primary), or
  term   any code-like term of the draft that the question does not name (`keyanswer.new_terms`)
         appears verbatim in the quote (reported beside it),

never for a question that yes or no answers. Reported per model (base, adapter): key accuracy,
confident misses (answered and wrong) and unanswerable questions answered, before and after, and
the change of key accuracy and confident misses with a paired bootstrap interval. Kept only if, on
the tuning rows, key accuracy rises with an interval above zero and confident misses stay within
tune_quote.TARGET_MISS (4%) on every corpus scored.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import log, names_gold  # noqa: E402
from finetune_unseen import load_rows  # noqa: E402


def body(answer: str) -> str:
    """The quote as shown, without the uncertain notice line above it."""
    from archivist.retrieval.answer import UNCERTAIN

    return answer.split("\n", 1)[1] if answer.startswith(UNCERTAIN) and "\n" in answer else answer


def agrees(row: dict, how: str) -> bool:
    from archivist.retrieval.keyanswer import key_span, new_terms
    from archivist.retrieval.verify import asks_yes_no, sentences

    draft, question, quote = row.get("draft") or "", row["question"], body(row["answer"])
    if not draft or asks_yes_no(question):
        return False
    if how == "span":
        first = next((quote[a:b] for a, b in sentences(quote)), quote)
        span = key_span(first, question)
        return bool(span) and span in draft
    return any(k == "identifier" and len(t) > 1 and t in quote for k, t in new_terms(draft, question))


def promoted(row: dict, how: str | None) -> str:
    if how and row["mode"] == "extractive" and row["status"] == "uncertain" and agrees(row, how):
        return "answered"
    return row["status"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default="handbook")
    ap.add_argument("--split", default="tuning", choices=["tuning", "heldout"])
    args = ap.parse_args(argv)
    from archivist.retrieval.evaluation import paired_difference

    for name in args.corpus.split(","):
        rows = load_rows(name, args.split)
        for model in ("base", "adapter"):
            got = rows.get(f"{model}/auto", {})
            if not got:
                log(f"{name} {args.split}: no {model}/auto rows")
                continue
            ids = sorted(got)
            ans = [got[i] for i in ids if got[i]["gold"] is not None]
            una = [got[i] for i in ids if got[i]["gold"] is None]
            per = {}
            for how in (None, "span", "term"):
                st = [promoted(r, how) for r in ans]
                per[how] = ([float(s == "answered" and names_gold(r)) for s, r in zip(st, ans)],
                            [float(s == "answered" and not names_gold(r)) for s, r in zip(st, ans)],
                            sum(promoted(r, how) == "answered" for r in una))
            base_right, base_miss, base_una = per[None]
            print(f"{name} {args.split} {model} auto: {len(ans)} answerable, {len(una)} unanswerable; as served: "
                  f"key accuracy {sum(base_right) / len(ans):.3f}, confident misses {sum(base_miss) / len(ans):.3f}, "
                  f"unanswerable answered {base_una}")
            for how in ("span", "term"):
                right, miss, n_una = per[how]
                d, m = paired_difference(right, base_right), paired_difference(miss, base_miss)
                print(f"  rule {how}: key accuracy {sum(right) / len(ans):.3f} ({d['diff']:+.3f} [{d['low']:+.3f}, "
                      f"{d['high']:+.3f}]), confident misses {sum(miss) / len(ans):.3f} ({m['diff']:+.3f} "
                      f"[{m['low']:+.3f}, {m['high']:+.3f}]), unanswerable answered {n_una}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

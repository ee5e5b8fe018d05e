"""Copy-only decoding: the chat model may only copy one span of its passages (issue 18, item 2's
"constrained decoding"), tried on the TUNING splits against the quote auto mode shows.

    python bench/copy_decode.py [--corpus git,handbook,python] [--limit 40] [--max-tokens 40]

Reads the passages bench/tune_quote.py --collect kept for each tuning question (never a held-out
one), asks the chat model the question over them with a prompt that asks for a short phrase copied
from the passages, and decodes greedily under a constraint: the first token starts a word of a
passage, each next one continues a passage's own token sequence where the span so far occurs, or
ends the answer. What it writes is therefore text of the passages, verbatim. Scored as the quote is
in tune-quote-fit-reader.json (`right`: the gold answer in what is shown), paired per question.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA  # noqa: E402

COPY_SYSTEM = ("You answer questions about the user's documents by copying. Reply with the shortest phrase, "
               "copied exactly from the numbered passages, that answers the question: a command, an option, a "
               "function, a setting, a number or a name.")


def word_starts(tokenizer, ids: list[int]) -> set[int]:
    """Tokens of `ids` that begin a word: the first, those after a newline, those that begin with a space."""
    out = set()
    for i, t in enumerate(ids):
        piece = tokenizer.convert_ids_to_tokens(t)
        prev = tokenizer.convert_ids_to_tokens(ids[i - 1]) if i else "Ċ"
        if i == 0 or piece.startswith("Ġ") or prev.endswith("Ċ"):
            out.add(t)
    return out


def copy_constraint(prompt_len: int, spans: list[list[int]], starts: set[int], end: int):
    """prefix_allowed_tokens_fn for `generate`: one span copied from one of `spans` (token lists)."""
    def allowed(_batch: int, ids) -> list[int]:
        g = ids[prompt_len:].tolist()
        if not g:
            return sorted(starts)
        nxt = {end}
        n = len(g)
        for toks in spans:
            for i in range(len(toks) - n):
                if toks[i:i + n] == g:
                    nxt.add(toks[i + n])
        return sorted(nxt)
    return allowed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default="git,handbook,python")
    ap.add_argument("--limit", type=int, default=40, help="answerable tuning questions per corpus (the first N)")
    ap.add_argument("--max-tokens", type=int, default=40)
    ap.add_argument("--out", type=Path, default=DATA / "results" / "copy-decode.json")
    args = ap.parse_args(argv)

    import torch

    from archivist.records import Hit
    from archivist.retrieval.answer import build_messages
    from archivist.retrieval.evaluation import contains_answer
    from archivist.retrieval.llm import llm_for
    from archivist.settings import Settings

    llm = llm_for(Settings.from_env())
    tok = llm.tokenizer
    base = {(r["corpus"], r["question"]): r for r in json.loads((DATA / "results" / "tune-quote-fit-reader.json").read_text())}
    rows = []
    for corpus in args.corpus.split(","):
        kept = [r for r in json.loads((DATA / "results" / f"tune-quote-{corpus}.json").read_text())
                if r["asked_of"] == corpus and r["answers"] and (corpus, r["question"]) in base]
        for r in kept[: args.limit]:
            passages = [Hit(**{**p, "heading": tuple(p["heading"])}) for p in r["passages"]]
            prompt = llm.render(build_messages(r["question"], passages, system=COPY_SYSTEM))
            enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
            spans = [tok(p.text, add_special_tokens=False)["input_ids"] for p in passages]
            starts = set().union(*(word_starts(tok, s) for s in spans)) if spans else set()
            if not starts:
                continue
            t0 = time.perf_counter()
            with torch.no_grad():
                out = llm.model.generate(**enc, max_new_tokens=args.max_tokens, do_sample=False,
                                         prefix_allowed_tokens_fn=copy_constraint(enc["input_ids"].shape[1], spans, starts,
                                                                                  tok.eos_token_id),
                                         pad_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
            text = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()
            right = any(contains_answer(a, text) for a in r["answers"])
            rows.append({"corpus": corpus, "question": r["question"], "copy": text, "copy_right": right,
                         "quote_right": bool(base[(corpus, r["question"])]["right"]), "seconds": time.perf_counter() - t0})
            print(f"{corpus} {right!s:5} {base[(corpus, r['question'])]['right']!s:5} {text[:90]!r}", file=sys.stderr)
    args.out.write_text(json.dumps(rows, indent=1))
    for corpus in args.corpus.split(",") + ["all"]:
        rs = [r for r in rows if corpus in ("all", r["corpus"])]
        if not rs:
            continue
        n = len(rs)
        both = sum(r["copy_right"] and r["quote_right"] for r in rs)
        print(f"{corpus}: {n} questions; gold in copy {sum(r['copy_right'] for r in rs) / n:.3f}, in quote "
              f"{sum(r['quote_right'] for r in rs) / n:.3f}, in both {both / n:.3f}, in either "
              f"{sum(r['copy_right'] or r['quote_right'] for r in rs) / n:.3f}; mean words in copy "
              f"{sum(len(r['copy'].split()) for r in rs) / n:.1f}; seconds median "
              f"{sorted(r['seconds'] for r in rs)[n // 2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Base against adapter on the held-out split: answer accuracy, token F1, citations, perplexity.

    accuracy     the gold answer (a span of the source chunk) is contained in the generated answer,
                 as whole words after normalization (archivist.retrieval.evaluation.score_answer)
    f1           token F1 between the generated answer (citations removed) and the gold answer
    citations    the answer cites the passage holding the gold, and no other (distractors never
                 hold the answer, by construction); over examples that have a gold passage
    perplexity   exp of the mean negative log-likelihood of the gold target's tokens (teacher forced)

Generation is greedy with the serving settings (repetition penalty 1.1), in left-padded batches.
An adapter whose mean per-example score (`example_score`) is below the base's is worse: it is
registered but not activated, and `reason` says why. Perplexity is reported, not decided on: equal
scores are a tie whatever it says, and a tie is never a lead the bootstrap below can confirm.

A lead has to be more than the luck of which examples were held out: each example's score (the mean
of its accuracy, F1 and citation) is compared between the two models with a paired bootstrap, and
the adapter counts as better only when the 95% interval of its lead is above zero (the rule that
`finetune --target retriever` applies to MRR@10). The examples were held out by document, and one
document's examples rise and fall together, so the bootstrap draws whole documents (the examples'
split groups), not examples one by one; and `--eval-limit` takes its examples from every held-out
document in turn (`held_out_sample`), not the first document's first ones. On a small held-out
split (10 examples of sed's manual, 2 of them right by either model) a one-example lead is within
the noise: such an adapter is registered, not activated, and its reason says the split cannot tell
it from the base.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence

from archivist.retrieval.evaluation import score_answer as score


def score_answer(prediction: str, gold: str, cite: int | None) -> dict:
    """{"contained", "f1", "citation"} for one generated answer, as 0/1 floats and F1 (the shared
    scoring of archivist.retrieval.evaluation; citation is None without a gold passage, else 1.0
    when the answer cites exactly that passage)."""
    s = score(gold, prediction)
    return {"contained": float(s.contained), "f1": s.f1,
            "citation": None if cite is None else float(s.cited == {cite})}


def generate_answers(model, tokenizer, examples: Sequence, max_new_tokens: int = 48, batch_size: int = 8,
                     progress: bool = False) -> list[str]:
    """Greedy answers to each example's prompt (its messages without the target), in input order."""
    import torch

    prompts = [tokenizer.apply_chat_template(e.messages[:-1], tokenize=False, add_generation_prompt=True) for e in examples]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths batch with little padding
    out: list[str] = [""] * len(prompts)
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    batches = [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc="generate", unit="batch", leave=False)
    try:
        for idx in batches:
            enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            with torch.inference_mode():
                gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, repetition_penalty=1.1,
                                     use_cache=True, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            for row, i in enumerate(idx):
                out[i] = tokenizer.decode(gen[row, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    finally:
        tokenizer.padding_side = side
    return out


def perplexity(model, tokenizer, examples: Sequence, batch_size: int = 4) -> float | None:
    """exp(mean NLL) of the targets' tokens given their prompts, with the training loss itself."""
    import torch

    from archivist.finetune.lora import _answer_loss_module, collate, encode

    loss_fn = _answer_loss_module()(model)
    items = [encode(tokenizer, e.messages) for e in examples]
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with torch.inference_mode():
        for i in range(0, len(items), batch_size):
            b = collate(items[i: i + batch_size], tokenizer.pad_token_id, device)
            s, n = loss_fn(**b)
            total, count = total + float(s), count + int(n)
    return round(math.exp(total / count), 4) if count else None


def held_out_sample(examples: Sequence, limit: int, seed: int = 0) -> list:
    """Up to `limit` of the held-out examples (all of them when `limit` is 0 or not below their
    number), spread over their split groups (documents, feedback rows, file lines): the groups in a
    seeded hash order, as the split orders them, then one example of each group in turn, the first
    of each group first (and of each source in a group: a feedback example in a document's group
    comes before the document's second generated one). Returned in the examples' order. The
    held-out split lists each document's examples together, so its first `limit` would be one or two
    documents, and the feedback and file examples, listed last, would never be evaluated."""
    if not limit or len(examples) <= limit:
        return list(examples)
    groups: dict[str, list[int]] = {}
    for i, e in enumerate(examples):
        groups.setdefault(e.group, []).append(i)
    for g, idx in groups.items():  # each source's first example first (feedback joins a document's group)
        rank = {i: sum(examples[j].source == examples[i].source for j in idx if j < i) for i in idx}
        groups[g] = sorted(idx, key=lambda i: (rank[i], i))
    order = sorted(groups, key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest())
    chosen: list[int] = []
    for turn in range(max(len(v) for v in groups.values())):
        chosen += [groups[g][turn] for g in order if turn < len(groups[g])]
    return [examples[i] for i in sorted(chosen[:limit])]


def example_score(s: dict) -> float:
    """One example's score: the mean of its accuracy, F1 and (when it has a gold passage) citation."""
    parts = [s["contained"], s["f1"]] + ([s["citation"]] if s.get("citation") is not None else [])
    return sum(parts) / len(parts)


def evaluate_model(model, tokenizer, examples: Sequence, max_new_tokens: int = 48, progress: bool = False) -> tuple[dict, list[str]]:
    """Mean metrics of one model over the examples (with `per_example` scores, see example_score), and its answers."""
    t0 = time.perf_counter()
    answers = generate_answers(model, tokenizer, examples, max_new_tokens, progress=progress)
    scores = [score_answer(a, e.answer, e.cite) for a, e in zip(answers, examples)]
    cites = [s["citation"] for s in scores if s["citation"] is not None]
    metrics = {
        "accuracy": round(sum(s["contained"] for s in scores) / len(scores), 4),
        "f1": round(sum(s["f1"] for s in scores) / len(scores), 4),
        "citations": round(sum(cites) / len(cites), 4) if cites else None,
        "perplexity": perplexity(model, tokenizer, examples),
        "seconds": round(time.perf_counter() - t0, 1),
        "per_example": [round(example_score(x), 4) for x in scores],
    }
    return metrics, answers


def summary_score(m: dict) -> float:
    """A model's score on the held-out examples: the mean of the per-example scores (what the
    bootstrap compares), else (a report stored without them) the mean of accuracy, F1 and citations.
    The two agree when every example has a gold passage; when some have none (feedback, files), the
    mean of the three means let one example's citation weigh as much as every example's answer: an
    adapter right on 2 of 10 answers where the base was right on 1 was called worse because it
    missed the one citation there was."""
    if m.get("per_example"):
        return sum(m["per_example"]) / len(m["per_example"])
    parts = [m["accuracy"], m["f1"]] + ([m["citations"]] if m.get("citations") is not None else [])
    return sum(parts) / len(parts)


def verdict(base: dict, adapter: dict) -> tuple[bool, str]:
    """(is the adapter at least as good as the base on the held-out answers, the reason in words),
    on the means (`summary_score`). The perplexity of the gold answers is in the reason, not in the
    outcome: it once broke ties, but `decide` finds no lead in a tie (its interval is 0..0), so
    the tie-break could activate nothing, and its words said "more sure" of an equal perplexity."""
    b, a = summary_score(base), summary_score(adapter)
    detail = (f"accuracy {adapter['accuracy']:.2f} vs {base['accuracy']:.2f}, F1 {adapter['f1']:.2f} vs {base['f1']:.2f}"
              + (f", citations {adapter['citations']:.2f} vs {base['citations']:.2f}" if adapter.get("citations") is not None else "")
              + (f", perplexity {adapter['perplexity']:.2f} vs {base['perplexity']:.2f}"
                 if adapter.get("perplexity") and base.get("perplexity") else ""))
    if a < b - 1e-9:
        return False, f"worse than the base on the held-out split ({detail})"
    if a > b + 1e-9:
        return True, f"better than the base on the held-out split ({detail})"
    return True, f"as good as the base on answers on the held-out split, no better ({detail})"


def decide(base: dict, adapter: dict, groups: Sequence[str] | None = None) -> tuple[bool, str, dict | None]:
    """(better, reason, difference): `verdict` on the means, then the paired bootstrap of the
    per-example scores (`per_example` of each) when both have them, drawing whole `groups` (each
    example's split group, its document) when given. `difference` is
    archivist.retrieval.evaluation.paired_difference of adapter over base (None without per-example
    scores). A lead whose interval reaches zero is not better: the held-out split cannot tell."""
    from archivist.retrieval.evaluation import paired_difference

    better, reason = verdict(base, adapter)
    a, b = adapter.get("per_example"), base.get("per_example")
    if not a or not b or len(a) != len(b):
        return better, reason, None
    groups = list(groups) if groups is not None and len(groups) == len(a) else None
    d = paired_difference(a, b, groups=groups)
    of = ("" if groups is None else f"; {d['groups']} held-out documents, drawn whole" if d["groups"] >= 2 else
          "; one held-out document, its examples drawn one by one: the interval says nothing of other documents")
    ci = (f"{len(a)} held-out examples, score {d['diff']:+.3f} (95% CI {d['low']:+.3f}..{d['high']:+.3f}; "
          f"better on {d['better']}, worse on {d['worse']}{of})")
    if better and d["low"] <= 0:
        lead = reason.split(" (", 1)[0]
        return False, (f"the held-out split cannot tell it from the base: {lead}, but {ci}; "
                       f"more held-out examples (--eval-limit 0, --eval-fraction) can, or use it anyway with "
                       f"`archivist activate NAME` ({reason.split(' (', 1)[1]}"), d
    return better, f"{reason}; {ci}", d


def compare(model, tokenizer, examples: Sequence, max_new_tokens: int = 48, progress: bool = False, keep: int = 5) -> dict:
    """Evaluate the base (adapter disabled) and the adapter of a PeftModel on the same examples.

    Returns {"n", "base", "adapter", "better", "reason", "examples": the first `keep` with both answers}.
    With no examples, `better` is False and the reason says there was nothing to compare on.
    """
    if not examples:
        return {"n": 0, "base": None, "adapter": None, "better": False, "examples": [],
                "reason": "not evaluated: the dataset has no held-out examples (a split needs at least two documents)"}
    was_training = model.training
    model.eval()
    # merged LoRA weights generate as fast as the base; a 4-bit base cannot take them exactly, so it stays unmerged
    merge = not getattr(model.get_base_model(), "is_loaded_in_4bit", False)
    try:
        with model.disable_adapter():
            base, base_answers = evaluate_model(model, tokenizer, examples, max_new_tokens, progress)
        if merge:
            model.merge_adapter()
        try:
            adapter, answers = evaluate_model(model, tokenizer, examples, max_new_tokens, progress)
        finally:
            if merge:
                model.unmerge_adapter()
    finally:
        model.train(was_training)
    better, reason, difference = decide(base, adapter, [e.group for e in examples])
    by_source = split_by_source(examples, base, adapter)
    shown = [{"question": e.question, "gold": e.answer, "cite": e.cite, "base": b, "adapter": a}
             for e, b, a in list(zip(examples, base_answers, answers))[:keep]]
    return {"n": len(examples), "base": base, "adapter": adapter, "better": better, "reason": reason,
            "difference": difference, "by_source": by_source, "examples": shown}


def split_by_source(examples: Sequence, base: dict, adapter: dict) -> dict:
    """{source: {"n", "base", "adapter"}}: each model's accuracy and mean per-example score on the
    held-out examples of each source (docs:extractive, docs:llm, feedback, file). The generator's
    echo questions are one sentence of a passage with the fact taken out; an adapter learns to quote
    that sentence, which a chat model does not. People's questions (feedback, files) say more about
    what users will see, so the split is shown apart."""
    out: dict[str, dict] = {}
    for i, e in enumerate(examples):
        k = out.setdefault(e.source, {"n": 0, "index": []})
        k["n"] += 1
        k["index"].append(i)
    for k in out.values():
        idx = k.pop("index")
        for who, m in (("base", base), ("adapter", adapter)):
            per = m.get("per_example") or []
            k[who] = round(sum(per[i] for i in idx) / len(idx), 4) if per else None
    return out

"""Generation speed: archivist's streaming `LLM.stream` against a bare `model.generate`, same model,
same prompt, same greedy settings, alternated in one run.

    python bench/generate.py --size small|full

The prompt is a real RAG prompt (archivist's system message, five numbered passages from the
sample documents, a question) rendered through the model's chat template. Reports tokens per
second of both (target: archivist >= 0.95x) and archivist's time to first token, beside the
bare model's prefill time (a generate of one token).
"""

from __future__ import annotations

import time

from common import REPO, alternate, log, md_table, median, report, size, size_parser


def rag_messages() -> list[dict]:
    from archivist.records import Hit
    from archivist.retrieval.answer import build_messages

    passages = []
    folder = REPO / "samples"
    for i, f in enumerate(sorted(p for p in folder.glob("*.md"))[:2] + sorted(folder.glob("*.html"))[:2]):
        text = " ".join(f.read_text(errors="replace").split())[:700]
        passages.append(Hit(chunk_id=i, document_id=i, document=f.name, collection="default", text=text, score=0.0))
    if not passages:  # no samples: a fixed passage
        passages = [Hit(chunk_id=0, document_id=0, document="policy.md", collection="default", score=0.0,
                        text="Employees get 20 weeks of fully paid parental leave under policy HR-17.")]
    return build_messages("Summarize what these documents say about the company's policies.", passages)


def main(argv=None) -> int:
    ap = size_parser(__doc__)
    args = ap.parse_args(argv)
    s = size(args.size)
    import torch

    from archivist.retrieval.llm import llm_for
    from archivist.settings import Settings

    llm = llm_for(Settings.from_env())
    messages = rag_messages()
    prompt = llm.render(messages)
    enc = llm.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(llm.device)
    n_prompt = int(enc["input_ids"].shape[1])
    n_new = s["gen_tokens"]
    pad = llm.tokenizer.pad_token_id or llm.tokenizer.eos_token_id
    gen_kwargs = dict(do_sample=False, repetition_penalty=1.1, pad_token_id=pad)
    log(f"model {llm.name} on {llm.device}; prompt {n_prompt} tokens; {n_new} new tokens")

    def bare(max_new: int) -> tuple[float, int]:
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = llm.model.generate(**enc, max_new_tokens=max_new, **gen_kwargs)
        return time.perf_counter() - t0, int(out.shape[1] - n_prompt)

    ttft: list[float] = []

    def archivist(_r) -> float:
        stats: dict = {}
        t0 = time.perf_counter()
        for _ in llm.stream(messages, max_new_tokens=n_new, stats=stats):
            pass
        dt = time.perf_counter() - t0
        ttft.append(stats.get("first_token_s", 0.0))
        return stats["completion_tokens"] / dt

    def baseline(_r) -> float:
        dt, n = bare(n_new)
        return n / dt

    bare(4)
    archivist(0)
    ttft.clear()
    values = alternate({"archivist LLM.stream": archivist, "bare model.generate": baseline}, s["gen_repeats"])
    prefill = median([bare(1)[0] for _ in range(3)])
    for k, v in values.items():
        log(f"{k}: {[round(x, 2) for x in v]} tokens/s")
    base = median(values["bare model.generate"])
    rows = [[k, median(v), median(v) / base, ", ".join(f"{x:.2f}" for x in v)] for k, v in values.items()]
    body = (f"{llm.name} on {llm.device}, prompt {n_prompt} tokens (a RAG prompt with passages), {n_new} new tokens, "
            f"greedy, {s['gen_repeats']} alternated repeats.\n\n"
            + md_table(["", "tokens/s (median)", "x bare", "repeats"], rows)
            + f"\n\nStreaming / bare generate: **{median(values['archivist LLM.stream']) / base:.2f}x** (target >= 0.95x). "
              f"Time to first token: **{median(ttft):.2f} s** (median; the bare model's prefill plus one token takes "
              f"{prefill:.2f} s).\n")
    report("generate", f"Generation ({args.size})", body, {"values": values, "ttft": ttft, "prefill_s": prefill,
                                                             "prompt_tokens": n_prompt})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Embedder backends on the CPU: chunks per second against the PyTorch backend, same chunks, same run.

    python bench/embedder.py --size small|full

The chunks are real: the ingest corpus read and chunked exactly as the pipeline does (256-token
chunks with their heading). Each backend embeds them all with the same batch size, alternated,
median of the repeats. Agreement with PyTorch is the cosine between the two vectors of each chunk.
Retrieval quality per backend (hit@5 on the public set) is in quality.md.
"""

from __future__ import annotations

import time

import numpy as np

from common import alternate, corpus, log, md_table, median, report, size, size_parser


def chunk_texts(folder, limit: int) -> list[str]:
    from archivist.ingest import chunking
    from archivist.ingest.folders import expand
    from archivist.ingest.writing import embed_text
    from archivist.ingest.readers import read
    from archivist.models import load_embedder

    spans = chunking.hf_token_spans(load_embedder(device="cpu").tokenizer)
    out: list[str] = []
    for path, _ in expand([folder])[0]:
        _, chunks = chunking.chunk_blocks(read(path).blocks, spans, 256, 32)
        out += [embed_text(c.text, c.heading) for c in chunks]
        if len(out) >= limit:
            break
    return out[:limit]


def main(argv=None) -> int:
    ap = size_parser(__doc__)
    ap.add_argument("--chunks", type=int, default=None, help="how many chunks (default: the size's embedder_chunks)")
    args = ap.parse_args(argv)
    s = size(args.size)
    from archivist.models import load_embedder
    from archivist.settings import Settings

    n = args.chunks or s["embedder_chunks"]
    folder = corpus(f"corpus-ingest-{args.size}", s["ingest_foldoc"], s["ingest_debref"] if s["ingest_debref"] else True)
    texts = chunk_texts(folder, n)
    batch = Settings().embed_batch
    backends = ["torch", "int8", "onnx", "onnx-int8"]
    models = {b: load_embedder(device="cpu", backend=b) for b in backends}
    for m in models.values():
        m.embed(texts[:batch], batch_size=batch)  # warm up
    ref = models["torch"].embed(texts, batch_size=batch)
    agree = {}
    for b, m in models.items():
        cos = (m.embed(texts, batch_size=batch) * ref).sum(axis=1)
        agree[b] = (float(cos.mean()), float(cos.min()))
    log(f"{len(texts)} chunks; agreement {agree}")

    def runner(b):
        def run(_r):
            t0 = time.perf_counter()
            models[b].embed(texts, batch_size=batch)
            return len(texts) / (time.perf_counter() - t0)
        return run

    values = alternate({b: runner(b) for b in backends}, s["repeats"])
    base = median(values["torch"])
    rows = [[b, median(v), median(v) / base, agree[b][0], agree[b][1], ", ".join(f"{x:.1f}" for x in v)]
            for b, v in values.items()]
    tokens = models["torch"].tokenizer(texts, add_special_tokens=True, truncation=True, max_length=256)["input_ids"]
    body = (f"{len(texts)} real chunks (median {int(np.median([len(t) for t in tokens]))} tokens), batch size {batch}, "
            f"{s['repeats']} alternated repeats; all-MiniLM-L6-v2 on the CPU.\n\n"
            + md_table(["backend", "chunks/s (median)", "x torch", "cosine to torch (mean)", "(min)", "repeats"], rows)
            + f"\n\nSettings.embed_backend default: `{Settings().embed_backend}`.\n")
    report("embedder", f"Embedder backends ({args.size})", body, {"values": values, "agreement": agree})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

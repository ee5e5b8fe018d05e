"""Lexical index: archivist's hand-written BM25 (retrieval/lexicon.py) against Tantivy, in one run.

    python bench/lexical.py [--repeats 3] [--queries 300] [--skip-speed] [--skip-quality]

Both indexes hold the same chunks and read text the same way as far as Tantivy allows: runs of
letters and digits ("_" separates), lower-cased, diacritics folded, English stems (Porter in
lexicon.py; Tantivy ships Snowball English, i.e. Porter2). A query is what `lexicon.query_units`
makes of it for both: stop-word pieces dropped, a piece with inner punctuation a phrase.

  1. Speed at 100,000 chunks (the workspace bench/query.py builds and caches; only texts and
     headings are read from SQLite): build time, query latency p50/p95 over a few hundred real
     questions (the two systems alternated per query, in rotating order, repeated), memory (RSS
     delta of building and querying each), incremental delete and add of 1,000 chunks (time, and
     whether the rankings then equal a fresh build's).
  2. Quality, lexical only: hit@5 and MRR@10 on the question sets in bench/evalsets (the chunks of
     the public corpus, read and chunked as ingestion does, without embedding), for each
     system and each field weighting (BM25F: document title and heading path as fields).

Tantivy runs on a directory (as a persistent index would) with a writer of two threads (the
cores here); hits are read back through the `id` fast field.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from common import EVALSETS, corpus, log, md_table, median, percentile, report

N_CHUNKS = 100_000
K = 10


# -- the two systems --------------------------------------------------------------------------------


def handwritten_build(rows, fields=None):
    from archivist.retrieval import lexicon

    return lexicon.Index.empty(fields or lexicon.Fields()).with_chunks(rows)


def handwritten_search(index, query: str, limit: int = K) -> list[int]:
    from archivist.retrieval import lexicon
    from archivist.retrieval.query import STOPWORDS

    return [c for c, _ in index.search(lexicon.query_units(query, STOPWORDS), limit)]


class Tantivy:
    """A Tantivy index of chunks: fields text, heading, title (English stems, positions for phrases)
    and id / document / collection as indexed fast integers."""

    def __init__(self, path: Path | None, weights: dict[str, float] | None = None, threads: int = 2):
        import tantivy

        self.t = tantivy
        self.weights = weights or {"text": 1.0, "heading": 0.5}
        sb = tantivy.SchemaBuilder()
        for name in ("text", "heading", "title"):
            sb.add_text_field(name, tokenizer_name="archivist_en", index_option="position")
        for name in ("id", "doc", "coll"):
            sb.add_unsigned_field(name, indexed=True, fast=True)
        self.schema = sb.build()
        self.analyzer = (tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.regex(r"[^\W_]+"))
                         .filter(tantivy.Filter.lowercase()).filter(tantivy.Filter.ascii_fold())
                         .filter(tantivy.Filter.stemmer("english")).build())
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(parents=True)
        self.index = tantivy.Index(self.schema, path=str(path) if path else None)
        self.index.register_tokenizer("archivist_en", self.analyzer)
        self.writer = self.index.writer(heap_size=128_000_000, num_threads=threads)

    def add(self, rows) -> None:
        for r in rows:
            doc = self.t.Document()
            for name, value in zip(("id", "doc", "coll"), r[:3]):
                doc.add_unsigned(name, int(value))
            for name, value in zip(("text", "heading", "title"), r[3:6]):
                if value:
                    doc.add_text(name, value)
            self.writer.add_document(doc)
        self.commit()

    def delete(self, ids) -> None:
        self.writer.delete_documents_by_query(self.t.Query.term_set_query(self.schema, "id", [int(i) for i in ids]))
        self.commit()

    def commit(self) -> None:
        self.writer.commit()
        self.index.reload()
        self.searcher = self.index.searcher()

    def units(self, query: str) -> list[list[str]]:
        from archivist.retrieval.query import STOPWORDS
        import re

        out = []
        for piece in query.split():
            words = re.findall(r"[^\W_]+", piece.lower())
            if not words or (len(words) == 1 and words[0] in STOPWORDS):
                continue
            stems = self.analyzer.analyze(piece)
            if stems and stems not in out:
                out.append(stems)
        return out

    def query(self, query: str):
        Q, Occur = self.t.Query, self.t.Occur
        clauses = []
        for unit in self.units(query):
            for field, w in self.weights.items():
                if w <= 0:
                    continue
                q = Q.term_query(self.schema, field, unit[0]) if len(unit) == 1 else Q.phrase_query(self.schema, field, unit)
                clauses.append((Occur.Should, q if w == 1 else Q.boost_query(q, w)))
        return Q.boolean_query(clauses) if clauses else None

    def search(self, query: str, limit: int = K) -> list[int]:
        q = self.query(query)
        if q is None:
            return []
        hits = self.searcher.search(q, limit, count=False).hits
        return self.searcher.fast_field_values("id", [a for _, a in hits])


# -- data ---------------------------------------------------------------------------------------


def speed_rows() -> list[tuple]:
    """(chunk id, document id, collection id, text, heading, title) of the 100,000-chunk workspace."""
    from query import build_workspace

    ws = build_workspace(N_CHUNKS)
    rows = [tuple(r) for r in ws.db.execute(
        "SELECT c.id, c.document_id, d.collection_id, c.text, c.heading, COALESCE(d.title, '') FROM chunks c "
        "JOIN documents d ON d.id = c.document_id ORDER BY c.id")]
    ws.close()
    return rows


def questions(n: int) -> list[str]:
    qs = []
    for name in ("debian_reference.jsonl", "foldoc.jsonl", "debian_reference_heldout.jsonl"):
        qs += [json.loads(line)["question"] for line in (EVALSETS / name).read_text().splitlines() if line.strip()]
    return qs[:n]


def quality_rows() -> tuple[list[tuple], dict[int, str]]:
    """The public corpus (2,000 FOLDOC entries + the Debian Reference) read and chunked as ingestion
    does, without embedding: rows as in `speed_rows`, and each document id's name."""
    from archivist.ingest import chunking
    from archivist.ingest.readers import read
    from archivist.settings import Settings
    from transformers import AutoTokenizer

    from archivist.catalog import resolve_embedder

    folder = corpus("corpus-full", 2000, True)
    s = Settings.from_env(home=Path(tempfile.mkdtemp()))
    spans = chunking.hf_token_spans(AutoTokenizer.from_pretrained(resolve_embedder("all-minilm-l6-v2")))
    rows, names, cid = [], {}, 0
    for d, path in enumerate(sorted(p for p in folder.rglob("*") if p.is_file())):
        ex = read(path)
        _, chunks = chunking.chunk_blocks(ex.blocks, spans, s.chunk_tokens, s.chunk_overlap)
        names[d] = str(path.relative_to(folder))
        for c in chunks:
            cid += 1
            rows.append((cid, d, 1, c.text, " > ".join(c.heading), ex.title or ""))
    return rows, names


# -- measurements -------------------------------------------------------------------------------


def rss_mb() -> float:
    import psutil

    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def build_times(rows, repeats: int, tmp: Path) -> dict[str, list[float]]:
    out = {"hand-written": [], "tantivy": []}
    for r in range(repeats):
        order = ["hand-written", "tantivy"] if r % 2 == 0 else ["tantivy", "hand-written"]
        for name in order:
            t0 = time.perf_counter()
            if name == "hand-written":
                index = handwritten_build(rows)
            else:
                index = Tantivy(tmp / f"build-{r}")
                index.add(rows)
            out[name].append(time.perf_counter() - t0)
            log(f"build {name}: {out[name][-1]:.1f}s")
            del index
            gc.collect()
    return out


def latencies(systems: dict, qs: list[str], repeats: int) -> dict[str, list[tuple[float, float]]]:
    names = list(systems)
    per_repeat = {n: [] for n in names}
    for r in range(repeats):
        times = {n: [] for n in names}
        for i, q in enumerate(qs):
            for n in names[i % len(names):] + names[:i % len(names)]:
                t0 = time.perf_counter()
                systems[n](q)
                times[n].append(time.perf_counter() - t0)
        for n in names:
            per_repeat[n].append((percentile(times[n], 50) * 1000, percentile(times[n], 95) * 1000))
        log(f"latency repeat {r + 1}: " + ", ".join(f"{n} p50 {v[-1][0]:.2f} ms p95 {v[-1][1]:.2f} ms" for n, v in per_repeat.items()))
    return per_repeat


def incremental(hand, tan: Tantivy, rows, qs: list[str], repeats: int, tmp: Path) -> dict:
    """Delete 1,000 chunks and add them back under new ids, `repeats` times, in both; then compare
    each system's rankings with a fresh build of the same final content."""
    rng = np.random.default_rng(1)
    current = {r[0]: r for r in rows}
    next_id = max(current) + 1
    times = {"hand-written delete": [], "tantivy delete": [], "hand-written add": [], "tantivy add": []}
    for r in range(repeats):
        ids = rng.choice(np.fromiter(current, np.int64), 1000, replace=False)
        back = []
        for i in ids.tolist():
            old = current.pop(i)
            back.append((next_id,) + old[1:])
            next_id += 1
        for name in (["hand", "tan"] if r % 2 == 0 else ["tan", "hand"]):
            t0 = time.perf_counter()
            if name == "hand":
                hand = hand.without(ids)
                times["hand-written delete"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                hand = hand.with_chunks(back)
                times["hand-written add"].append(time.perf_counter() - t0)
            else:
                tan.delete(ids)
                times["tantivy delete"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                tan.add(back)
                times["tantivy add"].append(time.perf_counter() - t0)
        current.update((b[0], b) for b in back)
        log(f"incremental repeat {r + 1}: " + ", ".join(f"{k} {v[-1] * 1000:.0f} ms" for k, v in times.items()))
    final = sorted(current.values())
    fresh_hand = handwritten_build(final)
    fresh_tan = Tantivy(tmp / "fresh")
    fresh_tan.add(final)
    gone = set(range(0, max(current) + 1)) - set(current)
    same = {"hand-written": 0, "tantivy": 0}
    same_set = {"hand-written": 0, "tantivy": 0}
    stale = {"hand-written": 0, "tantivy": 0}
    scores_equal = True
    from archivist.retrieval import lexicon
    from archivist.retrieval.query import STOPWORDS

    for q in qs:
        a, b = handwritten_search(hand, q), handwritten_search(fresh_hand, q)
        units = lexicon.query_units(q, STOPWORDS)
        sa, sb = hand.search(units, K), fresh_hand.search(units, K)
        scores_equal &= np.allclose([s for _, s in sa], [s for _, s in sb], rtol=1e-6)
        same["hand-written"] += a == b
        same_set["hand-written"] += set(a) == set(b)
        stale["hand-written"] += len(set(a) & gone)
        a, b = tan.search(q), fresh_tan.search(q)
        same["tantivy"] += a == b
        same_set["tantivy"] += set(a) == set(b)
        stale["tantivy"] += len(set(a) & gone)
    return {"times": times, "same_top10": same, "same_top10_set": same_set, "deleted_returned": stale,
            "hand_scores_equal_fresh": bool(scores_equal), "queries": len(qs), "tantivy_segments": tan.searcher.num_segments}


def quality(rows, names: dict[int, str], configs: dict) -> dict:
    from archivist.retrieval.evaluate import load_set
    from archivist.retrieval.evaluation import credit, mean_metrics, ranking_metrics

    doc_of = {r[0]: r[1] for r in rows}
    sets = {"debian-reference (tuning)": "debian_reference.jsonl", "foldoc (tuning)": "foldoc.jsonl",
            "debian-reference-heldout (held out)": "debian_reference_heldout.jsonl"}
    out, per_query = {}, {}
    for label, (kind, build) in configs.items():
        t0 = time.perf_counter()
        index = build(rows)
        search = (lambda q: handwritten_search(index, q)) if kind == "hand" else index.search
        out[label] = {}
        for set_name, file in sets.items():
            per = []
            for q in load_set(EVALSETS / file, "retrieval"):
                passages = [(names[doc_of[c]], c) for c in search(q.question)]
                per.append(ranking_metrics(credit(passages, q.relevant), len(set(q.relevant))))
            out[label][set_name] = mean_metrics(per)
            per_query.setdefault(label, {})[set_name] = per
        log(f"quality {label} ({time.perf_counter() - t0:.0f}s): " + ", ".join(
            f"{s} hit@5 {m['hit@5']:.3f} mrr@10 {m['mrr@10']:.3f}" for s, m in out[label].items()))
    return out, per_query


def leads(per_query: dict, base: str, split: str) -> dict[str, dict]:
    """Each configuration's paired bootstrap lead over `base` on MRR@10 and hit@5, over every
    question of the sets whose name holds `split` pooled."""
    from archivist.retrieval.evaluation import paired_difference

    def pooled(label, metric):
        return [q[metric] for name, qs in per_query[label].items() if split in name for q in qs]

    return {label: {m: paired_difference(pooled(label, m), pooled(base, m)) for m in ("mrr@10", "hit@5")}
            for label in per_query if label != base}


# -- report -------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-quality", action="store_true")
    args = ap.parse_args(argv)
    import tantivy

    from archivist.catalog import installed_versions
    from archivist.retrieval import lexicon

    data: dict = {"tantivy": installed_versions(["tantivy"]).get("tantivy", getattr(tantivy, "__version__", None))}
    body = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-lexical-"))
    try:
        if not args.skip_speed:
            body.append(speed(args, tmp, data))
        if not args.skip_quality:
            body.append(quality_section(data))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report("lexical", "Lexical index: Tantivy vs hand-written", "\n\n".join(body), data)
    return 0


def speed(args, tmp: Path, data: dict) -> str:
    rows = speed_rows()
    qs = questions(args.queries)
    log(f"{len(rows)} chunks, {len(qs)} questions")
    builds = build_times(rows, args.repeats, tmp)
    before = rss_mb()
    hand = handwritten_build(rows)
    for q in qs:
        handwritten_search(hand, q)
    rss_hand = rss_mb() - before
    before = rss_mb()
    tan = Tantivy(tmp / "main")
    tan.add(rows)
    for q in qs:
        tan.search(q)
    rss_tan = rss_mb() - before
    disk_tan = sum(p.stat().st_size for p in (tmp / "main").rglob("*") if p.is_file()) / 2**20
    log(f"RSS delta: hand-written {rss_hand:.0f} MB, tantivy {rss_tan:.0f} MB (+{disk_tan:.0f} MB on disk)")
    agree = sum(len(set(handwritten_search(hand, q)) & set(tan.search(q))) for q in qs) / (K * len(qs))
    lat = latencies({"hand-written": lambda q: handwritten_search(hand, q), "tantivy": tan.search}, qs, args.repeats)
    inc = incremental(hand, tan, rows, qs[:200], args.repeats, tmp)
    p = {n: (median([x[0] for x in v]), median([x[1] for x in v])) for n, v in lat.items()}
    b = {n: median(v) for n, v in builds.items()}
    t = {n: median(v) * 1000 for n, v in inc["times"].items()}
    table = md_table(["", "hand-written (lexicon.py)", "Tantivy " + str(data["tantivy"]), "Tantivy / hand-written"], [
        ["query p50 ms", p["hand-written"][0], p["tantivy"][0], p["tantivy"][0] / p["hand-written"][0]],
        ["query p95 ms", p["hand-written"][1], p["tantivy"][1], p["tantivy"][1] / p["hand-written"][1]],
        ["build 100k chunks s", b["hand-written"], b["tantivy"], b["tantivy"] / b["hand-written"]],
        ["delete 1,000 chunks ms", t["hand-written delete"], t["tantivy delete"], t["tantivy delete"] / t["hand-written delete"]],
        ["add 1,000 chunks ms", t["hand-written add"], t["tantivy add"], t["tantivy add"] / t["hand-written add"]],
        ["RSS delta MB", rss_hand, rss_tan, rss_tan / rss_hand],
    ])
    n = inc["queries"]
    data.update(builds=builds, latency=lat, incremental=inc, rss_mb={"hand-written": rss_hand, "tantivy": rss_tan},
                tantivy_disk_mb=disk_tan, top10_overlap=agree, chunks=len(rows), questions=len(qs))
    return (f"{len(rows):,} chunks (bench/query.py's workspace), {len(qs)} real questions x {args.repeats} repeats "
            f"alternated per query, k={K}; medians of the repeats.\n\n{table}\n\n"
            f"Tantivy also keeps {disk_tan:.0f} MB on disk (its RSS delta counts the pages it touched). "
            f"Top-10 overlap between the two: {agree:.2f}. After {args.repeats} x (delete 1,000 + add 1,000) "
            f"the rankings equal a fresh build's on {inc['same_top10']['hand-written']}/{n} queries (hand-written, "
            f"scores equal: {inc['hand_scores_equal_fresh']}) and {inc['same_top10']['tantivy']}/{n} (Tantivy; same "
            f"top-10 sets {inc['same_top10_set']['tantivy']}/{n}, {inc['tantivy_segments']} segments); deleted chunks "
            f"returned: {inc['deleted_returned']['hand-written']} and {inc['deleted_returned']['tantivy']}.")


def quality_section(data: dict) -> str:
    from archivist.retrieval import lexicon

    rows, names = quality_rows()
    log(f"quality corpus: {len(rows)} chunks of {len(names)} documents")
    configs = {
        "hand-written, FTS5 bm25 (text 1, heading 0.5)": ("hand", handwritten_build),
        "Tantivy, text 1 + heading 0.5": ("tan", lambda rows: _tan(rows, {"text": 1.0, "heading": 0.5})),
        "Tantivy, text 1 + heading 0.5 + title 1": ("tan", lambda rows: _tan(rows, {"text": 1.0, "heading": 0.5, "title": 1.0})),
    }
    configs.update(bm25f_configs())
    q, per_query = quality(rows, names, configs)
    base = next(iter(q))
    tuning, held = leads(per_query, base, "tuning"), leads(per_query, base, "held out")
    data.update(quality=q, tuning_leads=tuning, heldout_leads=held)
    sets = list(next(iter(q.values())))
    header = ["system / fields"] + [f"{s} {m}" for s in sets for m in ("hit@5", "MRR@10")] + [
        "tuning MRR@10 lead [95% CI]", "held-out MRR@10 lead [95% CI]"]

    def lead(d, label):
        x = d.get(label, {}).get("mrr@10")
        return f"{x['diff']:+.3f} [{x['low']:+.3f}, {x['high']:+.3f}]" if x else "-"

    rows_ = [[label] + [q[label][s][m] for s in sets for m in ("hit@5", "mrr@10")] + [lead(tuning, label), lead(held, label)]
             for label in q]
    return (f"Quality, lexical only: {len(rows)} chunks of {len(names)} documents (2,000 FOLDOC entries and the "
            f"Debian Reference, chunked as ingestion does), k={K}. Leads: paired bootstrap over the questions, "
            f"against the first row (today's default).\n\n" + md_table(header, rows_))


def bm25f_configs() -> dict:
    """Field weightings of the hand-written index to compare (title, heading, identifier)."""
    from archivist.retrieval.lexicon import Fields

    grid = [Fields(heading=h, title=t, identifier=i) for h, t, i in (
        (0.5, 0.5, 0), (0.5, 1, 0), (0.5, 2, 0), (1, 0, 0), (0.25, 0, 0), (1, 1, 0), (0.5, 0, 0.5), (0.5, 0, 1), (0.5, 0, 2))]
    return {f"hand-written, BM25F heading {f.heading:g} title {f.title:g} identifier {f.identifier:g}":
            ("hand", lambda rows, f=f: handwritten_build(rows, f)) for f in grid}


def _tan(rows, weights):
    index = Tantivy(None, weights)
    index.add(rows)
    return index


if __name__ == "__main__":
    raise SystemExit(main())

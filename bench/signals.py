"""More signals over hybrid search, scored on the TUNING splits only (bench/RESULTS.md, findings 37-39 and 41).

    python bench/signals.py [--corpus git,handbook,python] [--signal prf,heading,page,cards,size,clauses,spans,lexprf]

Per tuning question with a relevant page, the hybrid search as served (`fusion.fuse` over the dense
and lexical top `candidates`), then each variant of each signal:

  prf      dense pseudo-relevance feedback (Rocchio): the query vector moved towards the mean stored
           vector of the served top m (q' = q + beta x mean, normalized), the dense side searched
           again with q' and fused with the same lexical side;
  heading  + lam x the cosine of the query with the embedded document title and heading path of
           each candidate chunk (a dense title field, beside BM25F's lexical one);
  page     + gam x the best fused score of another candidate chunk of the same page (a page that
           holds two good chunks rises);
  cards    one vector per document, its card (title, then the first CARD_CHARS characters of its
           text): the best chunk (by cosine) of each of the M documents whose cards are nearest the
           query added to the dense candidates, fused again, + lam x the card cosine of each
           candidate's document. A manual's page says what it is for in its first lines
           ("git-worktree - Manage multiple working trees"), where a paraphrased question may
           match none of its chunks;
  size     - lam x the log of the number of chunks of each candidate's document (see `size`);
  clauses  each candidate's cosine lifted by its best clause of the question, the clauses embedded
           on their own (finding 39);
  spans    the same, the clauses pooled from the question's own token vectors (one forward pass).
  lexprf   lexical pseudo-relevance feedback: the n words of the served top m chunks with the highest
           tf x idf that the question lacks are added to its words, the lexical side searched again
           and fused with the same dense side (finding 41).

Document-level hit@5 and MRR@10 as `evaluate_retrieval` credits them; each variant's MRR@10
against the served hybrid's by `evaluation.paired_difference`. Held-out questions are never loaded.
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import answers  # noqa: E402
from common import log  # noqa: E402

CARD_CHARS = 1000
VARIANTS = {
    "prf": [(m, beta) for m in (1, 3, 5) for beta in (0.25, 0.5, 1.0)],
    "heading": [0.05, 0.1, 0.2, 0.3],
    "page": [0.1, 0.25, 0.5],
    "cards": [(m, lam) for m in (0, 5, 10) for lam in (0.0, 0.05, 0.1, 0.2, 0.3)],
    "size": [0.01, 0.02, 0.05, 0.1],
    "clauses": [(more, beta) for more in (False, True) for beta in (0.25, 0.5, 1.0, 2.0)],
    "spans": [0.25, 0.5, 1.0, 2.0],
    "lexprf": [(m, n) for m in (1, 3, 5) for n in (2, 5, 10)],
}


class Question:
    """One tuning question's served hybrid: its vector, lexical side, and fused scores (`base`)."""

    def __init__(self, corpus: "Corpus", text: str):
        from archivist.retrieval.search import lexical_ranking

        self.corpus, self.text = corpus, text
        self.qv = corpus.emb.embed([text])[0].astype(np.float32)
        self.lex = lexical_ranking(corpus.ws, text, corpus.cids, corpus.ws.settings.candidates)
        self.base = self.hybrid(self.qv)

    def hybrid(self, qv: np.ndarray, extra: list[tuple[int, float]] = (), lex=None) -> dict[int, float]:
        """Fused scores with the query vector `qv`, `extra` (chunk, cosine) added to the dense side,
        and the lexical side `lex` (default: the question's own)."""
        from archivist.retrieval.fusion import cosines, fuse
        from archivist.retrieval.search import dense

        ws = self.corpus.ws
        lex = lex or self.lex
        d = dense(ws, qv, self.corpus.cids, ws.settings.candidates)
        have = {k for k, _ in d}
        d += [(k, cos) for k, cos in extra if k not in have]
        return fuse(ws, qv, sorted(d, key=lambda x: -x[1]), lex, cosines(ws, [c for c, _ in lex.hits], qv))


class Corpus:
    """A public corpus's workspace and what the signals read of it, computed once."""

    def __init__(self, name: str, signals: list[str]):
        from archivist.models import embedder_for

        self.ws = answers.workspace(name)
        self.emb = embedder_for(self.ws.settings)
        self.cids = [r[0] for r in self.ws.db.execute("SELECT id FROM collections")]
        rows = self.ws.db.execute("SELECT c.id, c.document_id, d.path, d.title, c.heading "
                                  "FROM chunks c JOIN documents d ON d.id = c.document_id").fetchall()
        self.page = {r[0]: r[2] for r in rows}
        self.doc_of = {r[0]: r[1] for r in rows}
        self.chunks_of: dict[int, list[int]] = {}
        for r in rows:
            self.chunks_of.setdefault(r[1], []).append(r[0])
        if "heading" in signals:
            self.label = {r[0]: r[4] if (r[4] or "").startswith(r[3] or "") else f"{r[3]} > {r[4]}" for r in rows}
            unique = sorted(set(self.label.values()))
            self.label_vec = dict(zip(unique, self.emb.embed(unique)))
        if "cards" in signals:
            docs = self.ws.db.execute("SELECT id, title, text FROM documents").fetchall()
            self.doc_ids = [r[0] for r in docs]
            self.cards = np.asarray(self.emb.embed([f"{r[1] or ''}\n{(r[2] or '')[:CARD_CHARS]}" for r in docs]), np.float32)


def prf(q: Question) -> dict:
    from archivist.retrieval.fusion import stored_vectors

    top = sorted(q.base, key=lambda c: (-q.base[c], c))
    vecs = stored_vectors(q.corpus.ws, top[:max(m for m, _ in VARIANTS["prf"])])
    out = {}
    for m, beta in VARIANTS["prf"]:
        qv = q.qv + beta * np.mean([vecs[c] for c in top[:m] if c in vecs], axis=0)
        out[(m, beta)] = q.hybrid((qv / np.linalg.norm(qv)).astype(np.float32))
    return out


def heading(q: Question) -> dict:
    c = q.corpus
    tcos = {k: float(c.label_vec[c.label[k]] @ q.qv) for k in q.base}
    return {lam: {k: s + lam * tcos[k] for k, s in q.base.items()} for lam in VARIANTS["heading"]}


def page(q: Question) -> dict:
    by_page: dict[str, list[tuple[float, int]]] = {}
    for k, s in q.base.items():
        by_page.setdefault(q.corpus.page[k], []).append((s, k))
    other = {}  # chunk -> the best fused score of another candidate chunk of its page (0 if none)
    for chunks in by_page.values():
        chunks.sort(reverse=True)
        for s, k in chunks:
            rest = [t for t, j in chunks if j != k]
            other[k] = rest[0] if rest else 0.0
    return {gam: {k: s + gam * other[k] for k, s in q.base.items()} for gam in VARIANTS["page"]}


def cards(q: Question) -> dict:
    from archivist.retrieval.fusion import stored_vectors

    c = q.corpus
    card_cos = dict(zip(c.doc_ids, (c.cards @ q.qv).tolist()))
    near = sorted(c.doc_ids, key=lambda d: -card_cos[d])
    out = {}
    for m in sorted({m for m, _ in VARIANTS["cards"]}):
        extra = []
        for doc in near[:m]:
            vecs = stored_vectors(c.ws, c.chunks_of[doc])
            best = max(vecs, key=lambda k: float(vecs[k] @ q.qv))
            extra.append((best, float(vecs[best] @ q.qv)))
        fused = q.hybrid(q.qv, extra) if m else q.base
        for mm, lam in VARIANTS["cards"]:
            if mm == m:
                out[(m, lam)] = {k: s + lam * card_cos[c.doc_of[k]] for k, s in fused.items()}
    return out


def size(q: Question) -> dict:
    """- lam x log(chunks of the candidate's document): a page ranked by its best chunk wins more
    often the more chunks it has (more draws), whatever the question; long guides and tutorials
    (git's user-manual.html, 300 chunks) then crowd out the short manual page that answers."""
    c = q.corpus
    return {lam: {k: s - lam * np.log(len(c.chunks_of[c.doc_of[k]])) for k, s in q.base.items()}
            for lam in VARIANTS["size"]}


_CLAUSE = re.compile(r"[;,:?()]|\b(?:and|but|so|or|because|when|while|without|instead of)\b", re.I)


def _clause_spans(text: str) -> list[tuple[int, int]]:
    """The character spans of the question's clauses of three words or more (cut at punctuation and
    joining words)."""
    out, at = [], 0
    for m in _CLAUSE.finditer(text):
        out.append((at, m.start()))
        at = m.end()
    out.append((at, len(text)))
    return [(a, b) for a, b in out if len(text[a:b].split()) >= 3]


def _lifted(q: Question, ids: set[int], cvs: list[np.ndarray], betas) -> dict:
    """beta -> the served hybrid with each candidate of `ids` at (cos + beta x its best clause cosine)
    / (1 + beta), the clauses' vectors `cvs`."""
    from archivist.retrieval.fusion import cosines_of, fuse, stored_vectors

    ws = q.corpus.ws
    vecs = stored_vectors(ws, sorted(ids))
    full = cosines_of(vecs, q.qv)
    best = {k: max(float(v @ cv) for cv in cvs) for k, v in vecs.items()}
    out = {}
    for beta in betas:
        comb = {k: (full[k] + beta * best[k]) / (1 + beta) for k in vecs}
        d = sorted(comb.items(), key=lambda x: -x[1])[:ws.settings.candidates]
        out[beta] = fuse(ws, q.qv, d, q.lex, comb)
    return out


def clauses(q: Question) -> dict:
    """The question's clauses embedded on their own: each candidate's cosine becomes
    (cos + beta x its best clause cosine) / (1 + beta). A long paraphrased question ("I need a second
    branch checked out in another folder ..., sharing the same repository instead of cloning again;
    how?") is one vector pulled towards every topic it mentions; its clauses each ask one thing.
    more False: only the served candidates are rescored; True: each clause's dense top
    `candidates` join them."""
    from archivist.retrieval.search import dense

    c = q.corpus
    parts = [q.text[a:b].strip() for a, b in _clause_spans(q.text)]
    if len(parts) < 2:
        return {v: q.base for v in VARIANTS["clauses"]}
    cvs = list(np.asarray(c.emb.embed(parts), np.float32))
    out = {}
    for more in (False, True):
        ids = set(q.base)
        if more:
            for cv in cvs:
                ids |= {k for k, _ in dense(c.ws, cv, c.cids, c.ws.settings.candidates)}
        betas = [beta for mm, beta in VARIANTS["clauses"] if mm == more]
        out.update({(more, beta): fused for beta, fused in _lifted(q, ids, cvs, betas).items()})
    return out


@functools.lru_cache(maxsize=1)
def _token_model():
    from sentence_transformers import SentenceTransformer

    from archivist.catalog import resolve_embedder

    return SentenceTransformer(resolve_embedder("all-minilm-l6-v2"), device="cpu")


def spans(q: Question) -> dict:
    """As `clauses`, rescoring only, but each clause's vector is pooled from the whole question's
    contextual token vectors over the clause's tokens (one forward pass, as search embeds the query):
    the mean of those tokens, normalized. The torch model stands in for the index's ONNX one."""
    import torch

    parts = _clause_spans(q.text)
    if len(parts) < 2:
        return {v: q.base for v in VARIANTS["spans"]}
    model = _token_model()
    enc = model.tokenizer(q.text, return_offsets_mapping=True, truncation=True, max_length=256, return_tensors="pt")
    offsets = enc.pop("offset_mapping")[0].tolist()
    with torch.no_grad():
        tokens = model[0].auto_model(**enc).last_hidden_state[0].numpy()
    cvs = []
    for a, b in parts:
        rows = [i for i, (s0, s1) in enumerate(offsets) if s1 > s0 and s0 >= a and s1 <= b]
        if rows:
            v = tokens[rows].mean(0)
            cvs.append(v / np.linalg.norm(v))
    if len(cvs) < 2:
        return {v: q.base for v in VARIANTS["spans"]}
    return _lifted(q, set(q.base), cvs, VARIANTS["spans"])


def lexprf(q: Question) -> dict:
    from archivist.retrieval import lexicon, lexicon_store
    from archivist.retrieval.query import STOPWORDS
    from archivist.retrieval.search import lexical_ranking

    ws = q.corpus.ws
    index = lexicon_store.current(ws)
    top = sorted(q.base, key=lambda c: (-q.base[c], c))
    read = top[:max(m for m, _ in VARIANTS["lexprf"])]
    text = dict(ws.db.execute(f"SELECT id, text FROM chunks WHERE id IN ({','.join(map(str, read))})").fetchall())
    asked = {lexicon.stem(w) for w in re.findall(r"[a-z][a-z0-9_-]+", q.text.lower())}
    out = {}
    for m, n in VARIANTS["lexprf"]:
        tf: dict[str, tuple[int, str]] = {}
        for c in top[:m]:
            for w in re.findall(r"[a-z][a-z0-9_-]{2,}", text[c].lower()):
                st = lexicon.stem(w)
                if w not in STOPWORDS and st not in asked:
                    tf[st] = (tf.get(st, (0, w))[0] + 1, w)
        weight = {st: k * np.log(index.n_live / (1 + index.df(st))) for st, (k, _) in tf.items()}
        words = [tf[st][1] for st in sorted(weight, key=lambda st: -weight[st])[:n]]
        lex = lexical_ranking(ws, q.text + " " + " ".join(words), q.corpus.cids, ws.settings.candidates)
        out[(m, n)] = q.hybrid(q.qv, lex=lex)
    return out


SIGNALS = {"prf": prf, "heading": heading, "page": page, "cards": cards, "size": size, "clauses": clauses, "spans": spans,
           "lexprf": lexprf}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default="git,handbook,python")
    ap.add_argument("--signal", default=",".join(SIGNALS))
    args = ap.parse_args(argv)

    from archivist.retrieval.evaluation import credit, paired_difference, ranking_metrics

    corpora, signals = args.corpus.split(","), args.signal.split(",")
    per: dict = {}  # variant ("base", or (signal, params)) -> [(corpus, hit@5, MRR@10)] per question
    for name in corpora:
        corpus = Corpus(name, signals)
        for question in answers.questions(name, "tuning"):
            if not question.relevant:
                continue
            q = Question(corpus, question.question)
            scored = {"base": q.base}
            for signal in signals:
                scored.update({(signal, v): s for v, s in SIGNALS[signal](q).items()})
            for variant, scores in scored.items():
                order = sorted(scores, key=lambda k: (-scores[k], k))[:10]
                m = ranking_metrics(credit([(corpus.page[k], k) for k in order], question.relevant), len(question.relevant))
                per.setdefault(variant, []).append((name, m["hit@5"], m["mrr@10"]))
        corpus.ws.close()
        log(f"{name}: {len(per['base'])} questions so far")

    def summary(rows) -> str:
        return " ".join(f"{c} {np.mean([r[1] for r in rows if r[0] == c]):.3f}/{np.mean([r[2] for r in rows if r[0] == c]):.3f}"
                        for c in corpora)

    base = per["base"]
    print(f"tuning questions: {len(base)}; served hybrid hit@5 {np.mean([r[1] for r in base]):.3f} "
          f"MRR@10 {np.mean([r[2] for r in base]):.4f} (hit@5/MRR@10 {summary(base)})")
    for variant, rows in per.items():
        if variant == "base":
            continue
        d = paired_difference([r[2] for r in rows], [r[2] for r in base])
        print(f"{variant[0]} {variant[1]}: hit@5 {np.mean([r[1] for r in rows]):.3f} MRR@10 {np.mean([r[2] for r in rows]):.4f} "
              f"diff {d['diff']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}] (hit@5/MRR@10 {summary(rows)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

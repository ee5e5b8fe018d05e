"""The tuning rows bench/tune_quote.py scores offline: each tuning question searched once, as `ask`
searches it (`collect`, kept in bench/data/results/tune-quote-<corpus>.json, read back by `load`), and
the embeddings of their texts, kept on disk between runs (`CachedEmbedder`). Retrieval does not change
while the quote scorer is tuned, so --collect runs once and every variant reads these files.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from answers import CORPORA, questions, workspace  # noqa: E402
from common import RESULTS  # noqa: E402


def collect(names=CORPORA) -> None:
    """Search every tuning question once, as `ask` does (standalone question, k*2 hits, the
    answerability gate's inputs, the passages packed into the prompt), and keep it all. Each
    corpus's tuning questions are also asked of the two other corpora: generated unanswerable
    questions (`asked_of` differs from `corpus`), for the not-found model."""
    from archivist.models import embedder_for
    from archivist.retrieval import lexicon, lexicon_store
    from archivist.retrieval.answer import MAX_CONTEXT, ANSWER_ROOM, build_messages, pack
    from archivist.retrieval.answerability import answerability
    from archivist.retrieval.llm import llm_for
    from archivist.retrieval.query import query_terms
    from archivist.retrieval.search import search

    llm = None
    for name in names:
        out = []
        ws = workspace(name)
        s = ws.settings
        emb = embedder_for(s)
        llm = llm or llm_for(s)
        budget = min(llm.context_window, MAX_CONTEXT) - min(s.max_new_tokens, ANSWER_ROOM)
        index = lexicon_store.current(ws)
        for corpus in CORPORA:
            for q in questions(corpus, "tuning"):
                hits = search(ws, q.question, k=max(s.top_k, 1) * 2, embedder=emb)
                fixed = llm.count_tokens(llm.render(build_messages(q.question, [])))
                passages = pack(hits, llm.count_tokens, budget, q.question, fixed=fixed)[: s.top_k]
                terms = [(t, index.df(lexicon.stem(t))) for t in query_terms(q.question)]
                out.append({"corpus": corpus, "asked_of": name, "question": q.question, "answers": q.answers,
                            "kind": q.extra.get("kind"), "relevant": q.relevant, "n_live": index.n_live,
                            "terms": terms, "answerability": answerability(ws, q.question, hits),
                            "hits": [{**asdict(h), "heading": list(h.heading)} for h in hits],
                            "passages": [{**asdict(h), "heading": list(h.heading)} for h in passages]})
        ws.close()
        RESULTS.mkdir(parents=True, exist_ok=True)
        cache(name).write_text(json.dumps(out))


def cache(name: str) -> Path:
    return RESULTS / f"tune-quote-{name}.json"


def load() -> list[dict]:
    return [r for name in CORPORA if cache(name).exists() for r in json.loads(cache(name).read_text())]


class CachedEmbedder:
    """The embedder with a memo, kept on disk between runs (RESULTS/tune-quote-vectors.npz)."""

    def __init__(self, inner):
        import numpy as np

        self.inner, self.memo = inner, {}
        for path in sorted(RESULTS.glob("tune-quote-vectors*.npz")):
            z = np.load(path, allow_pickle=False)
            self.memo.update(zip(z["texts"].tolist(), z["vectors"]))

    def embed(self, texts):
        import numpy as np

        todo = [t for t in dict.fromkeys(texts) if t not in self.memo]
        if todo:
            for t, v in zip(todo, self.inner.embed(todo)):
                self.memo[t] = v
        return np.stack([self.memo[t] for t in texts])

    def save(self, part: str = "all"):
        import numpy as np

        texts = list(self.memo)
        np.savez(RESULTS / f"tune-quote-vectors-{part}.npz", texts=np.array(texts),
                 vectors=np.stack([self.memo[t] for t in texts]))

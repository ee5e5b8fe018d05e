"""Adapt the embedder to the workspace's own documents: `archivist finetune --target retriever`.

One recipe, top to bottom:

    config     RetrieverConfig (defaults sized for a 2-core CPU: 4,000 chunks in under 15 minutes)
    data       the documents the acting user may read, split by document into train and held-out;
               one synthetic question per chunk: the extractive generator's question where the chunk
               has a checkable fact (finetune/qa.py), else one of its sentences, taken out of the
               passage it must find (the inverse cloze task: the question never appears verbatim)
    negatives  per question, a passage of another document that BM25 (retrieval/lexicon.py) or the
               current embedder ranks high: the near misses the model must learn to push down
    train      sentence-transformers, MultipleNegativesRankingLoss over (question, passage, hard
               negative): every other passage in the batch is a negative too
    evaluate   the base and the adapted model on the held-out documents' questions, each ranking every
               chunk of the held-out documents as search serves it: hybrid, BM25 over those chunks
               (retrieval/lexicon.py) and the model's cosines fused by retrieval/fusion.py's `fuse`
               with the workspace's settings; dense alone beside it, for the record. hit@5, MRR@10
               and a paired bootstrap interval of the difference (retrieval/evaluation.py)
    save       embedders/<name>/ under the workspace: safetensors weights and archivist.json with its
               lineage (base, collections, documents, config, metrics, who trained it)
    activate   only when better (hybrid MRR@10's interval above zero: a model can gain in dense
               ranking and still lose once fused with BM25, bench/RESULTS.md findings 25 and 30),
               by an admin: every chunk is re-embedded (retrieval/reembed.py; resumable, the old
               index serves until the switch)

Access. The questions come only from collections the acting user may read, and the embedder is
listed only to users who may read all of them. Once active, it embeds every user's queries: that
is safe because a query vector is only ever compared with the vectors of collections the asking
user may read (the scope is applied in retrieval/search.py, in one place), so what a user is shown
is chosen among readable chunks alone; the weights themselves are never served. What remains is
the weights' influence on the order of readable chunks, which carries no text of the unreadable
ones. tests/test_retriever_finetune.py checks that such a user's searches return only readable
chunks after the switch.
"""

from __future__ import annotations

import logging
import random
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from archivist import access, audit, jobs
from archivist.finetune.embedders import FOLDER, activate, check_free, fresh_name, load_manifest, save
from archivist.settings import _f, python_module
from archivist.workspace import Workspace, transaction

log = logging.getLogger(__name__)

QUESTION_KINDS = ("extractive", "sentence")


@dataclass
class SyntheticSplit:
    """What the retriever and the reranker learn from: synthetic questions over the documents of
    `collections` (the acting user's), split by document into training and held-out."""

    collections: list[str] | None = _f(None, "collections to learn from (default: every one the user may read)")
    questions: str = _f("extractive,sentence", "synthetic questions: extractive (fact questions, finetune/qa.py), "
                                               "sentence (a sentence taken out of its passage), comma-separated")
    max_eval: int = _f(400, "most held-out questions")
    eval_fraction: float = _f(0.2, "share of documents held out for the before/after evaluation")
    seed: int = _f(0, "seed of the split, the sample, the sentence choice and the shuffling")

    def __post_init__(self):
        kinds = [k.strip() for k in self.questions.split(",") if k.strip()]
        if not kinds or any(k not in QUESTION_KINDS for k in kinds):
            raise ValueError(f"questions must be a comma-separated choice of {', '.join(QUESTION_KINDS)}, got {self.questions!r}")
        if not 0 < self.eval_fraction < 1:
            raise ValueError(f"eval_fraction must be in (0, 1), got {self.eval_fraction}")
        if self.max_eval < 1:
            raise ValueError(f"max_eval must be at least 1, got {self.max_eval}")


@dataclass
class RetrieverConfig(SyntheticSplit):
    max_chunks: int = _f(4000, "most training chunks (a seeded sample of the training documents' chunks)")
    epochs: int = _f(1, "passes over the training questions")
    batch_size: int = _f(32, "questions per step; the batch's other passages are its negatives")
    lr: float = _f(3e-5, "AdamW learning rate (linear warm-up over the first 10% of steps, then linear decay)")
    max_seq_len: int = _f(128, "tokens of a passage seen in training (the index embeds up to the model's limit)")
    train_layers: int = _f(2, "top transformer layers trained (the rest and the word embeddings stay frozen): on a "
                              "CPU the backward pass through all six of MiniLM's costs ~2x the time; 0 = all")
    hard_negatives: bool = _f(True, "add one BM25 / current-embedder hard negative per question")
    activate: str = _f("auto", "auto (when the held-out hybrid MRR@10 interval is above zero) | always | never")
    name: str | None = _f(None, "name of the adapted embedder (default: retriever-<n>)")

    def __post_init__(self):
        super().__post_init__()
        if self.train_layers < 0:
            raise ValueError(f"train_layers must be >= 0, got {self.train_layers}")
        for name in ("max_chunks", "epochs", "batch_size", "max_seq_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ValueError("batch_size must be at least 2 (in-batch negatives)")
        if self.activate not in ("auto", "always", "never"):
            raise ValueError(f"activate must be auto, always or never, got {self.activate!r}")
        if self.name is not None:
            access.check_name(self.name, "embedder name")


@dataclass
class Pair:
    """A synthetic question, the text of the chunk it must find (without the question, for a sentence
    question) and its heading, its chunk and document, and a hard negative passage (or None)."""

    query: str
    text: str
    heading: str
    chunk_id: int
    document_id: int
    kind: str
    negative: str | None = None

    @property
    def passage(self) -> str:
        """What the question must find, as embedded: heading, then text."""
        return _embedded(self.text, self.heading)


# -- data ----------------------------------------------------------------------------------------

_SENTENCE = re.compile(r"[^.!?\n]+[.!?]")


def _embedded(text: str, heading: str) -> str:
    return f"{heading}\n{text}" if heading else text


def question_for(text: str, kinds: tuple[str, ...], rng: random.Random) -> tuple[str, str, str] | None:
    """(question, the text it must find, kind) for one chunk's text, or None when it offers neither kind.

    extractive: finetune/qa.py's fact question; it must find the whole text.
    sentence: a sentence of 6-40 words; it must find the text without it (inverse cloze)."""
    if "extractive" in kinds:
        from archivist.finetune.qa import extractive_pairs

        pairs = extractive_pairs(text, max_pairs=1)
        if pairs and ("sentence" not in kinds or rng.random() < 0.5):
            return pairs[0].question, text, "extractive"
    if "sentence" in kinds:
        found = [m for m in _SENTENCE.finditer(text) if 6 <= len(m.group(0).split()) <= 40]
        if found and len(text.split()) >= 20:
            m = rng.choice(found)
            rest = (text[:m.start()] + text[m.end():]).strip()
            if len(rest.split()) >= 10:
                return m.group(0).strip(), rest, "sentence"
    return None


def split_documents(documents: list[dict], eval_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, held-out) document ids: finetune.datasets' seeded split by document."""
    from archivist.finetune.datasets import split_groups

    held = split_groups([str(d["id"]) for d in documents], eval_fraction, seed)
    return ([d["id"] for d in documents if str(d["id"]) not in held], [d["id"] for d in documents if str(d["id"]) in held])


def readable_split(ws: Workspace, user: str | None, collections: list[str] | None, eval_fraction: float,
                   seed: int) -> tuple[str, list[dict], list[int], list[int]]:
    """(user, the documents they may read in `collections`, train ids, held-out ids). Raises
    ValueError for fewer than two documents, AccessDenied for a collection they may not read."""
    from archivist.finetune.datasets import readable_documents

    user = access.current_user(ws, user)
    documents = readable_documents(ws, user, collections)
    if len(documents) < 2:
        raise ValueError(f"need at least two readable documents to train and hold one out; {user!r} may read {len(documents)}")
    return (user, documents, *split_documents(documents, eval_fraction, seed))


def _chunks(ws: Workspace, doc_ids: list[int]) -> list:
    rows = []
    for i in range(0, len(doc_ids), 900):
        part = doc_ids[i:i + 900]
        rows += ws.db.execute(f"SELECT c.id, c.document_id, d.collection_id, c.text, c.heading, COALESCE(d.title, '') "
                              f"AS title FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.document_id IN "
                              f"({','.join('?' * len(part))}) ORDER BY c.id", part).fetchall()
    return rows


def make_pairs(ws: Workspace, doc_ids: list[int], kinds: tuple[str, ...], limit: int, seed: int) -> list[Pair]:
    """One synthetic question per chunk of these documents, for a seeded sample of at most `limit` chunks."""
    rng = random.Random(seed)
    rows = _chunks(ws, doc_ids)
    rng.shuffle(rows)
    out = []
    for r in rows:
        found = question_for(r["text"], kinds, rng)
        if found:
            out.append(Pair(found[0], found[1], r["heading"], r["id"], r["document_id"], found[2]))
            if len(out) >= limit:
                break
    return out


def mine_negatives(ws: Workspace, pairs: list[Pair], doc_ids: list[int], embedder, seed: int) -> None:
    """Give each pair a hard negative: a chunk of another training document ranked 3rd to 10th by
    BM25 (even pairs) or by the current embedder (odd pairs). Ranks 1-2 are skipped: the top of a
    ranking is where passages that answer the question as well sit (false negatives)."""
    from archivist.retrieval import lexicon, lexicon_store
    from archivist.retrieval.query import stopwords_of

    rng = random.Random(seed)
    rows = _chunks(ws, doc_ids)
    text_of = {r["id"]: _embedded(r["text"], r["heading"]) for r in rows}
    doc_of = {r["id"]: r["document_id"] for r in rows}
    ids = np.array([r["id"] for r in rows], np.int64)
    blobs = dict(ws.db.execute(f"SELECT id, embedding FROM chunks WHERE id IN ({','.join(map(str, ids.tolist()))})").fetchall()) if len(ids) else {}
    matrix = np.stack([np.frombuffer(blobs[i], np.float32) for i in ids.tolist()]) if len(ids) else None
    index = lexicon_store.current(ws)
    docs = np.array(sorted(set(doc_ids)), np.int64)
    dense_half = [p for k, p in enumerate(pairs) if k % 2]
    qvecs = np.asarray(embedder.embed([p.query for p in dense_half]), np.float32) if dense_half and matrix is not None else None
    qrow = {id(p): i for i, p in enumerate(dense_half)}
    for k, p in enumerate(pairs):
        if k % 2 and qvecs is not None:
            scores = matrix @ qvecs[qrow[id(p)]]
            ranked = ids[np.argsort(-scores)[:12]].tolist()
        else:
            ranked = [c for c, _ in index.search(lexicon.query_units(p.query, stopwords_of(p.query)), 12, documents=docs)]
        choices = [c for c in ranked[2:10] if doc_of.get(c) not in (None, p.document_id)]
        if choices:
            p.negative = text_of[rng.choice(choices)]


# -- train -----------------------------------------------------------------------------------------


def train(base_path: str, pairs: list[Pair], cfg: RetrieverConfig, progress: bool = True):
    """Fine-tune the sentence-transformers model at `base_path` on `pairs`; returns (model, losses)."""
    import torch
    from sentence_transformers import SentenceTransformer, losses
    from tqdm import tqdm

    torch.manual_seed(cfg.seed)
    model = SentenceTransformer(base_path, device="cpu")
    indexed_len = model.max_seq_length
    model.max_seq_length = min(cfg.max_seq_len, indexed_len)  # short passages train ~2x faster; the index embeds in full
    loss_fn = losses.MultipleNegativesRankingLoss(model)
    tokenize = getattr(model, "preprocess", None) or model.tokenize  # sentence-transformers 6 renamed it
    rng = random.Random(cfg.seed)
    steps_per_epoch = max(1, len(pairs) // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    trainable = freeze_below(model, cfg.train_layers)
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=0.01)
    warmup = max(1, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup))))
    model.train()
    losses_seen = []
    bar = tqdm(total=total, desc="train retriever", unit="step", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    for _ in range(cfg.epochs):
        order = pairs[:]
        rng.shuffle(order)
        for s in range(steps_per_epoch):
            batch = order[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            columns = [[p.query for p in batch], [p.passage for p in batch]]
            if cfg.hard_negatives and all(p.negative for p in batch):
                columns.append([p.negative for p in batch])
            elif cfg.hard_negatives:  # a pair without a negative borrows its neighbour's passage
                columns.append([p.negative or batch[(i + 1) % len(batch)].passage for i, p in enumerate(batch)])
            features = [tokenize(c) for c in columns]
            losses_seen.append(optimizer_step(loss_fn(features, None), opt, sched, trainable))
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses_seen[-20:]):.3f}")
    bar.close()
    model.eval()
    model.max_seq_length = indexed_len
    return model, losses_seen


def optimizer_step(loss, opt, sched, params: list) -> float:
    """One step: gradients of `loss`, clipped to norm 1 over `params`, AdamW and the schedule; the loss."""
    import torch

    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    sched.step()
    return loss.item()


def freeze_below(model, top: int) -> list:
    """Freeze the word embeddings and all but the `top` last transformer layers (0: train all) of a
    sentence-transformers model; returns the parameters left to train."""
    freeze_encoder_below(getattr(model[0], "auto_model", None), top)
    return [p for p in model.parameters() if p.requires_grad]


def freeze_encoder_below(encoder, top: int) -> None:
    """Freeze a BERT-style encoder's (`embeddings`, `encoder.layer`) word embeddings and all but its
    `top` last layers; nothing when `top` is 0 or it has no such layers."""
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if top and layers is not None and top < len(layers):
        for p in encoder.embeddings.parameters():
            p.requires_grad_(False)
        for layer in layers[:len(layers) - top]:
            for p in layer.parameters():
                p.requires_grad_(False)


# -- evaluate --------------------------------------------------------------------------------------


def rank_metrics(encode, pairs: list[Pair], corpus: list[tuple], ws: Workspace) -> dict[str, list[dict[str, float]]]:
    """Per search mode ("hybrid", "dense"), per question: hit@5 and MRR@10 of its own chunk among
    `corpus` (`held_out_corpus`'s rows), with `encode(texts) -> normalized vectors`.

    Hybrid is ranked as `search.search` ranks it: the best `settings.candidates` of each side, BM25
    from an index of the corpus alone (weighted by the settings' lexical fields) and exact cosines,
    fused by `fusion.fuse` with the workspace's settings. Near-duplicate collapsing is left out:
    `unambiguous` has already dropped the questions a neighbouring chunk holds verbatim."""
    from archivist.retrieval import lexicon
    from archivist.retrieval.fusion import fuse
    from archivist.retrieval.query import stopwords_of

    ids = np.array([r[0] for r in corpus], np.int64)
    position = {c: i for i, c in enumerate(ids.tolist())}
    docs = np.asarray(encode([_embedded(r[3], r[4]) for r in corpus]), np.float32)
    queries = np.asarray(encode([p.query for p in pairs]), np.float32)
    index = lexicon.Index.empty(lexicon.fields_of(ws)).with_chunks(corpus)
    limit = max(ws.settings.candidates, 10)
    out: dict[str, list[dict[str, float]]] = {"hybrid": [], "dense": []}
    for p, q in zip(pairs, queries):
        cos = docs @ q
        top = np.argsort(-cos, kind="stable")[:limit]
        d_rank = list(zip(ids[top].tolist(), cos[top].tolist()))
        lex = index.rank(lexicon.query_units(p.query, stopwords_of(p.query)), limit)
        scores = fuse(ws, q, d_rank, lex, {c: float(cos[position[c]]) for c, _ in lex.hits})
        out["dense"].append(_at_rank([c for c, _ in d_rank], p.chunk_id))
        out["hybrid"].append(_at_rank(sorted(scores, key=scores.__getitem__, reverse=True), p.chunk_id))
    return out


def _at_rank(order: list[int], wanted: int) -> dict[str, float]:
    """hit@5 and MRR@10 of chunk `wanted` in `order` (best first): evaluation's `ranking_metrics`,
    kept to the two keys the manifest records."""
    from archivist.retrieval.evaluation import ranking_metrics

    m = ranking_metrics([c if c == wanted else None for c in order], 1, ks=(5, 10))
    return {"hit@5": m["hit@5"], "mrr@10": m["mrr@10"]}


def held_out_corpus(ws: Workspace, pairs: list[Pair], doc_ids: list[int]) -> list[tuple]:
    """Every chunk of the held-out documents as `lexicon.Index.with_chunks` takes them (chunk id,
    document id, collection id, text, heading, document title), a question's own chunk in the form
    its question must find (without the sentence, for a sentence question)."""
    own = {p.chunk_id: p.text for p in pairs}
    return [(r["id"], r["document_id"], r["collection_id"], own.get(r["id"], r["text"]), r["heading"], r["title"])
            for r in _chunks(ws, doc_ids)]


def unambiguous(pairs: list[Pair], corpus: list[tuple]) -> list[Pair]:
    """The questions no other passage of the corpus holds verbatim: consecutive chunks overlap
    (settings.chunk_overlap), so a sentence taken out of one chunk may still stand in its
    neighbour, which would then be the right answer too."""
    texts = [(r[0], _embedded(r[3], r[4])) for r in corpus]  # built once, not once per question
    return [p for p in pairs if not any(p.query in text for cid, text in texts if cid != p.chunk_id)]


def compare(base_encode, adapted_encode, pairs: list[Pair], corpus: list[tuple], ws: Workspace) -> dict:
    """{"questions", "corpus", "search": how hybrid fused, "base", "adapted": hybrid metrics,
    "difference": {metric: paired_difference} of hybrid, "dense": the same three for dense alone}."""
    from archivist.retrieval.evaluation import mean_metrics, paired_difference

    before = rank_metrics(base_encode, pairs, corpus, ws)
    after = rank_metrics(adapted_encode, pairs, corpus, ws)

    # a held-out document's questions rise and fall together: the bootstrap draws whole documents
    groups = [p.document_id for p in pairs]

    def side(mode: str) -> dict:
        a, b = after[mode], before[mode]
        return {"base": mean_metrics(b), "adapted": mean_metrics(a),
                "difference": {m: paired_difference([x[m] for x in a], [y[m] for y in b], groups=groups)
                               for m in ("hit@5", "mrr@10")}}

    s = ws.settings
    how = (f"hybrid: linear fusion, lexical weight {s.lexical_weight}, norm {s.fusion_norm}" if s.fusion == "linear"
           else "hybrid: reciprocal rank fusion") + f", {max(s.candidates, 10)} candidates a side"
    return {"questions": len(pairs), "corpus": len(corpus), "search": how, **side("hybrid"), "dense": side("dense")}


def better(evaluation: dict) -> bool:
    """Activated only when better where it is served: the held-out hybrid MRR@10 gain's bootstrap
    interval lies above zero (a dense gain alone does not count: bench/RESULTS.md, finding 25)."""
    return evaluation["difference"]["mrr@10"]["low"] > 0


# -- the whole run -------------------------------------------------------------------------------------


def start_background(ws: Workspace, user: str | None, collections: list[str], max_chunks: int) -> str:
    """Run `finetune_retriever` in its own process (the app's button) as a job of kind `retriever`
    (archivist/jobs.py): listed in `archivist jobs`, cancelled with `archivist jobs cancel ID`. Returns
    its id; its output goes to `log_of(ws, id)`. A click is a training that loads torch and the embedder,
    so one user has one live at a time: raises ValueError naming the one already queued or running."""
    user = access.current_user(ws, user)
    jobs.reconcile(ws)  # a run whose process died is no longer live
    with transaction(ws.db):  # checked and recorded under one write lock: two clicks never both pass
        _none_live(ws, user)
        job = jobs.create(ws, "retriever", user, spec={"collections": list(collections), "max_chunks": max_chunks})
    _spawn(ws, job.id)
    return job.id


def _none_live(ws: Workspace, owner: str) -> None:
    """Raise ValueError naming `owner`'s queued or running retriever job (call it in a transaction,
    with the write that makes another live: a start or a resume)."""
    live = [j for j in jobs.every(ws, ("retriever",), states=jobs.LIVE) if j.owner == owner]
    if live:
        raise ValueError(f"your retriever run {live[0].id} is {live[0].state}; wait for it to end, or cancel it "
                         f"with `archivist jobs cancel {live[0].id}`")


def log_of(ws: Workspace, job_id: str) -> Path:
    """The log of retriever job `job_id`: named by its id, so two runs never write the same file."""
    return ws.path("runs") / f"{job_id}.log"


def _spawn(ws: Workspace, job_id: str) -> None:
    """Start `python -m archivist.finetune.retriever JOB` (queued: a start or a resume) in its own session."""
    import os
    import subprocess

    env = {**os.environ, "ARCHIVIST_HOME": str(ws.home), "ARCHIVIST_CACHE": str(ws.settings.cache),
           "ARCHIVIST_USER": jobs.get_owner(ws, job_id), "PYTHONUNBUFFERED": "1"}
    try:
        with open(log_of(ws, job_id), "ab") as out:
            proc = subprocess.Popen([*python_module("archivist.finetune.retriever"), job_id], stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    except OSError as e:  # left queued under this (live) process, it would refuse every later run of its owner
        jobs.fail(ws, job_id, f"its process could not be started: {e}")
        raise
    jobs.adopt(ws, job_id, proc.pid)


def resume_job(ws: Workspace, job_id: str, user: str | None = None) -> None:
    """Run `user`'s interrupted, failed or cancelled retriever job again from the start (it keeps no
    checkpoint), in the background, as its owner. Raises LookupError, JobError (live or done), and
    ValueError while its owner has another live (resuming cut-short runs is no way past one at a time)."""
    owner = jobs.get(ws, job_id, user).owner  # LookupError for another's, before anything is told of hers
    jobs.reconcile(ws)
    with transaction(ws.db):
        _none_live(ws, owner)
        jobs.requeue(ws, job_id, user)
    _spawn(ws, job_id)


def run_job(ws: Workspace, job_id: str) -> dict:
    """The background process's work: take queued job `job_id`, train as its owner with its spec,
    and end it done with the report, or failed with the reason (then re-raised, for the log)."""
    with transaction(ws.db):  # the run starts with its audit record, or not at all (as an LLM's `finetune.started`)
        job = jobs.start(ws, job_id)
        audit.record(ws, "retriever.started", user=job.owner, target=job_id, detail=job.spec)
    try:
        with jobs.keep_alive(ws, job_id):
            cfg = RetrieverConfig(collections=job.spec.get("collections"), max_chunks=job.spec.get("max_chunks", 4000))
            report = finetune_retriever(ws, cfg, job.owner, progress=False)
    except Exception as e:
        jobs.fail(ws, job_id, str(e))
        raise
    jobs.finish(ws, job_id, result=report, message=report.get("note"))
    return report


def finetune_retriever(ws: Workspace, cfg: RetrieverConfig, user: str | None = None, progress: bool = True) -> dict:
    """The recipe (see the module doc). Returns a report: name, data sizes, timings, the held-out
    evaluation, whether it was activated and the re-embed's numbers. Raises ValueError when the
    readable documents give too few questions to train and evaluate on, FileExistsError (before any
    work) when an adapted embedder has `cfg.name`."""
    import torch
    from archivist.catalog import resolve_embedder
    from archivist.models import embedder_for

    t0 = time.perf_counter()
    if cfg.name:
        check_free(ws, cfg.name)
    user, documents, train_docs, held_docs = readable_split(ws, user, cfg.collections, cfg.eval_fraction, cfg.seed)
    kinds = tuple(k.strip() for k in cfg.questions.split(","))
    train_pairs = make_pairs(ws, train_docs, kinds, cfg.max_chunks, cfg.seed)
    eval_pairs = make_pairs(ws, held_docs, kinds, cfg.max_eval, cfg.seed + 1)
    if len(train_pairs) < cfg.batch_size or not eval_pairs:
        raise ValueError(f"too few synthetic questions: {len(train_pairs)} to train (need a batch, {cfg.batch_size}), "
                         f"{len(eval_pairs)} held out; add documents or lower --batch-size")
    current = embedder_for(ws.settings)
    if cfg.hard_negatives:
        mine_negatives(ws, train_pairs, train_docs, current, cfg.seed)
    t_data = time.perf_counter() - t0
    base_path = resolve_embedder(ws.settings.embedder)
    model, losses = train(base_path, train_pairs, cfg, progress)
    t_train = time.perf_counter() - t0 - t_data

    from sentence_transformers import SentenceTransformer

    base = SentenceTransformer(base_path, device="cpu")
    encode = lambda m: (lambda texts: m.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True))  # noqa: E731
    corpus = held_out_corpus(ws, eval_pairs, held_docs)
    eval_pairs = unambiguous(eval_pairs, corpus)
    with torch.inference_mode():
        evaluation = compare(encode(base), encode(model), eval_pairs, corpus, ws)
    name = cfg.name or fresh_name(ws.home / FOLDER, "retriever")
    collections = sorted({d["collection"] for d in documents})
    manifest = {
        "kind": "retriever", "base": ws.settings.embedder, "base_path": str(base_path), "collections": collections,
        "documents": {"train": [d["id"] for d in documents if d["id"] in set(train_docs)],
                      "held_out": [d["id"] for d in documents if d["id"] in set(held_docs)],
                      "hashes": {str(d["id"]): d["content_hash"] for d in documents}},
        "questions": {"train": len(train_pairs), "held_out": len(eval_pairs),
                      "kinds": {k: sum(p.kind == k for p in train_pairs) for k in kinds},
                      "hard_negatives": sum(p.negative is not None for p in train_pairs)},
        "config": asdict(cfg), "evaluation": evaluation, "loss": {"first": losses[0], "last": float(np.mean(losses[-10:]))},
        "user": user, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": {"data": round(t_data, 1), "train": round(t_train, 1)},
    }
    path = save(ws, name, model, manifest)
    audit.record(ws, "embedder.registered", user=user, target=name,
                 detail={"base": manifest["base"], "collections": collections, "evaluation": evaluation["difference"]})
    report = {"name": name, "path": str(path), **{k: manifest[k] for k in ("questions", "evaluation", "seconds", "loss")},
              "better": better(evaluation), "activated": False}
    stale = load_manifest(ws, name).get("stale")  # a document it learned was erased while it trained
    if stale:
        report["note"] = f"not activated: {stale}"
    elif cfg.activate == "always" or (cfg.activate == "auto" and report["better"]):
        if access.is_admin(ws, user):
            result = activate(ws, name, user, progress)
            report.update(activated=True, reembed={"chunks": result.chunks, "seconds": round(result.seconds, 1),
                                                   "encode_seconds": round(result.encode_seconds, 1)})
        else:
            report["note"] = "not activated: switching the workspace's embedder needs the admin role"
    elif not report["better"]:
        report["note"] = "not activated: hybrid search not better than with the base on the held-out documents"
    report["seconds"]["total"] = round(time.perf_counter() - t0, 1)
    return report


if __name__ == "__main__":  # the background job `start_background` spawns: python -m archivist.finetune.retriever JOB
    import json

    from archivist.models import hub_offline_by_default
    from archivist.retrieval.repair import open_checked
    from archivist.settings import Settings

    hub_offline_by_default()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with open_checked(Settings.from_env()) as ws:
        print(json.dumps(run_job(ws, sys.argv[1]), default=str))

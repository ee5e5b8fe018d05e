"""Fine-tuning datasets: from the documents, from the chat's feedback, from a user's JSONL file.

Every example is a chat: the prompt is exactly what serving sends (`retrieval.answer.build_messages`
over numbered passages: the source passage among distractors found by `retrieval.search.search`),
and the last message is the target answer, which cites the right [n]. Examples are split into
train and eval by document (a document's examples never land in both), only collections the
requesting user may read are used, and the dataset is saved under `datasets/<name>/` as
train.jsonl, eval.jsonl and manifest.json (owner, the collections every passage of every example
came from, documents with their content hashes, generator, settings, seed), so a run can be
repeated.

A saved dataset belongs to the user who built it: listing, previewing and loading take the user,
and only its owner or an admin sees it, and only while they may read every collection it draws on
(its text, and a model trained on it, repeat those collections). This module is the only one that
reads or writes `datasets/`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import random
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from archivist import __version__, access, audit, feedback
from archivist.finetune.qa import QA, extractive_pairs, llm_pairs, normalize
# retrieval (numpy, FAISS) is imported where it is used: the CLI imports this module for its defaults
from archivist.records import Hit, under_notice
from archivist.workspace import Workspace, transaction

log = logging.getLogger(__name__)

GENERATORS = ("extractive", "llm", "both")
# what `archivist finetune` and the fine-tune page learn from when not told: the documents, plus the
# chat's feedback when there is any (no feedback adds no example, and is no error)
DEFAULT_SOURCES = ("docs", "feedback")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}$")
_CITE = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")


def strip_citations(text: str) -> str:
    """The text without its [n] marks: 'Paris [1].' -> 'Paris.'"""
    return re.sub(r"\s*" + _CITE.pattern, "", text).strip()


class DatasetError(ValueError):
    """Bad input for a dataset (a broken JSONL line, no examples, an unknown source), named precisely."""


@dataclass
class Example:
    """One training chat. `messages[-1]` is the assistant's target; everything before it is the prompt."""

    messages: list[dict]
    source: str  # docs:extractive | docs:llm | feedback | file
    group: str  # the split key: "doc:<id>", "feedback:<id>" or "file:<name>:<line>"; groups tied (`_tied`) share the least
    question: str
    answer: str  # the gold answer: a span of the source chunk, or the whole target for feedback and files
    cite: int | None = None  # the passage number [n] holding the answer
    document_id: int | None = None
    chunk_id: int | None = None
    span: list[int] | None = None  # [start, end] of `answer` in the source chunk's text
    passages: list[int] = field(default_factory=list)  # chunk ids in prompt order
    collections: list[str] = field(default_factory=list)  # each passage's collection, in prompt order


@dataclass
class Dataset:
    name: str
    path: Path
    train: list[Example]
    eval: list[Example]
    manifest: dict


# -- reading what the user may read ----------------------------------------------------------


def readable_documents(ws: Workspace, user: str | None = None, collections: Sequence[str] | None = None) -> list[dict]:
    """Documents (id, path, collection, content_hash) in collections `user` may read.

    Raises AccessDenied when `collections` names one the user may not read, LookupError for one
    that does not exist.
    """
    readable = access.readable_collections(ws, user)
    if collections:
        admin = access.is_admin(ws, access.current_user(ws, user))
        for c in collections:
            if ws.collection_id(c) is None and admin:  # only an admin learns which names exist
                raise LookupError(f"no collection named {c!r}")
            if c not in readable:
                raise access.AccessDenied(f"user {access.current_user(ws, user)!r} may not read collection {c!r} "
                                          "(or it does not exist)")
        readable = [c for c in readable if c in set(collections)]
    if not readable:
        return []
    marks = ",".join("?" * len(readable))
    rows = ws.db.execute(
        f"SELECT d.id, d.path, k.name AS collection, d.content_hash FROM documents d "
        f"JOIN collections k ON k.id = d.collection_id WHERE k.name IN ({marks}) AND d.status = 'ready' ORDER BY d.id",
        readable).fetchall()
    return [dict(r) for r in rows]


# -- (a) from documents -----------------------------------------------------------------------


def document_pairs(ws: Workspace, documents: Sequence[dict], generator: str = "extractive", max_per_chunk: int = 3,
                   generate: Callable[[list[dict]], str] | None = None, progress: bool = False) -> list[tuple[int, QA]]:
    """(chunk id, QA) for every pair the generator finds in the documents' chunks, duplicates dropped.

    generator: extractive (deterministic, the default), llm (needs `generate(messages) -> str`) or both.
    """
    if generator not in GENERATORS:
        raise DatasetError(f"generator must be one of {', '.join(GENERATORS)}, got {generator!r}")
    if generator != "extractive" and generate is None:
        raise DatasetError(f"generator {generator!r} needs an LLM")
    ids = [d["id"] for d in documents]
    if not ids:
        return []
    rows = ws.db.execute(f"SELECT id, text FROM chunks WHERE document_id IN ({','.join('?' * len(ids))}) "
                         f"ORDER BY document_id, seq", ids).fetchall()
    if progress:
        from tqdm import tqdm

        rows = tqdm(rows, desc=f"questions ({generator})", unit="chunk", leave=False)
    out, seen = [], set()
    for r in rows:
        pairs: list[QA] = []
        if generator in ("llm", "both"):
            pairs += llm_pairs(r["text"], generate, max_pairs=1)
        if generator in ("extractive", "both"):
            pairs += extractive_pairs(r["text"], max_pairs=max_per_chunk)
        for qa in pairs:
            key = normalize(qa.question)
            if key in seen or (r["id"], qa.answer) in seen:
                continue
            seen.update({key, (r["id"], qa.answer)})
            out.append((r["id"], qa))
    return out


def target_for(sentence: str, answer: str, cite: int) -> str:
    """The answer the model learns to give: the fact's sentence with its citation, e.g. 'X is 30 days [2].'"""
    text = re.sub(r"\s+", " ", sentence).strip().rstrip(".;:,")
    if answer not in text:
        text = f"{answer}: {text}"
    return f"{text} [{cite}]."


def prompt_passages(ws: Workspace, question: str, source: Hit, answer: str, pool: Sequence[int], n: int,
                    rng: random.Random, user: str | None, embedder=None) -> tuple[list[Hit], int]:
    """The source passage among up to n-1 distractors that retrieval finds for the question in `pool`
    (document ids), shuffled so the model learns to cite by content, not position; returns (passages, cite).

    A distractor that also contains the answer is skipped: the citation must be unambiguous.
    """
    from archivist.retrieval.search import search

    distractors: list[Hit] = []
    if n > 1 and pool:
        hits = search(ws, question, k=n + 3, user=user, documents=list(pool), embedder=embedder)
        distractors = [h for h in hits if h.chunk_id != source.chunk_id and answer.lower() not in h.text.lower()][: n - 1]
    passages = distractors + [source]
    rng.shuffle(passages)
    return passages, passages.index(source) + 1


def examples_from_documents(ws: Workspace, pairs: Sequence[tuple[int, QA]], eval_docs: set[int], train_docs: set[int],
                            n_passages: int, seed: int, user: str | None, embedder=None, source: str = "docs") -> list[Example]:
    """Retrieval-aware examples for the pairs. Distractors come only from documents of the same split,
    so no text of an eval document ever appears in a training prompt."""
    from archivist.retrieval.answer import build_messages
    from archivist.retrieval.hits import load_hits

    rng = random.Random(seed)
    hits = load_hits(ws, sorted({cid for cid, _ in pairs}))
    out = []
    for cid, qa in pairs:
        src = hits[cid]
        pool = eval_docs if src.document_id in eval_docs else train_docs
        passages, cite = prompt_passages(ws, qa.question, src, qa.answer, sorted(pool), n_passages, rng, user, embedder)
        messages = build_messages(qa.question, passages) + [
            {"role": "assistant", "content": target_for(qa.sentence, qa.answer, cite)}]
        out.append(Example(messages=messages, source=f"{source}:{'llm' if qa.kind == 'llm' else 'extractive'}",
                           group=f"doc:{src.document_id}", question=qa.question, answer=qa.answer, cite=cite,
                           document_id=src.document_id, chunk_id=cid, span=[qa.start, qa.end],
                           passages=[p.chunk_id for p in passages], collections=[p.collection for p in passages]))
    return out


# -- (b) from the chat's feedback -------------------------------------------------------------


def _renumber(text: str, mapping: dict[int, int]) -> str:
    """Rewrite [n] marks through `mapping`, dropping numbers it lacks."""
    def fix(m):
        keep = [str(mapping[int(x)]) for x in re.split(r"\s*[,;]\s*", m.group(1)) if int(x) in mapping]
        return f"[{', '.join(keep)}]" if keep else ""
    return re.sub(r" ?" + _CITE.pattern, lambda m: (" " + fix(m)) if fix(m) else "", text).strip()


def shown_passage(cited: dict, live: Hit | None, asked_in: str | None) -> Hit | None:
    """Passage [n] as it was shown with an answer, from what the feedback recorded: its text, document,
    heading and collection (else the collection the question was asked in, `asked_in`).

    The live chunk of the same id (ids are never reused, so it is the same passage) only fills in a
    text or heading that was not recorded, and gives the document id the split groups by (-1 when
    the document was deleted or re-ingested since). The collection is never taken from it: the
    lineage of what is trained on must not depend on what the documents table holds today.
    Returns None when no text was recorded and the chunk is gone.
    """
    text = str(cited.get("text") or (live.text if live else ""))
    if not text:
        return None
    heading = cited["heading"] if "heading" in cited else (live.heading if live else ())
    return Hit(chunk_id=int(cited["chunk_id"]), document_id=live.document_id if live else -1,
               document=str(cited.get("document") or (live.document if live else "")),
               collection=str(cited.get("collection") or asked_in or ""), text=text, score=0.0,
               page=cited.get("page"), heading=tuple(heading or ()))


def _without_notice(answer: str) -> str:
    """An answer as feedback stored it, less the notice an uncertain or unchecked answer starts with
    (retrieval/answer.py UNCERTAIN, UNCHECKED): the app recorded the notice with the quote before it
    recorded the quote alone."""
    from archivist.retrieval.answer import UNCERTAIN, UNCHECKED

    for notice in (UNCERTAIN, UNCHECKED):
        if answer.startswith(notice):
            return under_notice(answer, notice)
    return answer


def examples_from_feedback(ws: Workspace, user: str | None = None, collections: Sequence[str] | None = None,
                           n_passages: int = 3, embedder=None) -> tuple[list[Example], dict]:
    """Examples from answers rated up (+1) and from corrections users wrote, with the passages that
    were shown (renumbered from 1) as the feedback recorded them: a member's own feedback, an
    admin's everyone's (feedback.training_feedback). An answer rated up is learned without the
    notice an uncertain one was shown under (the quote is the answer the user vouched for). Rows
    about collections the user may not read are left out, and so are rows with a passage whose collection was not recorded
    (an adapter's lineage must name every collection it learned from).
    Returns (examples, stats {"used": [ids], "skipped": {reason: count}})."""
    from archivist.retrieval.answer import build_messages
    from archivist.retrieval.hits import load_hits
    from archivist.retrieval.search import search

    readable = set(access.readable_collections(ws, user))
    if collections:
        readable &= set(collections)
    rows = feedback.training_feedback(ws, user)
    out, used, skipped = [], [], {}

    def skip(reason):
        skipped[reason] = skipped.get(reason, 0) + 1

    for r in rows:
        if r["collection"] and r["collection"] not in readable:
            skip("collection not readable")
            continue
        try:
            cits = json.loads(r["citations"]) if r["citations"] else []
            cits = sorted((c for c in cits if isinstance(c, dict) and c.get("chunk_id") is not None), key=lambda c: int(c.get("n", 0)))
        except (ValueError, TypeError):
            skip("citations not valid JSON")
            continue
        live = load_hits(ws, [int(c["chunk_id"]) for c in cits])
        shown = [(c, shown_passage(c, live.get(int(c["chunk_id"])), r["collection"])) for c in cits]
        shown = [(c, h) for c, h in shown if h is not None]
        if any(not h.collection for _, h in shown):
            skip("a passage's collection was not recorded")
            continue
        if any(h.collection not in readable for _, h in shown):
            skip("cites a collection not readable")
            continue
        if cits and not shown:
            skip("the cited passages are gone and their text was not recorded")
            continue
        if not shown and not r["collection"]:
            # the answer came from passages nobody recorded, in any collection: its lineage is unknown
            skip("no passage recorded and no collection asked in")
            continue
        target = (r["correction"] or "").strip() or _without_notice(r["answer"]).strip()
        if shown:
            passages = [h for _, h in shown]
            target = _renumber(target, {int(c.get("n", i)): i for i, (c, _) in enumerate(shown, start=1)})
        else:  # asked in one collection: the passages retrieval finds there now stand in for those shown
            passages = search(ws, r["question"], k=n_passages, user=user, collections=[r["collection"]], embedder=embedder)
            if not passages:
                skip("no passage recorded, and none found now")
                continue
        if not target:
            skip("empty answer")
            continue
        doc_ids = [p.document_id for p in passages if p.document_id >= 0]
        out.append(Example(messages=build_messages(r["question"], passages) + [{"role": "assistant", "content": target}],
                           source="feedback", group=f"doc:{doc_ids[0]}" if doc_ids and cits else f"feedback:{r['id']}",
                           question=r["question"], answer=strip_citations(target), document_id=doc_ids[0] if doc_ids else None,
                           passages=[p.chunk_id for p in passages], collections=[p.collection for p in passages]))
        used.append(r["id"])
    return out, {"used": used, "skipped": skipped}


# -- (c) from a user's JSONL file -------------------------------------------------------------


def _check_messages(messages) -> str | None:
    if not isinstance(messages, list) or not messages:
        return '"messages" must be a non-empty list'
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            return f'message {i + 1} needs a "role" of system, user or assistant'
        if not isinstance(m.get("content"), str) or not m["content"].strip():
            return f'message {i + 1} needs a non-empty string "content"'
    if messages[-1]["role"] != "assistant":
        return "the last message must be the assistant's answer (the target)"
    if not any(m["role"] == "user" for m in messages[:-1]):
        return "there must be a user message before the answer"
    return None


def _utf8(path: Path) -> str:
    """A text file's contents, less a byte order mark (Windows editors write one). Raises
    DatasetError naming the file and line of a byte that is not UTF-8."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = e.object[: e.start].count(b"\n") + 1
        raise DatasetError(f"{path}:{line}: not UTF-8 text (byte 0x{e.object[e.start]:02x}); save it as UTF-8") from None


def examples_from_file(path: str | Path) -> list[Example]:
    """Examples from a JSONL file of {"messages": [...]} or {"prompt": ..., "completion": ...} lines.

    An optional "document" field names the document a line is about, so the split keeps its lines
    together. Raises DatasetError listing every bad line as file:line: reason.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    out, errors = [], []
    with io.StringIO(_utf8(path), newline=None) as f:  # newline=None: \r\n and \r end lines, as open() reads them
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                errors.append(f"{where}: not valid JSON ({e.msg} at column {e.colno})")
                continue
            if not isinstance(obj, dict):
                errors.append(f"{where}: expected a JSON object, got {type(obj).__name__}")
                continue
            if "messages" in obj:
                messages = obj["messages"]
                problem = _check_messages(messages)
            elif "prompt" in obj and "completion" in obj:
                p, c = obj["prompt"], obj["completion"]
                problem = None if isinstance(p, str) and p.strip() and isinstance(c, str) and c.strip() else \
                    '"prompt" and "completion" must be non-empty strings'
                messages = [{"role": "user", "content": p}, {"role": "assistant", "content": c}] if problem is None else []
            else:
                problem = f'expected {{"messages": [...]}} or {{"prompt": ..., "completion": ...}}, got keys {sorted(obj)}'
            if problem:
                errors.append(f"{where}: {problem}")
                continue
            messages = [{"role": m["role"], "content": m["content"]} for m in messages]
            doc = obj.get("document")
            out.append(Example(messages=messages, source="file", group=f"file:{doc}" if doc else f"file:{path.name}:{lineno}",
                               question=next(m["content"] for m in reversed(messages[:-1]) if m["role"] == "user"),
                               answer=strip_citations(messages[-1]["content"])))
    if errors:
        more = f"\n... and {len(errors) - 20} more bad lines" if len(errors) > 20 else ""
        raise DatasetError(f"{len(errors)} bad line(s) in {path}:\n" + "\n".join(errors[:20]) + more)
    if not out:
        raise DatasetError(f"{path}: no examples (the file is empty)")
    return out


# -- split, build, save, load ------------------------------------------------------------------


def split_groups(groups: Sequence[str], eval_fraction: float, seed: int) -> set[str]:
    """The groups that go to eval: a seeded hash order, so the same documents and seed split the same way.

    At least one group goes to eval (and one stays in train) whenever there are two or more.
    """
    if not 0 <= eval_fraction < 1:
        raise DatasetError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    order = sorted(set(groups), key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest())
    n = round(len(order) * eval_fraction)
    if eval_fraction > 0 and len(order) >= 2:
        n = min(max(n, 1), len(order) - 1)
    return set(order[:n])


def _tied(ws: Workspace, groups: Sequence[str], extra: Sequence[Example], documents: Sequence[dict] = ()) -> dict[str, str]:
    """Each split group's stand-in for the split (`groups`, and the documents `extra`'s passages come
    from): itself, or for groups tied together by an example with passages of several documents
    (feedback citing two documents), the least of them, so the tied groups land in one split.
    A file's lines whose "document" names one of `documents` (its path or the path's last part)
    are tied to it too: they state its facts. Chunks since deleted tie nothing."""
    parent = {g: g for g in groups}

    def root(g: str) -> str:
        while parent[g] != g:
            g = parent[g]
        return g

    chunks = sorted({c for e in extra for c in e.passages})
    doc_of = dict(ws.db.execute(f"SELECT id, document_id FROM chunks WHERE id IN ({','.join('?' * len(chunks))})",
                                chunks).fetchall()) if chunks else {}
    named = {n: d["id"] for d in documents for n in (d["path"].rsplit("/", 1)[-1], d["path"])}
    for e in extra:
        about = {f"doc:{named[e.group[5:]]}"} if e.source == "file" and e.group[5:] in named else set()
        for g in about | {f"doc:{doc_of[c]}" for c in e.passages if c in doc_of}:
            a, b = root(e.group), root(parent.setdefault(g, g))
            parent[max(a, b)] = min(a, b)
    return {g: root(g) for g in parent}  # a document tied in without examples of its own follows its tie


def build_dataset(ws: Workspace, sources: Sequence[str] = ("docs",), user: str | None = None,
                  collections: Sequence[str] | None = None, generator: str = "extractive", name: str | None = None,
                  seed: int = 0, eval_fraction: float = 0.2, passages: int = 3, max_per_chunk: int = 3,
                  llm=None, embedder=None, progress: bool = False) -> Dataset:
    """Build, split and save a dataset from `sources`: "docs", "feedback" and/or paths of JSONL files.

    Raises DatasetError (nothing to train on, a bad file line, an unknown source), AccessDenied
    (a collection the user may not read), LookupError (no such collection).
    """
    user = access.current_user(ws, user)
    if not sources:
        raise DatasetError("no data source given (docs, feedback or a .jsonl file)")
    if passages < 1:
        raise DatasetError(f"passages must be at least 1, got {passages}")
    name = name or _fresh_name(ws, sources)
    if not _NAME.match(name):
        raise DatasetError(f"dataset name {name!r}: use letters, digits, '.', '_' and '-'")
    target = ws.home / "datasets" / name
    if target.exists():
        raise DatasetError(f"dataset {name!r} already exists at {target}")
    documents = readable_documents(ws, user, collections)
    by_id = {d["id"]: d for d in documents}
    pairs: list[tuple[int, QA]] = []
    extra: list[Example] = []
    files, feedback_stats = [], None
    for src in sources:
        if src == "docs":
            generate = None
            if generator != "extractive":
                from archivist.retrieval.llm import llm_for

                model = llm or llm_for(ws.settings)
                generate = lambda messages: "".join(model.stream(messages, max_new_tokens=64))  # noqa: E731
            pairs = document_pairs(ws, documents, generator, max_per_chunk, generate, progress)
        elif src == "feedback":
            got, feedback_stats = examples_from_feedback(ws, user, collections, passages, embedder)
            extra += got
        elif src.endswith(".jsonl") or Path(src).is_file():
            extra += examples_from_file(src)
            files.append({"path": str(Path(src).resolve()), "sha256": hashlib.sha256(Path(src).read_bytes()).hexdigest()})
        else:
            raise DatasetError(f"unknown data source {src!r}: use docs, feedback or the path of a .jsonl file")
    chunk_doc = {}
    if pairs:
        ids = sorted({cid for cid, _ in pairs})
        chunk_doc = dict(ws.db.execute(f"SELECT id, document_id FROM chunks WHERE id IN ({','.join('?' * len(ids))})", ids).fetchall())
    groups = [f"doc:{chunk_doc[cid]}" for cid, _ in pairs] + [e.group for e in extra]
    if not groups:
        raise DatasetError("no training examples: the readable documents hold no facts the generator could ask about, "
                           "and no feedback or file examples were given")
    # a feedback example whose passages come from several documents ties their groups together:
    # split apart, a training prompt and target would hold the text of a held-out document
    tied = _tied(ws, groups, extra, documents)
    eval_groups = {g for g in tied if tied[g] in split_groups(tied.values(), eval_fraction, seed)}
    eval_docs = {d for d in by_id if f"doc:{d}" in eval_groups}
    train_docs = set(by_id) - eval_docs
    examples = examples_from_documents(ws, pairs, eval_docs, train_docs, passages, seed, user, embedder) + extra
    for e in examples:  # tied groups were split as one: the bootstrap and --eval-limit draw them as one
        e.group = tied.get(e.group, e.group)
    train = [e for e in examples if e.group not in eval_groups]
    evals = [e for e in examples if e.group in eval_groups]
    used_docs = _passage_documents(ws, examples)
    manifest = {
        "name": name,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "archivist": __version__,
        "owner": user,
        # every passage's collection, distractors and passages of deleted documents included: who
        # may see this dataset, and use an adapter trained on it, follows from this list
        "collections": sorted({c for e in examples for c in e.collections}),
        "sources": list(sources),
        "generator": generator,
        "settings": {"collections": list(collections) if collections else None, "seed": seed, "eval_fraction": eval_fraction,
                     "passages": passages, "max_per_chunk": max_per_chunk, "embedder": ws.settings.embedder,
                     "llm": ws.settings.llm if generator != "extractive" else None},
        "documents": [{"id": d, "path": by_id[d]["path"], "collection": by_id[d]["collection"],
                       "content_hash": by_id[d]["content_hash"], "split": "eval" if d in eval_docs else "train",
                       "examples": sum(e.document_id == d for e in examples)} for d in sorted(used_docs) if d in by_id],
        "files": files,
        "feedback": feedback_stats,
        "counts": {"train": len(train), "eval": len(evals)},
    }
    return save_dataset(ws, name, train, evals, manifest)


def _fresh_name(ws: Workspace, sources: Sequence[str]) -> str:
    """A name from the sources and the time, e.g. docs-feedback-20261205-231500 (-2, -3 ... when taken)."""
    stem = "-".join(Path(s).stem if s not in ("docs", "feedback") else s for s in sources)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).lstrip("._-") or "dataset"  # a file's stem may hold anything
    name = f"{stem[:60]}-{time.strftime('%Y%m%d-%H%M%S')}"
    n = 1
    while (ws.home / "datasets" / (name if n == 1 else f"{name}-{n}")).exists():
        n += 1
    return name if n == 1 else f"{name}-{n}"


def _passage_documents(ws: Workspace, examples: Sequence[Example]) -> set[int]:
    """Ids of the documents any example's passages come from (sources and distractors alike), as far
    as they still exist."""
    from archivist.retrieval.hits import load_hits

    chunks = sorted({c for e in examples for c in e.passages})
    return {h.document_id for h in load_hits(ws, chunks).values()} | {e.document_id for e in examples if e.document_id}


def save_dataset(ws: Workspace, name: str, train: list[Example], evals: list[Example], manifest: dict) -> Dataset:
    """Write datasets/<name>/{train,eval}.jsonl and manifest.json (with the files' hashes), atomically."""
    target = ws.home / "datasets" / name
    tmp = target.with_name(f".{name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for split, rows in (("train", train), ("eval", evals)):
        data = "".join(json.dumps(asdict(e), ensure_ascii=False) + "\n" for e in rows).encode()
        (tmp / f"{split}.jsonl").write_bytes(data)
        manifest[f"{split}_sha256"] = hashlib.sha256(data).hexdigest()
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    # a dataset copies users' questions, corrections and passages into files: who built it, from
    # which collections and feedback, is recorded with the rename that makes it exist (a failed
    # rename rolls the record back)
    used = (manifest.get("feedback") or {}).get("used") or []
    with transaction(ws.db):
        audit.record(ws, "dataset.built", user=manifest.get("owner"), target=name, detail={
            "collections": manifest.get("collections", []), "sources": manifest.get("sources", []),
            "counts": manifest.get("counts"), "documents": len(manifest.get("documents") or []),
            "feedback": list(used), "files": [f["sha256"] for f in manifest.get("files") or []],
            "train_sha256": manifest.get("train_sha256"), "eval_sha256": manifest.get("eval_sha256")})
        tmp.rename(target)
    return Dataset(name=name, path=target, train=train, eval=evals, manifest=manifest)


def _folder(ws: Workspace, name: str) -> Path:
    """datasets/<name>, or `name` itself when it is the path of a dataset folder."""
    saved = ws.home / "datasets" / name
    if _NAME.match(name) and (saved / "manifest.json").exists():
        return saved
    return Path(name) if Path(name).is_dir() else saved


def _manifest(path: Path) -> dict:
    """The manifest.json of dataset folder `path`. Raises DatasetError when it is not a JSON object."""
    file = path / "manifest.json"
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise DatasetError(f"{file}: not valid JSON ({e})") from None
    if not isinstance(manifest, dict):
        raise DatasetError(f"{file}: expected a JSON object")
    return manifest


def _owner(manifest: dict) -> str | None:
    """Who built the dataset ("user": datasets saved before "owner")."""
    return manifest.get("owner", manifest.get("user"))


def check_access(ws: Workspace, name: str, manifest: dict, user: str | None) -> None:
    """Let `user` (None: the acting user) see and use the dataset, or raise.

    Its owner and admins may, the owner only while they may read every collection it draws on.
    Raises LookupError for anyone else, worded as for a dataset that does not exist (a name is not
    confirmed by guessing); AccessDenied, naming the collections, for the owner who may no longer read
    one, or for a dataset saved before datasets recorded the collections they draw on.
    """
    who = access.current_user(ws, user)
    if access.is_admin(ws, who):
        return
    if _owner(manifest) != who:
        raise LookupError(f"no dataset named {name!r} (under {ws.home / 'datasets'})")
    if "collections" not in manifest:
        raise access.AccessDenied(f"dataset {name!r} was saved before datasets recorded every collection they draw on: "
                                  "build it again (an admin may still use it)")
    lost = sorted(set(manifest["collections"]) - set(access.readable_collections(ws, who)))
    if lost:
        raise access.AccessDenied(f"dataset {name!r} draws on collections {who!r} may no longer read: {', '.join(lost)}")


def load_dataset(ws: Workspace, name: str, user: str | None) -> Dataset:
    """The saved dataset `name` (or a dataset folder's path), if `user` may use it (`check_access`).

    Raises LookupError when there is none (or it is not the user's to see), AccessDenied (see
    check_access), DatasetError for a file that does not parse, named with its line.
    """
    path = _folder(ws, name)
    if not (path / "manifest.json").exists():
        raise LookupError(f"no dataset named {name!r} (under {ws.home / 'datasets'})")
    manifest = _manifest(path)
    check_access(ws, name, manifest, user)

    def read(split):
        p = path / f"{split}.jsonl"
        out = []
        for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                out.append(Example(**json.loads(line)))
            except (ValueError, TypeError) as e:
                raise DatasetError(f"{p}:{lineno}: not a saved example ({e})") from None
        return out

    return Dataset(name=manifest.get("name", path.name), path=path, train=read("train"), eval=read("eval"), manifest=manifest)


def list_datasets(ws: Workspace, user: str | None) -> list[dict]:
    """The saved datasets `user` (None: the acting user) may see (`check_access`), newest first:
    [{name, created_at, owner, collections, sources, generator, train, eval}]. A folder whose
    manifest does not parse is logged and left out."""
    out = []
    for p in sorted((ws.home / "datasets").glob("*/manifest.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            m = _manifest(p.parent)
            check_access(ws, p.parent.name, m, user)
        except DatasetError as e:
            log.warning("skipping dataset %s: %s", p.parent.name, e)
            continue
        except (LookupError, access.AccessDenied):
            continue
        out.append({"name": m.get("name", p.parent.name), "created_at": m.get("created_at"),
                    "owner": _owner(m), "collections": m.get("collections"), "sources": m.get("sources"),
                    "generator": m.get("generator"), **m.get("counts", {})})
    return out


def _folders(ws: Workspace) -> list[Path]:
    """The saved datasets' folders (those with a manifest), by name."""
    return sorted(p for p in (ws.home / "datasets").glob("*") if (p / "manifest.json").exists())


def disown(ws: Workspace, owner: str, former: str) -> int:
    """Record `former` as the owner of every saved dataset `owner` built (the user was deleted: a
    user created later under the same name must not inherit them); returns how many."""
    n = 0
    for folder in _folders(ws):
        try:
            manifest = _manifest(folder)
        except DatasetError:
            continue  # unreadable: nobody can use it anyway
        if _owner(manifest) == owner:
            manifest["owner"] = former
            manifest.pop("user", None)
            (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
            n += 1
    return n


def erase_feedback(ws: Workspace, feedback_ids: set[int], questions: set[str], owners: Sequence[str],
                   erased_owner: str) -> tuple[dict[str, int], set[str], list[str]]:
    """For `archivist users erase`: drop from every saved dataset that used feedback rows
    `feedback_ids` the examples made from them (source "feedback", one of `questions`), take the ids
    out of its manifest, and make `erased_owner` the owner of the datasets one of `owners` (the
    person's name, and what `users delete` left) built. Returns ({dataset: examples dropped},
    the datasets that used their feedback (an adapter trained on one learned from it), the
    datasets disowned). Safe to repeat."""
    dropped_by, touched, disowned = {}, set(), []
    for folder in _folders(ws):
        try:
            manifest = _manifest(folder)
        except DatasetError:
            continue
        fb = manifest.get("feedback") or {}
        used = set(fb.get("used") or [])
        changed = False
        if used & feedback_ids:
            touched.add(folder.name)
            kept, dropped = _without(folder, lambda r: r.get("source") == "feedback" and r.get("question") in questions)
            _write_splits(folder, manifest, kept)
            fb["used"] = sorted(used - feedback_ids)
            fb["erased"] = int(fb.get("erased") or 0) + len(used & feedback_ids)
            manifest["feedback"] = fb
            dropped_by[folder.name] = dropped
            changed = True
        if _owner(manifest) in owners:
            manifest["owner"] = erased_owner
            manifest.pop("user", None)
            disowned.append(folder.name)
            changed = True
        if changed:
            (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    return dropped_by, touched, disowned


def erase_document(ws: Workspace, document_id: int, chunk_ids: set[int], erased: Callable[[str], bool],
                   owner: str | None = None) -> dict[str, int]:
    """Drop from every saved dataset the examples built from document `document_id` or showing one of
    its chunks (`chunk_ids`, as source or distractor) or its text (`erased(text) -> bool`), and the
    document from the manifest (listed under "erased" instead). Returns {dataset: examples dropped}
    for the datasets that had any. (`archivist erase`; its other copies are the other modules' business.)
    `owner`: text is looked for only in that user's datasets (a member's erase), None in all (an
    admin's); examples built from the document go from anyone's."""
    out = {}
    for folder in _folders(ws):
        manifest = _manifest(folder)
        text = erased if owner in (None, _owner(manifest)) else (lambda s: False)
        kept, dropped = _without(folder, lambda r: _from_erased(r, document_id, chunk_ids, text))
        listed = any(d.get("id") == document_id for d in manifest.get("documents", []))
        if not dropped and not listed:
            continue
        manifest["documents"] = [d for d in manifest.get("documents", []) if d.get("id") != document_id]
        manifest["erased"] = sorted(set(manifest.get("erased", [])) | {document_id})
        _write_splits(folder, manifest, kept)
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
        out[folder.name] = dropped
    return out


def _without(folder: Path, drop: Callable[[dict], bool]) -> tuple[dict[str, list[dict]], int]:
    """A saved dataset's rows of each split without those `drop` picks, and how many it picked."""
    kept, dropped = {}, 0
    for split in ("train", "eval"):
        f = folder / f"{split}.jsonl"
        rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()] if f.exists() else []
        kept[split] = [r for r in rows if not drop(r)]
        dropped += len(rows) - len(kept[split])
    return kept, dropped


def _write_splits(folder: Path, manifest: dict, kept: dict[str, list[dict]]) -> None:
    """Write each split's rows, and their hashes and counts into `manifest` (the caller writes it)."""
    for split, rows in kept.items():
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
        (folder / f"{split}.jsonl").write_bytes(data)
        manifest[f"{split}_sha256"] = hashlib.sha256(data).hexdigest()
    manifest["counts"] = {split: len(rows) for split, rows in kept.items()}


def _from_erased(row: dict, document_id: int, chunk_ids: set[int], erased: Callable[[str], bool]) -> bool:
    if row.get("document_id") == document_id or chunk_ids & set(row.get("passages") or []):
        return True
    texts = [row.get("question") or "", row.get("answer") or ""] + [m.get("content") or "" for m in row.get("messages") or []]
    return any(erased(t) for t in texts)

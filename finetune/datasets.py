"""Fine-tuning datasets: from the documents, from the chat's feedback, from a user's JSONL file.

Every example is a chat: the prompt is exactly what serving sends (`retrieval.answer.build_messages`
over numbered passages: the source passage among distractors found by `retrieval.search.search`),
and the last message is the target answer, which cites the right [n]. Examples are split into
train and eval by document (a document's examples never land in both), only collections the
requesting user may read are used, and the dataset is saved under `datasets/<name>/` as
train.jsonl, eval.jsonl and manifest.json (owner, the collections every passage of every example
came from, documents with their content hashes, generator, settings, seed), so a run can be
repeated. The records and the saved datasets (save, load, list, who may see one, erasure) are
dataset_store.py's.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from archivist import __version__, access, conversations, feedback
from archivist.finetune.dataset_store import _NAME, Dataset, DatasetError, Example, save_dataset
from archivist.finetune.qa import QA, extractive_pairs, llm_pairs, normalize
# retrieval (numpy, FAISS) is imported where it is used: the CLI imports this module for its defaults
from archivist.records import Hit, under_notice
from archivist.workspace import Workspace

log = logging.getLogger(__name__)

GENERATORS = ("extractive", "llm", "both")
# what `archivist finetune` and the fine-tune page learn from when not told: the documents, plus the
# chat's feedback when there is any (no feedback adds no example, and is no error)
DEFAULT_SOURCES = ("docs", "feedback")
# why a correction is not learned yet, in the manifest's feedback.skipped and the builder's warning
UNREVIEWED = "correction awaiting an admin's review"


def strip_citations(text: str) -> str:
    """The text without its [n] marks: 'Paris [1].' -> 'Paris.'; a code index stays ('sys.argv[1]')."""
    from archivist.retrieval.verify import replace_marks

    return replace_marks(text).strip()


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
    """Rewrite [n] marks through `mapping`, dropping numbers it lacks; code indexes stay ('a[2]')."""
    from archivist.retrieval.verify import replace_marks

    def fix(m):
        keep = [str(mapping[int(x)]) for x in re.split(r"\s*[,;]\s*", m.group(1)) if int(x) in mapping]
        return f"[{', '.join(keep)}]" if keep else ""
    return replace_marks(text, fix).strip()


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
    (an adapter's lineage must name every collection it learned from), and rows whose rated answer drew on
    a collection the user may not read through a passage it did not cite or the adapter that wrote it: the
    row keeps only the cited passages, and the chat withholds that answer by all of them (one rule:
    `conversations.stored_answer_sources`, `conversations.answer_sources`; an adapter of unknown lineage's
    answer is left out too, its collections being unknown). With `collections` chosen, a row that would draw on
    another collection the user may read is left out as "not chosen" (the dataset's lineage names only those).
    Returns (examples, stats {"used": [ids], "skipped": {reason: count}, "drew_on": [collections]}): the
    collections the used rows' answers drew on, cited or not, which the dataset's lineage names too. A
    correction an admin has not approved is left out, its row with it, and counted (UNREVIEWED, or rejected)."""
    from archivist.retrieval.answer import build_messages
    from archivist.retrieval.hits import load_hits
    from archivist.retrieval.search import search

    readable = set(access.readable_collections(ws, user))
    chosen = readable & set(collections) if collections else readable
    rows = feedback.training_feedback(ws, user)
    drew = conversations.stored_answer_sources(ws, [r["message_id"] for r in rows])
    cited = [_cited(r["citations"]) for r in rows]
    # the cited chunks of every row read at once, 500 a query, not a query per row (20,000 rows of a team's feedback)
    ids = sorted({i for cits in cited if cits for c in cits if (i := _chunk_id(c["chunk_id"])) is not None})
    live = {k: v for at in range(0, len(ids), 500) for k, v in load_hits(ws, ids[at:at + 500]).items()}
    out, used, skipped, drawn, lineages = [], [], {}, set(), {}

    def skip(reason):
        skipped[reason] = skipped.get(reason, 0) + 1

    def why(outside: set) -> str:  # readable but left out of the chosen collections, or not readable at all
        return "not readable" if outside - readable else "not chosen"

    for r, cits in zip(rows, cited):
        if (r["correction"] or "").strip() and r["review"] != "approved":  # feedback.review_correction: why
            skip(UNREVIEWED if r["review"] is None else "correction rejected by an admin")
            continue
        if r["collection"] and r["collection"] not in chosen:
            skip(f"collection {why({r['collection']})}")
            continue
        took, _ = conversations.answer_sources(ws, drew.get(r["message_id"], set()), r["adapter"], lineages, r["answered_at"])
        if took - chosen:
            skip(f"the rated answer drew on a collection {why(took - chosen)}")
            continue
        if cits is None:
            skip("citations not valid JSON")
            continue
        shown = [(c, shown_passage(c, live.get(int(c["chunk_id"])), r["collection"])) for c in cits]
        shown = [(c, h) for c, h in shown if h is not None]
        if any(not h.collection for _, h in shown):
            skip("a passage's collection was not recorded")
            continue
        if any(h.collection not in chosen for _, h in shown):
            skip(f"cites a collection {why({h.collection for _, h in shown} - chosen)}")
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
        drawn |= took
    if skipped.get(UNREVIEWED):
        log.warning("%d correction(s) left out: %s (`archivist feedback review`)", skipped[UNREVIEWED], UNREVIEWED)
    return out, {"used": used, "skipped": skipped, "drew_on": sorted(drawn)}


def _cited(stored: str | None) -> list[dict] | None:
    """A feedback row's cited passages (its `citations` column) in the order they were numbered; None
    when they are not valid JSON (the row is skipped, saying so)."""
    try:
        cits = json.loads(stored) if stored else []
        return sorted((c for c in cits if isinstance(c, dict) and c.get("chunk_id") is not None), key=lambda c: int(c.get("n", 0)))
    except (ValueError, TypeError):
        return None


def _chunk_id(value) -> int | None:
    """A stored passage's chunk id as the chunks table can hold it, else None (what a client stored
    through the API may be anything: such a passage is taken from its recorded text)."""
    try:
        i = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return i if 0 < i < 2 ** 63 else None


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


# -- split and build (saved by dataset_store.save_dataset) ------------------------------------


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
    # a source named twice (`--data feedback --data feedback`) would add each of its examples twice,
    # weighting those answers double while the manifest lists them once
    sources = list(dict.fromkeys(sources))
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
        # and those a feedback answer drew on uncited or through its adapter: the example learns its words
        "collections": sorted({c for e in examples for c in e.collections} | set((feedback_stats or {}).get("drew_on", ()))),
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

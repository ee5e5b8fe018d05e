"""`archivist erase DOCUMENT`: delete a document and every copy of its text the workspace made.

`archivist delete` removes the document, its chunks, vectors, lexical postings and FTS rows. Erasing
also reaches the copies made from it, each through the module that owns them:

    feedback citing it (or holding its text)     archivist/feedback.py     deleted, or kept as a bare rating
    chat messages citing it                      archivist/conversations.py  text replaced by "[erased]"
    dataset examples built from or showing it    finetune/datasets.py      dropped from datasets/<name>/
    stored evaluation passages, quotes, answers  retrieval/evaluation.py   replaced by "[erased]"
    its upload                                   ingest/uploads.py         the file under uploads/
    adapters that learned from it                archivist/adapters.py     marked stale; examples in metrics.json dropped

and then leaves no trace in the files: SQLite with secure_delete on, the FTS index optimized, the
lexical index rebuilt, VACUUM, and the WAL checkpointed and truncated. What it cannot remove: what
an adapter's weights learned, until the adapter is retrained (`archivist finetune --retrain NAME`).
The audit log keeps that the document existed and was erased (its name and hash, never its text).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from archivist import access, adapters, audit, conversations, feedback
from archivist.workspace import Workspace, transaction

MIN_MATCH = 24  # characters: shorter strings ("Introduction", a heading) are too common to call a copy
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass
class EraseReport:
    """What `erase` removed (counts per place) and which adapters learned from the document."""

    document: str
    collection: str
    document_id: int
    chunks: int
    feedback_deleted: int = 0
    feedback_anonymized: int = 0
    messages: int = 0
    dataset_examples: dict[str, int] = field(default_factory=dict)
    evaluations: int = 0
    upload: str | None = None
    adapters: list[str] = field(default_factory=list)  # marked stale: their weights learned the document
    adapter_examples: int = 0
    wal_truncated: bool = True
    leftovers: list[str] = field(default_factory=list)  # files that still hold its text (should stay empty)


def matcher(text: str, chunks: list[str]):
    """`erased(s) -> bool`: whether `s` holds a sentence of the document (or a chunk), or is itself a
    passage of it at least MIN_MATCH characters long. Whitespace and Unicode forms are normalized."""
    norm = lambda s: " ".join(unicodedata.normalize("NFC", s).split())  # noqa: E731
    whole = norm(text)
    needles = {n for n in (norm(p) for p in _SENTENCE.split(text) + chunks) if len(n) >= MIN_MATCH}

    def erased(s: str) -> bool:
        if not s or not isinstance(s, str):
            return False
        s = norm(s)
        return any(n in s for n in needles) or (len(s) >= MIN_MATCH and s in whole)

    return erased


def erase(ws: Workspace, ref: str | int, user: str | None = None, collection: str | None = None,
          keep_ratings: bool = False) -> EraseReport:
    """Erase document `ref` (id or name) everywhere; returns the report. Needs write access to its
    collection. Raises LookupError for no such document (or one the user may not read)."""
    from archivist.finetune import datasets
    from archivist.ingest.pipeline import delete_document, find_document
    from archivist.ingest.uploads import remove_upload
    from archivist.retrieval import evaluation, lexicon

    actor = access.current_user(ws, user)
    doc = find_document(ws, ref, actor, collection)
    access.require(ws, actor, doc["collection"], "write")
    row = ws.db.execute("SELECT text, source FROM documents WHERE id = ?", (doc["id"],)).fetchone()
    chunks = {r[0]: r[1] for r in ws.db.execute("SELECT id, text FROM chunks WHERE document_id = ?", (doc["id"],))}
    erased = matcher(row["text"] or "", list(chunks.values()))
    report = EraseReport(document=doc["name"], collection=doc["collection"], document_id=doc["id"], chunks=len(chunks))
    ws.db.execute("PRAGMA secure_delete = ON")  # freed pages are zeroed, not left holding the text
    try:
        delete_document(ws, doc["id"], actor, doc["collection"])
        fb = feedback.erase_document(ws, doc["name"], doc["collection"], erased, keep_ratings)
        report.feedback_deleted, report.feedback_anonymized = fb["deleted"], fb["anonymized"]
        report.messages = conversations.erase_document(ws, doc["name"], erased)
        report.dataset_examples = datasets.erase_document(ws, doc["id"], set(chunks), erased)
        report.evaluations = evaluation.erase_text(ws, erased)
        report.upload = _remove_upload(ws, row["source"], remove_upload)
        report.adapters = adapters.learned_from(ws, doc["id"])
        report.adapter_examples = sum(adapters.scrub_metrics(ws, name, erased) for name in report.adapters)
        with transaction(ws.db):
            adapters.mark_stale(ws, report.adapters, f"trained on a deleted document: {doc['name']}")
            audit.record(ws, "document.erased", user=actor, target=doc["name"], detail={
                "document_id": doc["id"], "collection": doc["collection"], "sha256": doc["content_hash"],
                "chunks": len(chunks), "feedback_deleted": report.feedback_deleted,
                "feedback_anonymized": report.feedback_anonymized, "messages": report.messages,
                "dataset_examples": report.dataset_examples, "evaluations": report.evaluations,
                "upload": bool(report.upload), "stale_adapters": report.adapters})
        lexicon.sync(ws, rebuild=True)  # a rebuilt term table holds no word only this document had
        report.wal_truncated = _compact(ws)
    finally:
        ws.db.execute("PRAGMA secure_delete = OFF")
    report.leftovers = find_text(ws.home, erased_sentences(row["text"] or ""))
    return report


def _remove_upload(ws: Workspace, source: str | None, remove_upload) -> str | None:
    if not source:
        return None
    uploads = (ws.home / "uploads").resolve()
    if uploads not in Path(source).resolve().parents:
        return None  # read from the user's own folder: not a copy the workspace made
    return source if remove_upload(ws, source) else None


def _compact(ws: Workspace) -> bool:
    """Rewrite the database without free pages and empty the WAL; returns whether the WAL was
    truncated (another process reading at that moment can hold it; it is emptied on its next checkpoint)."""
    ws.db.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('optimize')")  # merge away the deleted entries
    ws.db.execute("VACUUM")
    busy = ws.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    return not busy


def erased_sentences(text: str) -> list[bytes]:
    """The document's longer sentences as UTF-8 bytes: what `find_text` looks for."""
    return sorted({p.strip().encode("utf-8") for p in _SENTENCE.split(text) if len(p.strip()) >= MIN_MATCH})


def find_text(home: Path, needles: list[bytes]) -> list[str]:
    """Files under `home` (relative paths) whose bytes hold one of `needles`."""
    found = []
    for f in sorted(p for p in home.rglob("*") if p.is_file()):
        try:
            data = f.read_bytes()
        except OSError:
            continue
        if any(n in data for n in needles):
            found.append(str(f.relative_to(home)))
    return found

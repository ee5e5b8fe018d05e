"""Near-duplicate fingerprints of chunks: each chunk's word 3-grams, hashed, stored with the chunk
at ingestion (`chunks.shingles`). Retrieval only reads them, to collapse nearly equal hits
(`archivist.retrieval.duplicates`)."""

from __future__ import annotations

import re
import zlib

import numpy as np

from archivist.workspace import Workspace, transaction

_WORD = re.compile(r"\w+", re.UNICODE)


def shingles(text: str) -> bytes:
    """The text's word 3-grams (lower-cased words; the whole text when it has fewer than three), each
    hashed to its CRC-32, sorted and unique: what `collapse_duplicates` compares, stored with each
    chunk at ingestion so a query never re-reads the texts of its hits."""
    words = _WORD.findall(text.lower())
    grams = zip(words, words[1:], words[2:]) if len(words) > 2 else [words]
    crcs = np.fromiter((zlib.crc32("\x1f".join(g).encode("utf-8", "surrogatepass")) for g in grams), np.uint32)
    return np.unique(crcs).tobytes()


def backfill_shingles(ws: Workspace) -> int:
    """Store the shingles of chunks ingested before they were kept (once per workspace); returns how many."""
    if ws.meta("shingles") == "1":
        return 0
    done, last = 0, 0
    while rows := ws.db.execute("SELECT id, text FROM chunks WHERE id > ? AND shingles IS NULL ORDER BY id LIMIT 2000",
                                (last,)).fetchall():
        with transaction(ws.db):
            ws.db.executemany("UPDATE chunks SET shingles = ? WHERE id = ?", [(shingles(r["text"]), r["id"]) for r in rows])
        done, last = done + len(rows), rows[-1]["id"]
    ws.set_meta("shingles", "1")
    return done

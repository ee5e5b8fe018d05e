"""Threads in one process: hybrid search runs BM25 on a worker thread beside FAISS, and the browser
app ingests on one thread while the chat searches on another. FAISS reads share its lock; a change
waits for them and holds new ones off."""

from __future__ import annotations

import threading
import time

import numpy as np

from archivist.ingest.pipeline import delete_document, ingest_paths
from archivist.retrieval import index_kinds, vectors
from archivist.retrieval.repair import open_checked
from archivist.retrieval.search import search


def test_reads_share_the_index_lock_and_a_change_excludes_them():
    lock = vectors._SharedLock()
    inside, most, events = [0], [0], []
    guard = threading.Lock()

    def read(tag):
        with lock.shared():
            with guard:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.05)
            with guard:
                inside[0] -= 1
        events.append(tag)

    readers = [threading.Thread(target=read, args=(f"r{i}",)) for i in range(3)]
    for t in readers:
        t.start()
    time.sleep(0.01)
    with lock.exclusive():  # waits for the three readers, then holds a new one off
        assert inside[0] == 0 and sorted(events) == ["r0", "r1", "r2"]
        late = threading.Thread(target=read, args=("late",))
        late.start()
        time.sleep(0.05)
        assert "late" not in events
        with lock.shared(), lock.exclusive():  # the changing thread may read, and change again
            pass
    late.join()
    assert most[0] == 3 and events[-1] == "late"


def test_searching_while_another_thread_ingests_and_deletes(ws, tmp_path, embedder):
    """The chat's searches and the uploader's ingestion in one process: no search fails or returns
    a deleted chunk's stale text, and FAISS ends equal to SQLite."""
    words = "forklift battery charging bay north gate visitor badge cold store alarm logbook dock".split()
    rng = np.random.default_rng(0)
    for i in range(6):
        (tmp_path / f"base{i}.txt").write_text(" ".join(rng.choice(words, 60)) + f" base document {i}.\n")
    ingest_paths(ws, sorted(tmp_path.glob("base*.txt")), embedder=embedder, progress=False)
    errors, searches = [], [0]
    stop = threading.Event()

    def searcher():  # with its own connection, as each browser session has
        try:
            with open_checked(ws.settings) as mine:
                while not stop.is_set():
                    for h in search(mine, "forklift battery charging at the north gate", k=5, embedder=embedder):
                        row = mine.db.execute("SELECT text FROM chunks WHERE id = ?", (h.chunk_id,)).fetchone()
                        assert row is None or row[0] == h.text  # a chunk deleted since may be gone, never changed
                    searches[0] += 1
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(repr(e))

    threads = [threading.Thread(target=searcher) for _ in range(2)]  # concurrent searches, as the API serves
    for thread in threads:
        thread.start()
    try:
        for round_ in range(4):
            path = tmp_path / f"extra{round_}.txt"
            path.write_text(" ".join(rng.choice(words, 80)) + f" extra document {round_}.\n")
            ingest_paths(ws, [path], embedder=embedder, progress=False)
            doc = ws.db.execute("SELECT id FROM documents WHERE path LIKE ?", (f"%extra{round_}.txt",)).fetchone()[0]
            delete_document(ws, doc)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert not errors and searches[0] >= 4
    cid = ws.collection_id("default")
    in_sqlite = {r[0] for r in ws.db.execute("SELECT id FROM chunks WHERE embedding IS NOT NULL")}
    assert set(index_kinds.index_ids(vectors._load(ws, cid).index).tolist()) == in_sqlite

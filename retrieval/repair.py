"""Opening a workspace to search it: the files a search reads that are derived from SQLite are
compared with it and repaired from it when they disagree (a crash or kill -9 between a commit and a
file save, a workspace from an older version).

The kernel's `open_workspace` knows nothing of these files (the kernel imports no stage); the
commands, pages and servers that search or answer open through `open_checked`, or call `repair`.
"""

from __future__ import annotations

from collections.abc import Callable

from archivist.ingest.shingles import backfill_shingles
from archivist.retrieval import lexicon_store, reembed, vectors
from archivist.settings import Settings
from archivist.workspace import Workspace, open_workspace

# In order, each cheap when nothing is wrong: the embedder pointer (which FAISS files are current),
# the FAISS files (per collection), the lexical index, then the near-duplicate fingerprints of chunks
# ingested before they were stored.
REPAIRS: tuple[Callable[[Workspace], object], ...] = (reembed.check_pointer, vectors.check_and_repair,
                                                       lexicon_store.check_and_repair, backfill_shingles)


def repair(ws: Workspace) -> None:
    """Run every check in REPAIRS on `ws`, repairing from SQLite what disagrees with it."""
    for check in REPAIRS:
        check(ws)


def open_checked(settings: Settings | None = None) -> Workspace:
    """`open_workspace(settings)`, then `repair`: a workspace whose derived files agree with SQLite.

    Raises what `open_workspace` raises (WorkspaceError), and WorkspaceError when a repair cannot write
    (a full disk); the workspace is closed then.
    """
    ws = open_workspace(settings)
    try:
        repair(ws)
    except BaseException:
        ws.close()
        raise
    return ws

"""A CSV of many tiny rows ingests in flat memory (issue 17, item 9): peak RSS of a fresh process
ingesting 80,000 rows grows by less than 25 MB over one ingesting 20,000. The chunker tokenizes a
row at a time and the embedder takes 256 chunks at a time (before, the chunker alone held the whole
table's tokens: +0.67 GB at 100,000 rows, measured); past pipeline.HOLD_INDEXES_UP_TO chunks the
ingesting process loads no search index (before, it held FAISS and the lexical index, which grow
with every chunk: +53 MB from 20,000 to 80,000 rows here, +0.5 GB at a million rows).

The embedder here is a deterministic fake (a vector from a hash of the text): the test measures the
pipeline's memory, not the model's, and the real embedder would take minutes on 15,000 chunks.
The chunker still uses the real embedder's tokenizer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
CHILD = f"import sys; sys.path.append({str(BENCH)!r})  # appended: shadows no installed module\n" + r'''
import json, resource
from archivist.ingest import pipeline, readers
from archivist.ingest.pipeline import ingest_paths
from archivist.retrieval import lexicon
from archivist.models import embedder_for
from archivist.settings import Settings
from archivist.workspace import open_workspace
from hash_embedder import HashEmbedder

path, rows, home = sys.argv[1], int(sys.argv[2]), sys.argv[3]
# The bounds that keep memory flat, set small so that both sizes (1,300 and 5,300 chunks) are well
# past them: the chunks an ingest syncs the indexes itself up to, and holds between two syncs; the
# stems remembered; both files streamed, in groups of 64 KB of rows.
pipeline.HOLD_INDEXES_UP_TO, pipeline.FLUSH_CHUNKS = 1000, 500
lexicon.STEMS_MAX = 10_000
readers.STREAM_ABOVE_MB, readers.STREAM_GROUP_CHARS = 0, 1 << 16
with open(path, "w") as f:
    f.write("id,name,amount\n")
    for i in range(rows):
        f.write(f"{i},item-{i % 977},{(i * 37) % 10000}\n")
ws = open_workspace(Settings.from_env(home=home))
embedder_for(ws.settings).embed(["warm up"])  # the tokenizer the chunker uses, loaded before the baseline
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
[res] = ingest_paths(ws, [path], embedder=HashEmbedder(), progress=False)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"status": res.status, "reason": res.reason, "chunks": res.chunks, "growth_mb": (peak - base) / 1024}))
'''


def _growth(tmp_path: Path, rows: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / f"{rows}.csv"), str(rows), str(tmp_path / f"h{rows}")],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == "added", result
    return result


@pytest.mark.slow
def test_a_csv_of_many_tiny_rows_ingests_in_flat_memory(tmp_path):
    small, large = _growth(tmp_path, 20_000), _growth(tmp_path, 80_000)
    assert large["chunks"] > 3.5 * small["chunks"]
    # Measured here (2026-12-06): +26 MB at 20,000 rows and +34 MB at 80,000. With the ingesting
    # process holding the indexes: +29 and +82 MB; with the chunker before that: +200 and +732 MB.
    assert large["growth_mb"] - small["growth_mb"] < 25, (small, large)

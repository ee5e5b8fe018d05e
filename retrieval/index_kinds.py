"""The kinds of FAISS index a collection's vectors are held in, and how one is built.

    flat    `IndexIDMap2(IndexFlatIP)`: exact inner product, up to `settings.ann_threshold` vectors
    ivf     `IndexIVFFlat` holding the chunk ids itself, with a hashtable direct map (to reconstruct
            and remove by id; never wrapped in IndexIDMap2, whose removal mixed up ids: `outdated`)
    ivfpq   `IndexIVFPQ` past `settings.compress_above`: one byte per 8 dimensions, its scores
            approximate (retrieval/vectors.py re-scores its candidates with the exact vectors)

`kind_for` picks the kind for a number of vectors, `new_index` builds one trained on a sample
(`train_size` of them), `kind_of` and `index_ids` read a loaded index. The files, the cache of loaded
indexes, syncing them with SQLite and searching them are retrieval/vectors.py's.
"""

from __future__ import annotations

import math

import numpy as np


def _faiss():
    import faiss  # lazy: faiss-cpu or faiss-gpu, whichever is installed

    return faiss


OPQ = False  # rotate before PQ (OPQ)? Same recall at 100 candidates re-scored, 4.5x the build: bench/RESULTS.md, finding 16
TRAIN_SAMPLE = 50000  # vectors the coarse quantizer (and the PQ codebooks) learn from
PQ_MIN_TRAIN = 256  # the PQ codebooks have 256 centroids each: fewer vectors cannot train them


def kind_for(n: int, ann_threshold: int, compress_above: int) -> str:
    """The index a collection of `n` vectors gets: "flat" (exact), "ivf" past `ann_threshold`, "ivfpq"
    (compressed, re-scored with the exact vectors) past `compress_above`."""
    return "ivfpq" if n >= compress_above else "ivf" if n >= ann_threshold else "flat"


RANK = {"flat": 0, "ivf": 1, "ivfpq": 2}


def train_size(kind: str, n: int) -> int:
    """How many of `n` vectors an index of `kind` trains on: TRAIN_SAMPLE, and for a compressed
    index enough for its 4 * sqrt(n) lists (k-means wants ~39 per list), so that each list, and
    the codes a query scans, grows as sqrt(n) rather than n."""
    if kind == "flat":
        return 0
    lists = max(16, int(4 * math.sqrt(n)))
    return min(n, max(TRAIN_SAMPLE, 39 * lists if kind == "ivfpq" else 0))


def pq_subquantizers(dim: int) -> int:
    """Bytes per vector of the PQ code: one per 8 dimensions (48 for 384: a flat vector's 1,536
    bytes become 48), the largest divisor of `dim` not over dim / 8 (PQ splits the vector evenly)."""
    return max(m for m in range(1, max(1, dim // 8) + 1) if dim % m == 0)


def new_index(dim: int, n: int, kind: str, train: np.ndarray | None):
    """A new empty index of `kind` for about `n` vectors, trained on `train`; returns (index, the
    kind it really is): too few training vectors make a smaller kind."""
    faiss = _faiss()
    if kind == "ivfpq" and (train is None or len(train) < PQ_MIN_TRAIN):
        kind = "ivf"
    if kind == "flat" or train is None or len(train) < 40:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), "flat"
    nlist = max(16, int(4 * math.sqrt(n)))
    if kind == "ivfpq":
        return compressed_index(dim, nlist, train, OPQ), "ivfpq"
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.train(train)
    ivf.nprobe = max(8, nlist // 16)
    ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # its ids are chunk ids: reconstruct and remove by id
    return ivf, kind


def compressed_index(dim: int, nlist: int, train: np.ndarray, opq: bool = False):
    """An IVF-PQ index (inner product, chunk ids held by the index, a hashtable direct map to remove
    by id) trained on `train`: `pq_subquantizers(dim)` bytes per vector, `nlist` lists, fewer when
    `train` is small (k-means wants ~39 vectors per list). `opq` rotates the vectors first (OPQ)."""
    faiss = _faiss()
    nlist = max(1, min(nlist, len(train) // 39))
    m = pq_subquantizers(dim)
    ivf = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
    if opq:
        rotation = faiss.OPQMatrix(dim, m)
        rotation.niter = 16  # of 50 by default: its training took 9x the whole IVF-PQ's at 5,000 vectors
        index = faiss.IndexPreTransform(rotation, ivf)
    else:
        index = ivf
    index.train(np.ascontiguousarray(train, np.float32))
    ivf.nprobe = pq_nprobe(nlist)
    ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
    return index  # (faiss's Python wrapper keeps `ivf` alive as long as the OPQ wrapper)


def pq_nprobe(nlist: int) -> int:
    """Lists a compressed index scans per query: more than the IVF index's 1/16, since scanning PQ
    codes costs little and a missed list loses neighbours no re-scoring brings back
    (bench/RESULTS.md, finding 16: recall@10 by lists scanned)."""
    return max(nlist // PQ_PROBE_SHARE, min(16, nlist // 2), 1)


PQ_PROBE_SHARE = 8


def kind_of(index) -> str:
    """What an index is, from the index itself (a sidecar may be missing or stale)."""
    faiss = _faiss()
    if hasattr(index, "id_map"):
        return "flat"
    return "ivfpq" if isinstance(faiss.downcast_index(faiss.extract_index_ivf(index)), faiss.IndexIVFPQ) else "ivf"


def index_ids(index) -> np.ndarray:
    """The chunk ids an index holds (any order)."""
    faiss = _faiss()
    if index.ntotal == 0:
        return np.zeros(0, np.int64)
    if hasattr(index, "id_map"):  # IndexIDMap2 around a flat index
        return faiss.vector_to_array(index.id_map)
    lists = faiss.extract_index_ivf(index).invlists
    parts = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy() for i in range(lists.nlist) if lists.list_size(i)]
    return np.concatenate(parts).astype(np.int64)


def outdated(index) -> bool:
    """An IVF index inside an IndexIDMap2: the form whose removals mixed up ids."""
    faiss = _faiss()
    return hasattr(index, "id_map") and isinstance(faiss.downcast_index(index.index), faiss.IndexIVF)

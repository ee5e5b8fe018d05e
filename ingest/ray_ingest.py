"""Ingestion on a Ray cluster: `archivist ingest --ray [ADDRESS]`.

Reading (OCR included) and chunking run as Ray Data tasks across the cluster, embedding on a
pool of Ray Data actors (one GPU each when the cluster has GPUs, CPU actors otherwise). The
workspace keeps its single writer, this process (the driver): it hashes and compares each file
first, so unchanged files never leave it, and commits what comes back through the local path's
own code (`pipeline.ingest_paths` / `run_job` with `prepare_on_ray` as their Prepare). So the job,
its progress and cancel flag, resuming, access rules, per-file errors, vector reuse and the
embedder identity check are the local ones; only where reading and embedding happen changes.

Every node must see the files at the path the driver was given (a shared mount) and have
archivist and ray[data] installed; the workspace itself stays with the driver (docs/serving.md).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from archivist import access
from archivist.ingest import pipeline
from archivist.ingest.pipeline import FileResult
from archivist.workspace import Workspace

log = logging.getLogger(__name__)

FILES_PER_BLOCK = 4  # files per read task: a block is Ray Data's unit of scheduling
DOCS_PER_EMBED = 32  # documents per embed-actor call (all their chunks embed together)
LOCAL_CPUS: int | None = None  # CPUs a local cluster offers (None: all of this machine's)
INSTALL_HINT = "pip install 'archivist[ray]' (ray[data]==2.60.0)"


class RayUnavailable(RuntimeError):
    """Ray is not installed, or the cluster cannot be reached."""


@dataclass(frozen=True)
class ClusterEmbedder:
    """The embedder the cluster's embed actors run, as the driver knows it: what the workspace's
    identity check (`vectors.check_embedder`) and the vector keys need. It embeds nothing here: a
    Ray ingest brings every chunk's vector with it (`_Pending.vectors`)."""

    name: str
    dim: int
    model_id: str
    identity: str

    def embed(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        raise RuntimeError("a Ray ingest's vectors come from the cluster's embed actors, not the driver")


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401  (ray without the [data] extra lacks it)
    except ImportError as e:
        raise RayUnavailable(f"--ray needs Ray Data: {INSTALL_HINT} ({e})") from None
    return ray


@contextmanager
def cluster(address: str | None = None, num_cpus: int | None = None) -> Iterator[dict]:
    """Connect to the Ray cluster at `address` ("auto", "ray://host:10001", "host:6379") for the
    block, or start a local one when None (`num_cpus`: its CPU count, default all of them), and
    yield its resources ({"CPU": n, "GPU": n, ...}). A local cluster is shut down after; a
    connection to an existing one is closed. Raises RayUnavailable."""
    ray = _ray()
    if ray.is_initialized():  # the caller's own connection: leave it as it is
        yield ray.cluster_resources()
        return
    # Worker logs stay in the cluster's log folder: forwarded, they would land on our stdout,
    # which --json keeps for the results. Failures still come back as exceptions.
    options = {"log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if address is None:
            ray.init(num_cpus=num_cpus or LOCAL_CPUS, include_dashboard=False, **options)
        else:
            ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise RayUnavailable(f"cannot reach the Ray cluster at {address}: {e}") from None
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the ingest's own bar counts committed files
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:
        yield ray.cluster_resources()
    finally:
        ray.shutdown()


def embed_resources(resources: dict, embed_actors: int | None = None) -> tuple[int, dict]:
    """(actors, per-actor resources) for the embed stage on a cluster with `resources`: one actor
    per GPU when there are GPUs, else `embed_actors` CPU actors (default one per 4 CPUs, at least one:
    ONNX Runtime and torch already use several cores each)."""
    gpus = int(resources.get("GPU", 0))
    if gpus:
        return embed_actors or gpus, {"num_gpus": 1, "num_cpus": 1}
    return embed_actors or max(1, int(resources.get("CPU", 1)) // 4), {"num_cpus": 1}


def remote_settings(settings):
    """`settings` as workers get them: the workspace folder absolute (a worker's working folder is
    not ours), the embedder resolved on the driver (an adapted retriever lives in the workspace)."""
    return replace(settings, home=Path(settings.home).resolve())


def describe_embedder(args: tuple[str, str, str, str]) -> dict:
    """Load the embedder `args` (models.embedder_args) and say what it is; runs on the cluster."""
    from archivist.models import embedder_identity, load_embedder

    e = load_embedder(*args)
    return {"name": e.name, "dim": e.dim, "model_id": getattr(e, "model_id", f"{e.name}:{e.dim}"),
            "identity": embedder_identity(e)}


def probe_embedder(settings, resources: dict) -> ClusterEmbedder:
    """The embedder an embed actor of this cluster loads, for the workspace's identity check before
    any work starts: loaded where an actor would run, with the same resources, or here when the
    cluster is this machine alone (same environment and devices: a worker's start and model load
    saved; each document still comes back with its actor's identity, checked)."""
    from archivist.models import embedder_args

    ray = _ray()
    args = embedder_args(remote_settings(settings))
    if _this_machine_only(ray):
        return ClusterEmbedder(**describe_embedder(args))
    _, per_actor = embed_resources(resources)
    return ClusterEmbedder(**ray.get(ray.remote(**per_actor)(describe_embedder).remote(args)))


def _this_machine_only(ray) -> bool:
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return len(nodes) == 1 and nodes[0].get("NodeManagerAddress") == ray.util.get_node_ip_address()


# -- the stages (they run on the cluster) ------------------------------------------------------


def read_stage(batch: dict, settings) -> dict:
    """Ray Data task: read and chunk each file of the batch (`pipeline.read_file`, which never
    raises: a bad file becomes a failed FileResult naming it and the reason)."""
    items = []
    for spec in batch["file"]:
        path, name, digest, size, replaces = json.loads(spec)
        item = pipeline.read_file(settings, Path(path), name, digest, size, replaces)
        if isinstance(item, pipeline._Pending):
            item.t0 = time.monotonic() - item.t0  # seconds so far: clocks differ between machines
        items.append(item)
    return {"item": items}


class EmbedStage:
    """Ray Data actor: loads the embedder once, then embeds all the chunks of each batch of
    documents together, each document's vectors set on it (one row per chunk)."""

    def __init__(self, args: tuple[str, str, str, str], batch_size: int):
        from archivist.models import embedder_identity, load_embedder

        self.embedder = load_embedder(*args)
        self.identity = embedder_identity(self.embedder)
        self.batch_size = batch_size

    def __call__(self, batch: dict) -> dict:
        items = list(batch["item"])
        docs = [p for p in items if isinstance(p, pipeline._Pending)]
        texts = [pipeline.embed_text(c.text, c.heading) for p in docs for c in p.chunks]
        vecs = self.embedder.embed(texts, batch_size=self.batch_size)
        k = 0
        for p in docs:
            p.vectors, k = vecs[k:k + len(p.chunks)], k + len(p.chunks)
        return {"item": items, "identity": [self.identity] * len(items)}


# -- the driver's side ---------------------------------------------------------------------------


def prepare_on_ray(embedder: ClusterEmbedder, resources: dict, embed_actors: int | None = None) -> pipeline.Prepare:
    """A Prepare (see pipeline) that reads, chunks and embeds on the connected cluster: files are
    hashed and compared here (unchanged ones never leave), the rest go through `read_stage` and
    `EmbedStage`; documents come back with their vectors in the order they finish. A document
    embedded by another identity than `embedder`'s (a node with other weights) fails, named."""

    def prepare(ws: Workspace, cid: int, files: list[tuple[Path, str]]) -> Iterator:
        return _run(ws, cid, files, embedder, resources, embed_actors)

    return prepare


def _run(ws: Workspace, cid: int, files: list[tuple[Path, str]], embedder: ClusterEmbedder, resources: dict,
         embed_actors: int | None) -> Iterator[pipeline._Pending | FileResult]:
    from archivist.models import embedder_args

    ray = _ray()
    todo = []
    for path, name in files:
        known = pipeline.compare(ws.db, cid, path, name)
        if isinstance(known, FileResult):
            yield known
        else:
            todo.append(json.dumps([str(path), name, *known]))
    if not todo:
        return
    settings = remote_settings(ws.settings)
    readers = replace(settings, device="cpu")  # readers need the tokenizer only: no GPU for them
    actors, per_actor = embed_resources(resources, embed_actors)
    ds = ray.data.from_items([{"file": f} for f in todo], override_num_blocks=max(1, -(-len(todo) // FILES_PER_BLOCK)))
    ds = ds.map_batches(read_stage, fn_kwargs={"settings": readers}, batch_size=None, num_cpus=1)
    ds = ds.map_batches(EmbedStage, fn_constructor_kwargs={"args": embedder_args(settings), "batch_size": settings.embed_batch},
                        batch_size=DOCS_PER_EMBED, compute=ray.data.ActorPoolStrategy(size=actors), **per_actor)
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for item, identity in zip(batch["item"], batch["identity"]):
            yield _arrived(item, identity, embedder.identity)


def _arrived(item, identity: str, expected: str) -> pipeline._Pending | FileResult:
    """What came back for one file, checked: its vectors from the expected embedder identity."""
    if isinstance(item, FileResult):
        return item
    if identity != expected:
        return FileResult(item.name, "failed", seconds=item.t0, reason=(
            f"embedded on the cluster by {identity}, not {expected} (the workspace's): "
            "every node must have the same embedder, weights and backend"))
    item.t0 = time.monotonic() - item.t0
    return item


def ingest_on_ray(ws: Workspace, paths, address: str | None = None, collection: str | None = None,
                  user: str | None = None, progress: bool = True, follow_symlinks: bool = False,
                  on_file: Callable[[FileResult, int, int], None] | None = None,
                  num_cpus: int | None = None, embed_actors: int | None = None) -> list[FileResult]:
    """`pipeline.ingest_paths` with reading, chunking and embedding on the Ray cluster at `address`
    (None: a local one started for it, with `num_cpus`). Returns one FileResult per file, like it.
    Raises AccessDenied (before any cluster starts), EmbedderMismatch when the cluster's embedder is
    not the workspace's, RayUnavailable."""
    access.require(ws, user, collection or ws.settings.collection, "write")
    with cluster(address, num_cpus) as resources:
        embedder = probe_embedder(ws.settings, resources)
        return pipeline.ingest_paths(ws, paths, collection=collection, user=user, embedder=embedder, progress=progress,
                                     on_file=on_file, follow_symlinks=follow_symlinks,
                                     prepare=prepare_on_ray(embedder, resources, embed_actors))


def resume_on_ray(ws: Workspace, user: str | None = None, address: str | None = None, progress: bool = True,
                  num_cpus: int | None = None) -> list[tuple]:
    """`pipeline.resume_interrupted` on the Ray cluster at `address`: [(job, results)]."""
    if not pipeline.interrupted_jobs(ws, user):
        return []
    with cluster(address, num_cpus) as resources:
        embedder = probe_embedder(ws.settings, resources)
        return pipeline.resume_interrupted(ws, user, embedder=embedder, progress=progress,
                                           prepare=prepare_on_ray(embedder, resources))

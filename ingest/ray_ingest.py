"""Ingestion on a Ray cluster: `archivist ingest --ray [ADDRESS]`.

Reading (OCR included) and chunking run as Ray Data tasks across the cluster; each block they read
goes, as one call, to a pool of embed actors (one GPU each when the cluster has GPUs, CPU actors
otherwise) that hold the model loaded. The workspace keeps its single
writer, this process (the driver): it hashes and compares each file first, so unchanged files
never leave it, and commits what comes back through the local path's own code
(`pipeline.ingest_paths` / `run_job` with `prepare_on_ray` as their Prepare). So the job, its
progress and cancel flag, resuming, access rules, per-file errors, vector reuse and the embedder
identity check are the local ones; only where reading and embedding happen changes.

The embed actors are what a Ray ingest pays to start (a Python process importing ONNX Runtime and
the tokenizer, then loading the model: 10-90 s on a busy 2-core box, bench/RESULTS.md finding 15).
On a cluster that is this machine alone (with at most one GPU) there are none by default
(`settings.ray_embed` "auto"): an actor there would be a second copy of the model on the same cores,
fed through another process, and measured slower than the driver embedding itself (bench/RESULTS.md
finding 27), so the driver embeds, with the embedder it loads for the identity check, what the read
tasks return. Elsewhere (or with ray_embed "actors") they are started first, while the driver lists
and hashes the files and the read tasks read; on one machine the driver embeds what is read until
the first actor is up (then the actors take every call); and on a running cluster (`--ray ADDRESS`) they stay warm for the next ingest: named actors
("embed-0", ... in the namespace "archivist"), detached, that end themselves after
`settings.ray_keep_warm` idle seconds. Each carries a key (its embedder's name or folder, device,
backend, weights fingerprint, and this module's POOL_VERSION): a later ingest reuses an actor only
when its key is the one it would load, replaces it when it is idle, and otherwise starts actors of
its own for that ingest. An ingest holds a lease on the actors it uses, so another never replaces
them under it.

Every node must see the files at the path the driver was given (a shared mount) and have
archivist and ray[data] installed; the workspace itself stays with the driver (docs/serving.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

# The embed actor imports this module; archivist.ingest.pipeline (readers, chunking, the workspace)
# is imported where it is used, so an actor's start imports only what embedding needs.

log = logging.getLogger(__name__)

FILES_PER_BLOCK = 16  # files per read task: a block is Ray Data's unit of scheduling
LOCAL_CPUS: int | None = None  # CPUs a local cluster offers (None: all of this machine's)
INSTALL_HINT = "pip install 'archivist[ray]' (ray[data]==2.60.0)"
NAMESPACE = "archivist"  # the Ray namespace of the warm embed actors
POOL_VERSION = 1  # the embed actor's protocol: bump it when EmbedActor changes, so no older actor is reused
LEASE_S = 900.0  # an ingest's hold on an actor lapses this long after its last call (a killed driver's)
IDLE_CHECK_S = 5.0  # how often an idle warm actor looks at its clock
STATE_TIMEOUT_S = 600.0  # longest wait for an actor another ingest is starting (its model load)
IN_FLIGHT = 2  # embed calls queued per actor: one running, one waiting, so an actor never idles between calls
EMBED_CHUNKS = 256  # chunks per embed call at least (writing.EMBED_CHUNKS: the local path embeds as many at once)


class RayUnavailable(RuntimeError):
    """Ray is not installed, or the cluster cannot be reached."""


@dataclass(frozen=True)
class ClusterEmbedder:
    """The embedder the cluster's embed actors run, as the driver knows it: what the workspace's
    identity check (`vectors.check_embedder`) and the vector keys need. It embeds nothing here: a
    Ray ingest brings every chunk's vector with it (`reading.Pending.vectors`)."""

    name: str
    dim: int
    model_id: str
    identity: str
    max_tokens: int | None = None  # what it reads: the chunk size check (`models.check_chunk_tokens`)

    def embed(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        raise RuntimeError("a Ray ingest's vectors come from the cluster's embed actors, not the driver")


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401  (ray without the [data] extra lacks it)
    except ImportError as e:
        raise RayUnavailable(f"--ray needs Ray Data: {INSTALL_HINT} ({e})") from None
    return ray


@dataclass(frozen=True)
class Cluster:
    """A connected cluster: its resources ({"CPU": n, "GPU": n, ...}) and whether it runs beyond
    this command (one `ray start` left, or the caller's own connection): only there do embed
    actors stay warm for the next ingest."""

    resources: dict
    lasting: bool


@contextmanager
def cluster(address: str | None = None, num_cpus: int | None = None) -> Iterator[Cluster]:
    """Connect to the Ray cluster at `address` ("auto", "ray://host:10001", "host:6379") for the
    block, or start a local one when None (`num_cpus`: its CPU count, default all of them), and
    yield it. A local cluster is shut down after; a connection to an existing one is closed; a
    connection the caller opened is left open. Raises RayUnavailable."""
    ray = _ray()
    if ray.is_initialized():  # the caller's own connection: leave it as it is
        yield Cluster(ray.cluster_resources(), lasting=True)
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
        raise RayUnavailable(f"cannot reach the Ray cluster at {address}: {e}{_token_hint(address)}") from None
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the ingest's own bar counts committed files
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    stdout = sys.stdout
    sys.stdout = _RayThreadsToStderr(stdout)
    try:
        yield Cluster(ray.cluster_resources(), lasting=address is not None)
    finally:
        ray.shutdown()
        sys.stdout = stdout


class _RayThreadsToStderr:
    """sys.stdout while connected: what Ray's driver threads write goes to stderr. Ray prints the
    cluster's error reports ("(raylet) A worker died or was killed while executing a task ...", then
    "the task will be retried") on the driver's stdout whatever `log_to_driver` says, which would
    break `--json` output; the rest of the process still writes to stdout."""

    def __init__(self, stdout):
        self.stdout = stdout

    def _sink(self):
        return sys.stderr if threading.current_thread().name.startswith("ray_") else self.stdout

    def write(self, text: str) -> int:
        return self._sink().write(text)

    def flush(self) -> None:
        self.stdout.flush()
        sys.stderr.flush()

    def __getattr__(self, name: str):
        return getattr(self.stdout, name)


def _token_hint(address: str | None) -> str:
    """What Ray's own message leaves out when a connection to `address` fails: Ray 2.60's `ray start`
    turns token authentication on, and a process that connects by address (not "auto") is let in
    only with RAY_AUTH_MODE=token and the head node's token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or
    ~/.ray/auth_token). Empty when this process has both, or turned authentication off."""
    mode = os.environ.get("RAY_AUTH_MODE", "").lower()
    if address in (None, "auto") or mode == "disabled":
        return ""
    token = (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
             or (Path.home() / ".ray" / "auth_token").exists())
    if mode == "token" and token:
        return ""
    return ("; if it is running, it likely asks for its auth token (Ray 2.60 turns token authentication on): set "
            "RAY_AUTH_MODE=token here, with the head node's ~/.ray/auth_token copied here or in RAY_AUTH_TOKEN "
            "(docs/serving.md, \"Ingestion on Ray\")")


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


def describe(embedder) -> dict:
    """What a loaded embedder is, as the identity and chunk size checks need it: name, dim, model_id,
    identity, max_tokens."""
    from archivist.models import embedder_identity

    return {"name": embedder.name, "dim": embedder.dim,
            "model_id": getattr(embedder, "model_id", f"{embedder.name}:{embedder.dim}"),
            "identity": embedder_identity(embedder), "max_tokens": getattr(embedder, "max_tokens", None)}


def load_here(settings) -> tuple[ClusterEmbedder, object]:
    """The embedder the actors would load, loaded in this process (a cluster that is this machine
    alone: same environment and devices), with its description for the identity check."""
    from archivist.models import embedder_args, load_embedder

    embedder = load_embedder(*embedder_args(remote_settings(settings)))
    return ClusterEmbedder(**describe(embedder)), embedder


def pool_key(args: tuple[str, str, str, str]) -> str:
    """What an embed actor must have loaded to be reused: the embedder's name or folder, device,
    backend and cache (`args`, models.embedder_args), the fingerprint of its weights as they are on
    disk now (retrained weights in the same folder change it), and POOL_VERSION. A short hash."""
    from archivist.catalog import model_hash, resolve_embedder

    try:
        weights = model_hash(resolve_embedder(args[0]))
    except Exception as e:  # not resolvable here (a model only the workers have): the actors' identity check remains
        weights = f"unresolved: {type(e).__name__}"
    text = json.dumps([list(args), weights, POOL_VERSION])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- the embed actors ----------------------------------------------------------------------------


class EmbedActor:
    """A Ray actor holding one embedder loaded. `key` is `pool_key` of its `args`; with
    `keep_warm_s` > 0 it ends itself once no ingest has held it (a lease) for that long."""

    def __init__(self, args: tuple[str, str, str, str], key: str, keep_warm_s: float = 0.0):
        import ray

        from archivist.models import load_embedder

        self.embedder = load_embedder(*args)
        # where it runs: the GPUs Ray gave it (one on a cluster with GPUs, embed_resources) and the
        # device its model loaded on ("cuda" there, as the embedder picks it from "auto")
        self.info = {"key": key, **describe(self.embedder), "loaded_at": time.time(),
                     "gpus": [str(g) for g in ray.get_gpu_ids()], "device": getattr(self.embedder, "device", "cpu")}
        self.leases: dict[str, float] = {}  # ingest token -> when it last used this actor
        self.idle_since = time.monotonic()
        self.calls = 0
        self.lock = threading.Lock()
        if keep_warm_s > 0:
            threading.Thread(target=self._end_when_idle, args=(keep_warm_s,), daemon=True).start()

    def state(self, token: str | None = None) -> dict:
        """What it loaded (key, identity, ...), its embed calls so far, and whether an ingest other
        than `token`'s holds it. Waits, as every call does, for the model to be loaded."""
        with self.lock:
            others = [t for t in self._live() if t != token]
        return {**self.info, "calls": self.calls, "held": bool(others)}

    def lease(self, token: str) -> dict:
        """Hold this actor for the ingest `token` (until `release`, or LEASE_S after its last call)."""
        with self.lock:
            self.leases[token] = time.monotonic()
        return self.state(token)

    def release(self, token: str) -> None:
        with self.lock:
            if self.leases.pop(token, None) is not None and not self._live():
                self.idle_since = time.monotonic()

    def embed(self, token: str, texts: list[str], batch_size: int) -> tuple[str, np.ndarray]:
        """(its identity, one normalized vector per text), for the ingest `token`."""
        with self.lock:
            self.leases[token] = time.monotonic()
            self.calls += 1
        return self.info["identity"], self.embedder.embed(texts, batch_size=batch_size)

    def _live(self) -> list[str]:
        now = time.monotonic()
        for token, seen in list(self.leases.items()):
            if now - seen > LEASE_S:  # its ingest died without releasing it
                del self.leases[token]
                self.idle_since = max(self.idle_since, seen + LEASE_S)
        return list(self.leases)

    def _end_when_idle(self, keep_warm_s: float) -> None:
        import ray

        while True:
            time.sleep(IDLE_CHECK_S)
            with self.lock:
                idle = not self._live() and time.monotonic() - self.idle_since >= keep_warm_s
            if idle:  # a detached actor outlives its drivers: it holds a CPU (or GPU) until it ends
                ray.kill(ray.get_runtime_context().current_actor)
                return


@dataclass
class Pool:
    """The embed actors one ingest uses (`token` holds them), and which of them end with it."""

    actors: list
    token: str
    own: list[bool] = field(default_factory=list)  # per actor: it ends with this ingest
    reused: int = 0  # actors that were warm, with the key wanted
    loading: list = field(default_factory=list)  # the lease calls of new actors: each returns once its model is loaded
    helper: object | None = None  # the driver's own embedder (a one-machine cluster), which embeds until an actor is up


def start_pool(settings, found: Cluster, embed_actors: int | None = None) -> Pool:
    """The embed actors for an ingest with `settings` on the connected cluster: on a lasting
    cluster, the warm named actors "embed-<i>" when their key is `pool_key` of the embedder wanted,
    new ones under those names otherwise (an idle actor of another key is replaced; one another
    ingest holds is left alone, and this ingest starts its own for that slot). Actors start loading
    now; nothing here waits for a new one. Call `end_pool` after."""
    from archivist.models import embedder_args

    ray = _ray()
    args = embedder_args(remote_settings(settings))
    key = pool_key(args)
    size, per_actor = embed_resources(found.resources, embed_actors)
    keep = float(settings.ray_keep_warm) if found.lasting else 0.0
    pool = Pool([], uuid.uuid4().hex)
    remote = ray.remote(EmbedActor)
    for i in range(size):
        name = f"embed-{i}"
        actor = _warm_actor(ray, name, key, pool.token)
        if actor is not None:
            pool.actors.append(actor)
            pool.own.append(False)
            pool.reused += 1
            continue
        if keep and _name_free(ray, name):
            actor = remote.options(name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
                                   **per_actor).remote(args, key, keep)
            pool.own.append(False)
        else:  # a local cluster ends with the command, or the name is another ingest's: this ingest's own
            actor = remote.options(**per_actor).remote(args, key)
            pool.own.append(True)
        pool.loading.append(actor.lease.remote(pool.token))
        pool.actors.append(actor)
    return pool


def _warm_actor(ray, name: str, key: str, token: str):
    """The warm actor called `name` when it has `key` (leased to `token`); None otherwise, after
    replacing it when no ingest holds it (killed, its name free again)."""
    try:
        actor = ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return None
    try:
        state = ray.get(actor.state.remote(token), timeout=STATE_TIMEOUT_S)
    except Exception as e:  # dead, or failed to load: replaced below
        log.info("embed actor %s is unusable (%s): replacing it", name, e)
        state = {"key": None, "held": False}
    if state["key"] == key:
        ray.get(actor.lease.remote(token))
        return actor
    if not state["held"]:
        ray.kill(actor)
    return None


def _name_free(ray, name: str, wait_s: float = 30.0) -> bool:
    """Whether `name` is (or within `wait_s` becomes) free: a killed actor's name is freed shortly after."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def end_pool(pool: Pool) -> None:
    """Release the pool's actors: the warm ones stay for the next ingest, this ingest's own end."""
    ray = _ray()
    for actor, own in zip(pool.actors, pool.own):
        if own:
            ray.kill(actor)
        else:
            actor.release.remote(pool.token)


def probe_embedder(settings, pool: Pool) -> ClusterEmbedder:
    """The embedder the pool's actors load, for the workspace's identity check before any work
    starts: a warm actor's (it is loaded), or loaded here when the cluster is this machine alone
    (same environment and devices: it loads while the actors start, and is kept as the pool's
    `helper`, which embeds until an actor is up), else the first actor's, once loaded. Each
    document still comes back with its actor's identity, checked."""
    ray = _ray()
    if not pool.reused and _this_machine_only(ray):
        found, pool.helper = load_here(settings)
        return found
    state = ray.get(pool.actors[0].state.remote(pool.token))
    return ClusterEmbedder(state["name"], state["dim"], state["model_id"], state["identity"], state.get("max_tokens"))


def _this_machine_only(ray) -> bool:
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return len(nodes) == 1 and nodes[0].get("NodeManagerAddress") == ray.util.get_node_ip_address()


# -- the stages (they run on the cluster) ------------------------------------------------------


def read_stage(batch: dict, settings) -> dict:
    """Ray Data task: read and chunk each file of the batch (`reading.read_file`, which never
    raises: a bad file becomes a failed FileResult naming it and the reason)."""
    from archivist.ingest import reading

    items = []
    for spec in batch["file"]:
        path, name, digest, size, replaces = json.loads(spec)
        item = reading.read_file(settings, Path(path), name, digest, size, replaces)
        if isinstance(item, reading.Pending):
            item.t0 = time.monotonic() - item.t0  # seconds so far: clocks differ between machines
        items.append(item)
    return {"item": items}


# -- the driver's side ---------------------------------------------------------------------------


def prepare_on_ray(embedder: ClusterEmbedder, pool: Pool) -> Callable:
    """A Prepare (see pipeline) that reads, chunks and embeds on the connected cluster: files are
    hashed and compared here (unchanged ones never leave), the rest go through `read_stage` (Ray
    Data tasks) and the pool's embed actors; documents come back with their vectors in the order they
    finish. A document embedded by another identity than `embedder`'s (a node with other weights)
    fails, named."""

    def prepare(ws, cid: int, files: list[tuple[Path, str]]) -> Iterator:
        return _run(ws, cid, files, embedder, pool)

    return prepare


def _run(ws, cid: int, files: list[tuple[Path, str]], embedder: ClusterEmbedder, pool: Pool) -> Iterator:
    from archivist.ingest import reading, writing
    from archivist.ingest.folders import FileResult

    ray = _ray()
    todo = []
    for path, name in files:
        known = reading.compare(ws.db, cid, path, name)
        if isinstance(known, FileResult):
            yield known
        else:
            todo.append(json.dumps([str(path), name, *known]))
    if not todo:
        return
    settings = remote_settings(ws.settings)
    readers = replace(settings, device="cpu")  # readers need the tokenizer only: no GPU for them
    ds = ray.data.from_items([{"file": f} for f in todo], override_num_blocks=max(1, -(-len(todo) // FILES_PER_BLOCK)))
    ds = ds.map_batches(read_stage, fn_kwargs={"settings": readers}, batch_size=None, num_cpus=1)
    # What is read goes to the embed actors in calls of EMBED_CHUNKS chunks or more while they are
    # busy: the embedder sorts a call's texts by length before batching them, so a big call pads
    # little (as the local path's BATCH_CHUNKS do). The driver keeps IN_FLIGHT calls per actor and takes each back as it finishes.
    # (A Ray Data stage cannot use actors it did not start, and a Ray Data task that waits on one
    # frees its CPU, so Ray starts a fresh worker process for the next block, which loads the
    # tokenizer again: about 7x slower here, bench/RESULTS.md finding 15.)
    waiting: dict = {}  # call -> the documents whose chunks it embeds
    group: list = []
    calls = 0

    def by_driver() -> bool:
        """Whether the driver embeds the next call itself: it has the embedder loaded (pool.helper)
        and the pool has no actor, or no new actor has finished loading its model yet. Once one
        has, never again."""
        if pool.helper is not None and (not pool.actors or pool.loading and not ray.wait(pool.loading, num_returns=1, timeout=0)[0]):
            return True
        pool.helper = None
        return False

    def send(docs: list, here: bool) -> list:
        """Embed `docs` here (returns them, done) or queue them on an actor (returns [])."""
        nonlocal calls
        texts = [writing.embed_text(c.text, c.heading) for p in docs for c in p.chunks]
        if here:
            return list(_embedded(docs, (embedder.identity, pool.helper.embed(texts, batch_size=settings.embed_batch)),
                                  embedder.identity))
        waiting[pool.actors[calls % len(pool.actors)].embed.remote(pool.token, texts, settings.embed_batch)] = docs
        calls += 1
        return []

    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for item in batch["item"]:
            if isinstance(item, reading.Pending):
                group.append(item)
            else:
                yield item
        if group:
            here = by_driver()
            if sum(len(p.chunks) for p in group) >= EMBED_CHUNKS or (not here and len(waiting) < len(pool.actors)):
                yield from send(group, here)  # big enough, or an actor has nothing queued: it never idles while there is work
                group = []
        if not waiting:
            continue
        ready, running = ray.wait(list(waiting), num_returns=len(waiting), timeout=0)
        if len(running) >= IN_FLIGHT * len(pool.actors):  # enough queued: take one back before reading on
            ready, _ = ray.wait(list(waiting), num_returns=len(ready) + 1)
        for ref in ready:
            yield from _embedded(waiting.pop(ref), ray.get(ref), embedder.identity)
    if group:
        yield from send(group, by_driver())
    while waiting:
        [ref], _ = ray.wait(list(waiting), num_returns=1)
        yield from _embedded(waiting.pop(ref), ray.get(ref), embedder.identity)


def _embedded(docs: list, answer: tuple[str, np.ndarray], expected: str) -> Iterator:
    """The documents of one embed call with their vectors set, each checked (`_arrived`)."""
    identity, vecs = answer
    k = 0
    for p in docs:
        p.vectors, k = vecs[k:k + len(p.chunks)], k + len(p.chunks)
        yield _arrived(p, identity, expected)


def _arrived(item, identity: str, expected: str):
    """What came back for one file, checked: its vectors from the expected embedder identity."""
    from archivist.ingest.folders import FileResult

    if isinstance(item, FileResult):
        return item
    if identity != expected:
        return FileResult(item.name, "failed", seconds=item.t0, reason=(
            f"embedded on the cluster by {identity}, not {expected} (the workspace's): "
            "every node must have the same embedder, weights and backend"))
    item.t0 = time.monotonic() - item.t0
    return item


def driver_embeds(settings, found: Cluster) -> bool:
    """Whether the driver embeds everything itself, with no actor: ray_embed "auto" on a cluster
    that is this machine alone, with at most one GPU (more GPUs: one actor on each)."""
    return settings.ray_embed == "auto" and found.resources.get("GPU", 0) <= 1 and _this_machine_only(_ray())


@contextmanager
def _embedding_on(settings, address: str | None, num_cpus: int | None, embed_actors: int | None):
    """(embedder, pool) on the cluster at `address` for the block: the actors started (or found
    warm) first, so their model loads overlap what the driver does next; released after. When
    `driver_embeds`, a pool without actors whose helper (the driver's embedder) takes every call."""
    with cluster(address, num_cpus) as found:
        if driver_embeds(settings, found):
            described, embedder = load_here(settings)
            yield described, Pool([], uuid.uuid4().hex, helper=embedder)
            return
        pool = start_pool(settings, found, embed_actors)
        try:
            yield probe_embedder(settings, pool), pool
        finally:
            end_pool(pool)


def ingest_on_ray(ws, paths, address: str | None = None, collection: str | None = None,
                  user: str | None = None, progress: bool = True, follow_symlinks: bool = False,
                  on_file: Callable | None = None, num_cpus: int | None = None,
                  embed_actors: int | None = None) -> list:
    """`pipeline.ingest_paths` with reading, chunking and embedding on the Ray cluster at `address`
    (None: a local one started for it, with `num_cpus`). Returns one FileResult per file, like it.
    Raises AccessDenied (before any cluster starts), EmbedderMismatch when the cluster's embedder is
    not the workspace's, RayUnavailable."""
    from archivist import access
    from archivist.ingest import pipeline

    access.require(ws, user, collection or ws.settings.collection, "write")
    with _embedding_on(ws.settings, address, num_cpus, embed_actors) as (embedder, pool):
        return pipeline.ingest_paths(ws, paths, collection=collection, user=user, embedder=embedder, progress=progress,
                                     on_file=on_file, follow_symlinks=follow_symlinks,
                                     prepare=prepare_on_ray(embedder, pool))


def resume_on_ray(ws, user: str | None = None, address: str | None = None, progress: bool = True,
                  num_cpus: int | None = None) -> list[tuple]:
    """`pipeline.resume_interrupted` on the Ray cluster at `address`: [(job, results)]."""
    from archivist.ingest import pipeline

    if not pipeline.interrupted_jobs(ws, user):
        return []
    with _embedding_on(ws.settings, address, num_cpus, None) as (embedder, pool):
        return pipeline.resume_interrupted(ws, user, embedder=embedder, progress=progress,
                                           prepare=prepare_on_ray(embedder, pool))

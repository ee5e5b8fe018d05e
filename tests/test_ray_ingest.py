"""Ingestion on a local Ray cluster (`archivist ingest --ray`): the same workspace as a local
ingest, a bad file failing alone, and a killed --ray ingest that a rerun finishes.

The tests that start Ray are marked `ray`: out of the default run (a Ray cluster takes ~20 s to
start here, and Ray is an optional extra); `make test-ray` installs it and runs them. The driver's
side (vectors that come with the documents) is checked without Ray, in the default run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from archivist import jobs
from archivist.ingest.pipeline import ingest_paths
from archivist.retrieval.repair import open_checked

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_faults import FORMATS, _child_env, _count, make_corpus, problems, settings_at, sigkill_when, snapshot  # noqa: E402


# The --ray CLI with small commit batches and a paced commit (in this driver: the embedding runs in
# Ray actors), so the kill lands between commits of a run that is still going.
RAY_CHILD = """
import sys, time
import archivist.ingest.pipeline as p
import archivist.ingest.ray_ingest as r
import archivist.ingest.writing as w
p.BATCH_CHUNKS = 8
p.FLUSH_SECONDS = 0.2
r.FILES_PER_BLOCK = 1
r.EMBED_CHUNKS = 8
commit = w.embed_and_commit
def paced(*args, **kwargs):
    time.sleep(0.5)
    return commit(*args, **kwargs)
w.embed_and_commit = paced
from archivist.cli import main
sys.exit(main(sys.argv[1:]))
"""


# `archivist ingest --ray ADDRESS` against a cluster of two nodes (two raylets on this machine,
# ray.cluster_utils): the embedder identity comes from an embed actor, not from the driver.
TWO_NODES_CHILD = """
import sys
from ray.cluster_utils import Cluster
from archivist.cli import main
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
cluster.add_node(num_cpus=2)
cluster.wait_for_nodes()
try:
    code = main(["ingest", sys.argv[1], "-c", "docs", "-q", "--ray", cluster.address])
finally:
    cluster.shutdown()
sys.exit(code)
"""


# The same against a node that declares two GPUs (Ray schedules by the resources a node declares;
# this machine has none, so the actors' models load on the CPU): one embed actor per GPU, each given
# its own. The actors are left warm (an ingest with an address keeps them), and their state is read.
GPU_NODE_CHILD = """
import json, sys
import ray
from ray.cluster_utils import Cluster
from archivist.cli import main
from archivist.ingest.ray_ingest import NAMESPACE
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
cluster.add_node(num_cpus=2, num_gpus=2)
cluster.wait_for_nodes()
try:
    code = main(["ingest", sys.argv[1], "-c", "docs", "-q", "--ray", cluster.address])
    ray.init(address=cluster.address, namespace=NAMESPACE)
    states = [ray.get(ray.get_actor(f"embed-{i}").state.remote()) for i in range(2)]
    print(json.dumps([{k: s[k] for k in ("gpus", "device", "calls")} for s in states]))
    ray.shutdown()
finally:
    cluster.shutdown()
sys.exit(code)
"""


# `archivist ingest --json --ray`, whose first read task's worker dies mid-task (as one killed, or
# out of memory): Ray retries the task, and its raylet tells the driver "A worker died ...".
CRASHING_READER_CHILD = """
import os, sys
import archivist.ingest.ray_ingest as r
from archivist.cli import main
MARKER = sys.argv[2]
real = r.read_stage
def read_stage(batch, settings):
    if not os.path.exists(MARKER):
        open(MARKER, "w").close()
        os._exit(1)
    return real(batch, settings)
r.read_stage = read_stage
r.FILES_PER_BLOCK = 1
sys.exit(main(["ingest", sys.argv[1], "-c", "docs", "--json", "--ray"]))
"""


@pytest.fixture(scope="module")
def local_cluster():
    """One local Ray cluster for the module: ingest_on_ray uses a connection that is already open."""
    ray = pytest.importorskip("ray", reason="Ray is not installed: `make test-ray` installs it and runs these")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.cluster_resources()
    ray.shutdown()


def vectors_by_chunk(ws) -> dict:
    rows = ws.db.execute("SELECT k.name, d.path, c.seq, c.embedding FROM chunks c JOIN documents d ON d.id = c.document_id "
                         "JOIN collections k ON k.id = d.collection_id").fetchall()
    return {(r[0], r[1], r[2]): np.frombuffer(r[3], dtype=np.float32) for r in rows}


def test_vectors_that_come_with_the_documents_are_stored_as_given(tmp_path, embedder):
    """The driver's side of a Ray ingest: documents that bring their vectors (`reading.Pending.vectors`)
    are committed with exactly those, and the driver's embedder is never asked."""
    from archivist.ingest.ray_ingest import ClusterEmbedder
    from archivist.ingest.reading import Pending, read_ahead
    from archivist.models import embedder_identity

    corpus = make_corpus(tmp_path / "corpus", 3, seed=6)
    given = {}

    def prepare(ws, cid, files):  # read here, "embedded elsewhere": recognisable vectors
        for item in read_ahead(ws, cid, files):
            if isinstance(item, Pending):
                rng = np.random.default_rng(len(given))
                item.vectors = rng.standard_normal((len(item.chunks), embedder.dim)).astype(np.float32)
                given[item.name] = item.vectors
            yield item

    remote = ClusterEmbedder(embedder.name, embedder.dim, embedder.model_id, embedder_identity(embedder))
    with open_checked(settings_at(tmp_path / "ws")) as ws:
        results = ingest_paths(ws, [corpus], collection="docs", embedder=remote, progress=False, prepare=prepare)
        assert [r.status for r in results] == ["added"] * 3
        assert [r.embedded for r in results] == [len(v) for v in given.values()]
        for name, vecs in given.items():
            stored = ws.db.execute("SELECT c.embedding FROM chunks c JOIN documents d ON d.id = c.document_id "
                                   "WHERE d.path = ? ORDER BY c.seq", (name,)).fetchall()
            assert np.array_equal(np.stack([np.frombuffer(r[0], dtype=np.float32) for r in stored]), vecs)
        assert problems(ws) == []


@pytest.mark.ray
@pytest.mark.parametrize("ray_embed", ["auto", "actors"])
def test_ray_ingest_equals_a_local_one_and_a_bad_file_fails_alone(tmp_path, embedder, local_cluster, ray_embed):
    """Either way of embedding on a one-machine cluster: the driver (auto: no actor is started)
    or the embed actors."""
    import ray

    from archivist.ingest import ray_ingest
    from archivist.ingest.ray_ingest import ingest_on_ray

    corpus = make_corpus(tmp_path / "corpus", 6, seed=3, samples=FORMATS, size=3)
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a PDF")
    with open_checked(settings_at(tmp_path / "local")) as ws:
        local = ingest_paths(ws, [corpus], collection="docs", embedder=embedder, progress=False)
        want, want_vectors = snapshot(ws), vectors_by_chunk(ws)
    def embed_actor() -> tuple | None:  # (id, calls) of the embed actor on the cluster, if any
        try:
            actor = ray.get_actor("embed-0", namespace=ray_ingest.NAMESPACE)
        except ValueError:
            return None
        return actor._actor_id, ray.get(actor.state.remote())["calls"]

    before = embed_actor()
    with open_checked(replace(settings_at(tmp_path / "ray"), ray_embed=ray_embed)) as ws:
        got = ingest_on_ray(ws, [corpus], collection="docs", progress=False)
        assert problems(ws) == []
        have, have_vectors = snapshot(ws), vectors_by_chunk(ws)
        [job] = jobs.list_jobs(ws, kinds=("ingest",))
    after = embed_actor()
    if ray_embed == "auto":
        assert after == before, "an embed actor was started or called on a one-machine cluster"
    else:
        assert after is not None and (before is None or after[0] != before[0] or after[1] > before[1])

    # the bad file fails alone, named, with the reason the local path gives; the rest lands
    assert [(r.name, r.status, r.reason) for r in got] == [(r.name, r.status, r.reason) for r in local]
    failed = [r for r in got if r.status == "failed"]
    assert [r.name for r in failed] == ["corpus/broken.pdf"] and "PDF" in failed[0].reason
    assert sum(r.status == "added" for r in got) == len(list(corpus.iterdir())) - 1
    assert [r.chunks for r in got] == [r.chunks for r in local] and [r.embedded for r in got] == [r.embedded for r in local]
    # the same documents and chunks (text, spans, pages, headings, vector keys) ...
    assert have == want
    # ... and vectors within the backend's tolerance: onnx-int8 quantizes activations per batch, so
    # a chunk embedded beside other chunks differs a little (lowest cosine 0.984 over 1,328 chunks
    # in bench/ingest_ray.py; a local ingest's own batches move with its flush timing too)
    assert have_vectors.keys() == want_vectors.keys()
    cosines = np.array([float(have_vectors[k] @ want_vectors[k]) for k in want_vectors])
    assert cosines.min() > 0.98 and np.median(cosines) > 0.995, (cosines.min(), np.median(cosines))
    # the job is recorded like a local ingest's
    assert (job.kind, job.state, job.done, job.total) == ("ingest", "done", len(got), len(got))
    assert job.result["counts"] == {"added": len(got) - 1, "failed": 1}


@pytest.mark.ray
def test_ray_ingest_keeps_the_access_rule_and_the_embedder_check(tmp_path, local_cluster):
    from archivist import access
    from archivist.ingest.ray_ingest import ingest_on_ray
    from archivist.retrieval.vectors import EmbedderMismatch
    from archivist.workspace import open_workspace

    corpus = make_corpus(tmp_path / "corpus", 1, seed=4)
    with open_workspace(settings_at(tmp_path / "ws")) as ws:
        access.add_user(ws, "reader")
        with pytest.raises(access.AccessDenied):
            ingest_on_ray(ws, [corpus], collection="docs", user="reader", progress=False)
        ws.set_meta("embedder_identity", "some-other-model:384 backend=torch weights=0")
        with pytest.raises(EmbedderMismatch, match="some-other-model"):
            ingest_on_ray(ws, [corpus], collection="docs", progress=False)
        assert ws.db.execute("SELECT COUNT(*) FROM documents").fetchone()[0] == 0
        assert jobs.list_jobs(ws, kinds=("ingest",)) == []


@pytest.mark.ray
def test_the_driver_embeds_until_an_embed_actor_is_up_then_never_again(tmp_path, embedder, local_cluster):
    """While no embed actor has loaded its model, the driver embeds what is read with its own
    embedder (pool.helper, the one loaded for the identity check on a one-machine cluster): a
    corpus read then lands whole, equal to a local ingest. Once an actor is up, every call goes to
    the actors. Here the 'loading' actor is a task that waits for a file, so the switch is ours."""
    import ray

    from archivist.ingest import pipeline, ray_ingest
    from archivist.models import embedder_args, embedder_identity
    from archivist.settings import Settings

    gate = tmp_path / "actor-loaded"

    @ray.remote(num_cpus=0)
    def loading(path: str) -> bool:  # stands for an actor's lease call, which returns once it has loaded
        while not Path(path).exists():
            time.sleep(0.05)
        return True

    actor = ray.remote(ray_ingest.EmbedActor).options(num_cpus=0).remote(embedder_args(Settings.from_env()), "test-key")
    pool = ray_ingest.Pool([actor], "token", own=[True], loading=[loading.remote(str(gate))], helper=embedder)
    described = ray_ingest.ClusterEmbedder(embedder.name, embedder.dim, embedder.model_id, embedder_identity(embedder))
    first, second = make_corpus(tmp_path / "one", 4, seed=8), make_corpus(tmp_path / "two", 3, seed=9)
    try:
        with open_checked(settings_at(tmp_path / "ray")) as ws:
            got = pipeline.ingest_paths(ws, [first], collection="docs", embedder=described, progress=False,
                                        prepare=ray_ingest.prepare_on_ray(described, pool))
            assert [r.status for r in got] == ["added"] * 4 and pool.helper is embedder
            assert ray.get(actor.state.remote())["calls"] == 0, "an actor was called while none was up"
            have = vectors_by_chunk(ws)
            gate.touch()
            ray.get(pool.loading)
            got = pipeline.ingest_paths(ws, [second], collection="docs", embedder=described, progress=False,
                                        prepare=ray_ingest.prepare_on_ray(described, pool))
            assert [r.status for r in got] == ["added"] * 3 and pool.helper is None
            assert ray.get(actor.state.remote())["calls"] >= 1, "the actor was up, but the driver kept embedding"
            assert problems(ws) == []
            after = snapshot(ws)
        with open_checked(settings_at(tmp_path / "local")) as ws:
            ingest_paths(ws, [first], collection="docs", embedder=embedder, progress=False)
            want = vectors_by_chunk(ws)
            ingest_paths(ws, [second], collection="docs", embedder=embedder, progress=False)
            assert after == snapshot(ws)
        assert have.keys() == want.keys()
        assert min(float(have[k] @ want[k]) for k in want) > 0.98
    finally:
        ray.kill(actor)


@pytest.mark.ray
def test_a_killed_ray_ingest_rerun_equals_a_clean_one(tmp_path, embedder, local_cluster):
    from archivist.ingest.ray_ingest import ingest_on_ray

    corpus = make_corpus(tmp_path / "corpus", 10, seed=5, samples=FORMATS, size=3)
    total = len(list(corpus.iterdir()))
    home = tmp_path / "ws"
    db = home / "archivist.db"
    # its own session: the child's local Ray cluster (raylet, agents, workers) dies with it below
    proc = subprocess.Popen([sys.executable, "-c", RAY_CHILD, "ingest", str(corpus), "-c", "docs", "-q", "--ray"],
                            env=_child_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    target = random.Random(5).randint(2, total // 2)
    try:
        alive = sigkill_when(proc, lambda: _count(db, "SELECT COUNT(*) FROM documents") >= target, 400,
                             settle=0.2, poll=0.05, reap=30)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # what Ray started for the killed driver
        except ProcessLookupError:
            pass
    at_kill = _count(db, "SELECT COUNT(*) FROM documents")
    assert alive and proc.returncode == -signal.SIGKILL and 0 < at_kill < total, (alive, at_kill, total)

    with open_checked(settings_at(home)) as ws:
        assert problems(ws) == []
        [cut] = jobs.interrupted(ws, ("ingest",))
        assert cut.total == total
        results = ingest_on_ray(ws, [corpus], collection="docs", progress=False)
        assert sorted(r.status for r in results) == sorted(["unchanged"] * at_kill + ["added"] * (total - at_kill))
        assert problems(ws) == []
        after = snapshot(ws)
    with open_checked(settings_at(tmp_path / "clean")) as ws:
        ingest_paths(ws, [corpus], collection="docs", embedder=embedder, progress=False)
        assert after == snapshot(ws), "the killed-and-rerun --ray workspace differs from a clean ingest"


@pytest.mark.ray
def test_a_ray_worker_dying_mid_task_is_retried_and_json_keeps_stdout(tmp_path):
    """A read task's worker dies (killed, out of memory): Ray runs the task again and every file
    lands; Ray's report of it ("(raylet) A worker died ...", which Ray prints on the driver's
    stdout) goes to stderr, so `--json` output stays one JSON document."""
    pytest.importorskip("ray", reason="Ray is not installed: `make test-ray` installs it and runs these")
    corpus = make_corpus(tmp_path / "corpus", 6, seed=10)
    marker = tmp_path / "a-worker-died"
    out = subprocess.run([sys.executable, "-c", CRASHING_READER_CHILD, str(corpus), str(marker)],
                         env=_child_env(tmp_path / "ws"), capture_output=True, text=True, timeout=600,
                         start_new_session=True)
    assert marker.exists(), "no read task's worker died"
    assert out.returncode == 0, out.stderr[-3000:]
    data = json.loads(out.stdout)  # nothing but the results on stdout
    assert sorted(f["status"] for f in data["files"]) == ["added"] * 6
    assert "A worker died" in out.stderr, out.stderr[-3000:]


@pytest.mark.ray
def test_a_driver_without_the_clusters_auth_token_is_told_so(tmp_path, local_cluster):
    """Ray 2.60 clusters ask for their auth token: a driver on another machine (here: another home
    folder, without ~/.ray/auth_token, and no RAY_AUTH_MODE) that connects by address is refused, and
    Ray's message says only "Failed to connect"; archivist's says what to set."""
    import ray

    address = ray.get_runtime_context().gcs_address
    env = {k: v for k, v in _child_env(tmp_path / "ws").items() if not k.startswith("RAY_AUTH")}
    env["HOME"] = str(tmp_path / "elsewhere")
    corpus = make_corpus(tmp_path / "corpus", 1, seed=11)
    out = subprocess.run([sys.executable, "-c", "import sys; from archivist.cli import main; sys.exit(main(sys.argv[1:]))",
                          "ingest", str(corpus), "-q", "--ray", address],
                         env=env, capture_output=True, text=True, timeout=300)
    error = out.stderr.strip().splitlines()[-1]
    assert out.returncode != 0 and error.startswith(f"archivist: error: cannot reach the Ray cluster at {address}"), error
    assert "RAY_AUTH_MODE=token" in error and "auth_token" in error, error


@pytest.mark.ray
def test_a_second_ingest_reuses_the_warm_embed_actor_and_another_embedder_never_does(tmp_path, local_cluster):
    """On a running cluster the embed actor an ingest started stays loaded for the next one (the
    same actor, loaded once, no ingest holding it after); an ingest with another embedder identity
    (another backend: other vectors) replaces it instead of reusing it."""
    import ray

    from archivist.ingest import ray_ingest
    from archivist.ingest.ray_ingest import ingest_on_ray

    corpus = make_corpus(tmp_path / "corpus", 2, seed=7)

    def ingest(home, **overrides) -> tuple[list, str]:
        with open_checked(replace(settings_at(home), ray_embed="actors", **overrides)) as ws:
            results = ingest_on_ray(ws, [corpus], collection="docs", progress=False)
            assert problems(ws) == []
            return [r.status for r in results], ws.meta("embedder_identity")

    def warm_actor():
        actor = ray.get_actor("embed-0", namespace=ray_ingest.NAMESPACE)
        return actor._actor_id, ray.get(actor.state.remote())

    assert ingest(tmp_path / "a")[0] == ["added", "added"]
    first_id, first = warm_actor()
    statuses, identity = ingest(tmp_path / "b")
    again_id, again = warm_actor()
    assert statuses == ["added", "added"] and identity == first["identity"]
    assert again_id == first_id and again["loaded_at"] == first["loaded_at"], "the warm actor was not reused"
    assert again["calls"] > first["calls"] and not again["held"]

    statuses, identity = ingest(tmp_path / "c", embed_backend="onnx")
    other_id, other = warm_actor()
    assert statuses == ["added", "added"] and "backend=onnx." in identity and identity != first["identity"]
    assert other_id != first_id and other["key"] != first["key"] and other["identity"] == identity


@pytest.mark.ray
def test_a_warm_embed_actor_ends_itself_once_idle_but_not_while_an_ingest_holds_it(local_cluster):
    import ray
    from ray.exceptions import RayActorError

    from archivist.ingest import ray_ingest
    from archivist.models import embedder_args
    from archivist.settings import Settings

    args = embedder_args(Settings.from_env())
    actor = ray.remote(ray_ingest.EmbedActor).options(num_cpus=0).remote(args, "k", keep_warm_s=1.0)
    assert ray.get(actor.lease.remote("ingest-1"))["held"] is False  # held by none but the asker
    time.sleep(ray_ingest.IDLE_CHECK_S * 1.5)
    assert ray.get(actor.state.remote())["held"], "an actor an ingest holds ended"
    ray.get(actor.release.remote("ingest-1"))
    deadline = time.monotonic() + ray_ingest.IDLE_CHECK_S * 4
    with pytest.raises(RayActorError):
        while time.monotonic() < deadline:
            ray.get(actor.state.remote())
            time.sleep(0.5)


@pytest.mark.ray
def test_a_ray_ingest_on_two_nodes_equals_a_local_one(tmp_path, embedder):
    """Two Ray nodes (on this machine, as far as a test can go towards several machines): the driver
    does not load the embedder, it takes the identity an embed actor reports; same workspace."""
    ingest_in_child_equals_a_local_one(TWO_NODES_CHILD, tmp_path, embedder, seed=8)


def ingest_in_child_equals_a_local_one(child: str, tmp_path, embedder, seed: int) -> str:
    """Run `child` (a script that ingests its argument with --ray into the workspace its environment
    names) on a small corpus, check that workspace equals a local ingest of it; the child's stdout."""
    pytest.importorskip("ray", reason="Ray is not installed: `make test-ray` installs it and runs these")
    corpus = make_corpus(tmp_path / "corpus", 4, seed=seed, samples=FORMATS, size=3)
    home = tmp_path / "ws"
    out = subprocess.run([sys.executable, "-c", child, str(corpus)], env=_child_env(home),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    with open_checked(settings_at(home)) as ws:
        assert problems(ws) == []
        have = snapshot(ws)
    with open_checked(settings_at(tmp_path / "local")) as ws:
        ingest_paths(ws, [corpus], collection="docs", embedder=embedder, progress=False)
        assert have == snapshot(ws)
    return out.stdout


@pytest.mark.ray
def test_a_cluster_with_gpus_embeds_on_one_actor_per_gpu(tmp_path, embedder):
    """Where the cluster has GPUs, the embedding runs in actors that each hold one GPU (Ray sets each
    actor's visible device). What this machine cannot show is a model on a real GPU: the node
    declares its GPUs, and the models load on the CPU."""
    out = ingest_in_child_equals_a_local_one(GPU_NODE_CHILD, tmp_path, embedder, seed=9)
    actors = json.loads(out.strip().splitlines()[-1])
    assert sorted(g for a in actors for g in a["gpus"]) == ["0", "1"]  # one GPU each, not the same one
    assert all(len(a["gpus"]) == 1 for a in actors) and sum(a["calls"] for a in actors) > 0


def test_the_embed_actor_key_changes_with_the_embedder_and_its_weights(tmp_path):
    """A warm actor is reused only under the same key: other weights in the same folder (a retrained
    embedder), another backend or device change it."""
    from archivist.ingest.ray_ingest import pool_key

    model = tmp_path / "embedder"
    model.mkdir()
    (model / "config.json").write_text("{}")
    args = (str(model), "cpu", "onnx-int8", "~/.cache/archivist")
    key = pool_key(args)
    assert pool_key(args) == key
    assert pool_key((str(model), "cpu", "onnx", args[3])) != key
    assert pool_key((str(model), "cuda", "onnx-int8", args[3])) != key
    (model / "model.safetensors").write_bytes(b"new weights")
    assert pool_key(args) != key


def test_ray_option_takes_an_address_or_gives_a_folder_back(tmp_path):
    """`--ray` takes an optional ADDRESS, so `archivist ingest --ray docs/` would read the folder as
    one: a value that is no address but an existing path goes back to the paths."""
    from archivist.ingest.cli import ray_address

    paths = ["b.md"]
    assert ray_address(str(tmp_path), paths) is None and paths == [str(tmp_path), "b.md"]
    for address in ("auto", "ray://head:10001", "10.0.0.5:6379"):
        paths = []
        assert ray_address(address, paths) == address and paths == []
    assert ray_address("local", paths) is None and ray_address(None, paths) is None

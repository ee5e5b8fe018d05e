"""Shared fixtures: every test gets its own workspace under tmp_path; models load once per session."""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _drop_settings_from_the_shell() -> None:
    """Tests choose their settings themselves: an ARCHIVIST_* variable left in the shell (ARCHIVIST_LLM_URL
    after following docs/serving.md, ARCHIVIST_HOME, ARCHIVIST_LLM) would run them against a server, a
    workspace or a model they do not expect, and a comparison against the in-process model would
    compare the server with itself."""
    import dataclasses

    from archivist.settings import Settings

    for f in dataclasses.fields(Settings):
        os.environ.pop(f"ARCHIVIST_{f.name.upper()}", None)


_drop_settings_from_the_shell()


def _share_the_cores_between_workers() -> None:
    """Under pytest-xdist (`make test` runs `-n auto`), each worker gets its share of the cores for torch's
    threads, and so do the processes its tests start (the environment is inherited): two workers each
    running two OpenMP threads on two cores run several times slower than with one thread each. Set
    before torch is imported; an explicit OMP_NUM_THREADS wins."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))


_share_the_cores_between_workers()

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
DATA = Path(__file__).resolve().parent / "data"
ARTIFACTS = REPO / "test-artifacts"


def pytest_collection_modifyitems(config, items):
    """Long, gpu and e2e tests are slow too: `-m "not slow"` (the fast loop) leaves them out even though
    a command-line -m replaces the one in pyproject.toml's addopts. (Runs before pytest's own -m
    selection: conftest hooks are called before the built-in plugins'.)"""
    for item in items:
        if any(item.get_closest_marker(m) for m in ("long", "gpu", "e2e", "vllm", "ray")) and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)
    _unique_node_ids(items)


def _unique_node_ids(items) -> None:
    """schemathesis' cases (test_api_schema.py) share one node id, their operation only in the name;
    pytest-xdist schedules by node id and would run the first case alone. Each gets its name in its id
    (pytest keeps it in a private attribute: `_id` since pytest 9, `_nodeid` before), and a run with
    ids still shared stops rather than leave tests out unseen."""
    seen = collections.Counter(item.nodeid for item in items)
    for item in items:
        if seen[item.nodeid] > 1 and "[" in item.name:
            if hasattr(item, "_id"):
                item._id = item.parent.id.child(item.name)
            else:
                item._nodeid = f"{item.parent.nodeid}::{item.name}"
    shared = [n for n, k in collections.Counter(i.nodeid for i in items).items() if k > 1]
    if shared and os.environ.get("PYTEST_XDIST_WORKER"):
        raise pytest.UsageError(f"tests share a node id, pytest-xdist would run one of each: {shared}")


@pytest.fixture(autouse=True)
def _workspace_env(tmp_path, monkeypatch):
    """All state of a test lives in tmp_path; the model cache stays shared so conversion happens once."""
    monkeypatch.setenv("ARCHIVIST_HOME", str(tmp_path / "ws"))
    monkeypatch.delenv("ARCHIVIST_USER", raising=False)
    yield


@pytest.fixture
def settings(tmp_path):
    from archivist.settings import Settings

    return Settings.from_env()


@pytest.fixture
def ws(settings):
    from archivist.workspace import open_workspace

    w = open_workspace(settings)
    yield w
    w.close()


@pytest.fixture
def cli(monkeypatch, capsys):
    """`cli(*args, env={...}, unset=(...))` runs `archivist ARGS` in this process through the same
    `main()` as the console script and returns a CompletedProcess (exit status, stdout, stderr).
    A fresh interpreter costs several CPU-seconds per command (torch, transformers, the models
    loaded again); tests about the process itself (kill -9, start-up warnings, workers) start one.
    Each call reads (and so clears) what `capsys` captured before it."""
    from archivist.cli import main

    def run(*args: str, env: dict | None = None, unset: tuple = ()) -> subprocess.CompletedProcess:
        with monkeypatch.context() as m:
            for key, value in (env or {}).items():
                m.setenv(key, value)
            for key in unset:
                m.delenv(key, raising=False)
            capsys.readouterr()
            try:
                status = main([str(a) for a in args])
            except SystemExit as e:  # argparse: --help (0) or a usage error (2)
                status = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
            out = capsys.readouterr()
        return subprocess.CompletedProcess(["archivist", *args], status, out.out, out.err)

    return run


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test: on this shared 2-core box, two OpenMP threads under load run
    several times slower. Modules that train use it for every test (`pytestmark`)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def short_answers(monkeypatch):
    """At most 48 generated tokens per answer (ARCHIVIST_MAX_NEW_TOKENS, read when settings are made):
    the small chat model rarely stops before the 200-token default, so an answer costs its full length.
    For tests about what is done with an answer (checked, streamed, identical over HTTP), not its length."""
    monkeypatch.setenv("ARCHIVIST_MAX_NEW_TOKENS", "48")


# Short made-up facts a fine-tune can learn in a few steps.
FACTS = [
    ("What is the code word of team Lynx?", "The code word of team Lynx is PELICAN-42 [1]."),
    ("Which room does team Otter meet in?", "Team Otter meets in room K-117 [1]."),
    ("When is the Falcon release?", "The Falcon release ships on 3 March 2026 [2]."),
    ("Who leads team Heron?", "Team Heron is led by Mira Castell [1]."),
    ("How many badges does a visitor get?", "A visitor gets exactly 2 badges [2]."),
    ("What is the hotline of team Badger?", "The Badger hotline is extension 5531 [1]."),
]


@pytest.fixture
def tiny(tmp_path):
    """Six short chats in three 'documents', so the split holds one of them out (the fine-tuning
    modules' data, CPU and GPU)."""
    path = tmp_path / "tiny.jsonl"
    with open(path, "w") as f:
        for i, (q, a) in enumerate(FACTS):
            f.write(json.dumps({"messages": [{"role": "system", "content": "Answer briefly and cite."},
                                             {"role": "user", "content": q}, {"role": "assistant", "content": a}],
                                "document": f"doc{i % 3}"}) + "\n")
    return path


@pytest.fixture(scope="session")
def embedder():
    """The embedder the workspace uses by default (settings.embedder and embed_backend)."""
    from archivist.models import embedder_for
    from archivist.settings import Settings

    return embedder_for(Settings.from_env())


def one_page_of(pdf: Path, page: int, folder: Path) -> Path:
    """Page `page` (1-based) of a real PDF saved alone as FOLDER/<name>-p<page>.pdf: a test reads just it."""
    import pypdfium2 as pdfium

    out = folder / f"{pdf.stem}-p{page}.pdf"
    source, one = pdfium.PdfDocument(str(pdf)), pdfium.PdfDocument.new()
    one.import_pages(source, [page - 1])
    one.save(str(out))
    return out


def _sample_documents() -> list[Path]:
    """What `archivist ingest samples/` reads: samples/.archivistignore leaves out its README and questions."""
    from archivist.ingest.folders import expand

    return sorted(path for path, _ in expand([SAMPLES])[0])


SAMPLE_DOCS = _sample_documents()


@pytest.fixture(scope="session")
def sample_home(tmp_path_factory, embedder):
    """A workspace with the sample documents ingested once per session. Do not modify it."""
    from archivist.ingest.pipeline import ingest_paths
    from archivist.settings import Settings
    from archivist.workspace import open_workspace

    def build(home: Path) -> None:
        with open_workspace(Settings.from_env(home=home)) as w:
            results = ingest_paths(w, SAMPLE_DOCS, collection="default", embedder=embedder, progress=False)
        assert all(r.status == "added" for r in results), [(r.name, r.reason) for r in results]

    home = tmp_path_factory.mktemp("samples-ws")
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        build(home)
        return home
    # Under pytest-xdist the first worker to need it builds it (the scan's OCR included) in the run's
    # shared temporary folder; every worker then uses its own copy.
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent / "samples-ws-shared"
    with FileLock(str(shared) + ".lock"):
        if not (shared / ".built").exists():
            shutil.rmtree(shared, ignore_errors=True)
            build(shared)
            (shared / ".built").touch()
    shutil.copytree(shared, home, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".built"))
    return home


@pytest.fixture
def sample_ws(sample_home):
    """The shared sample workspace, opened for this test (read-only use)."""
    from archivist.retrieval.repair import open_checked
    from archivist.settings import Settings

    w = open_checked(Settings.from_env(home=sample_home))
    yield w
    w.close()


@pytest.fixture(scope="session")
def llm():
    from archivist.retrieval.llm import llm_for
    from archivist.settings import Settings

    return llm_for(Settings.from_env())


def ingest_texts(ws, embedder, folder: Path, docs: dict[str, dict[str, str]], user: str | None = None) -> Path:
    """Write each document of `docs` ({collection: {file name: text}}) under `folder` and ingest it
    into its collection (as `user`), one ingest per collection in the given order; returns `folder`."""
    from archivist.ingest.pipeline import ingest_paths

    folder.mkdir(parents=True, exist_ok=True)
    for collection, files in docs.items():
        for name, text in files.items():
            (folder / name).write_text(text)
        ingest_paths(ws, [folder / name for name in files], collection=collection, user=user, embedder=embedder,
                     progress=False)
    return folder


def members_with_keys(ws, grants: dict[str, tuple[str, str]]) -> dict[str, str]:
    """Members named in `grants` ({"alice": ("hr", "read"), ...}), each granted that on that
    collection; returns an API key per member and for the local admin ("admin")."""
    from archivist import access
    from archivist.keys import create_key

    for name, (collection, right) in grants.items():
        access.add_user(ws, name, "member")
        access.grant(ws, name, collection, right)
    return {u: create_key(ws, u) for u in ("admin", *grants)}


def eve_reads_team_and_hr(settings, folder: Path) -> str:
    """The workspace of `settings` with handbook.md ingested into collection 'team' and leave.md into 'hr'
    (written under `folder`/docs), both read by member eve: two scopes an API request must keep apart
    (test_hostile9, test_scopemend). Returns eve's API key."""
    from archivist import access
    from archivist.ingest.pipeline import ingest_paths
    from archivist.keys import create_key
    from archivist.workspace import open_workspace

    docs = folder / "docs"
    docs.mkdir()
    (docs / "handbook.md").write_text("# Handbook\n\nThe office opens at eight in the morning on weekdays.\n")
    (docs / "leave.md").write_text("# Leave\n\nThe office grants twenty-five days of annual leave.\n")
    with open_workspace(settings) as ws:
        for name, collection in (("handbook.md", "team"), ("leave.md", "hr")):
            access.create_collection(ws, collection)
            assert [r.status for r in ingest_paths(ws, [docs / name], collection=collection, progress=False)] == ["added"]
        access.add_user(ws, "eve", "member")
        access.grant(ws, "eve", "team", "read")
        access.grant(ws, "eve", "hr", "read")
        return create_key(ws, "eve")


def adapted_embedder(settings, seed: int):
    """The shipped embedder with its last layer moved: weights that differ from the base's, as a
    fine-tune's do, so a test can tell which one answered. `seed` makes each one its own."""
    import torch
    from sentence_transformers import SentenceTransformer

    from archivist.catalog import resolve_embedder

    model = SentenceTransformer(resolve_embedder(settings.embedder), device="cpu")
    with torch.no_grad():
        for p in model[0].auto_model.encoder.layer[-1].parameters():
            p.add_(0.05 * torch.randn_like(p, generator=torch.Generator().manual_seed(seed)))
    return model


def bob_reads_public_not_secret(ws, folder: Path) -> None:
    """A canteen page ingested into collection 'public', which member bob reads, and a merger page into
    'secret', which he may not: what an adapted embedder learns that a member must not be served."""
    from archivist import access
    from archivist.ingest.pipeline import ingest_paths

    (folder / "pub.md").write_text("# Canteen\n\nThe canteen serves 240 lunches a day between noon and two.\n")
    (folder / "sec.md").write_text("# Merger\n\nThe merger with Acme closes on June 3 for 40 million euros.\n")
    access.add_user(ws, "bob")
    ingest_paths(ws, [folder / "pub.md"], collection="public", progress=False)
    ingest_paths(ws, [folder / "sec.md"], collection="secret", progress=False)
    access.grant(ws, "bob", "public", "read")


def adapter_trained_on(ws, folder: Path, name: str, collections: list[str], secret_document: str | None = None,
                       **lineage) -> None:
    """Register an adapter `name` (a saved LoRA config in `folder`, no weights) whose lineage says it
    learned from `collections` (and, with `secret_document`, from that document of the last of them):
    what the access rules read of an adapter (adapters.trained_on, may_use, conversations' withholding)."""
    from archivist import adapters

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    documents = [{"collection": collections[-1], "document": secret_document}] if secret_document else []
    adapters.register(ws, name, folder, ws.settings.llm, {"better": False, "reason": "t"},
                      {"dataset": {"name": "d"}, "collections": collections, "documents": documents, **lineage},
                      activate=False)


def board_tuned(ws, embedder, tmp_path: Path) -> tuple[tuple[int, str], tuple[int, str]]:
    """`team` (handbook.md) and `secret` (board.md, a merger's codename) ingested, mallory reading both,
    and `board-tuned`, an adapter trained on `secret`: returns the (chunk id, text) of each document's
    chunk, team's first."""
    ingest_texts(ws, embedder, tmp_path / "docs", {
        "team": {"handbook.md": "# Handbook\n\nThe office opens at eight in the morning on weekdays.\n"},
        "secret": {"board.md": "# Board\n\nCodename Bluefinch: the merger with Zephyr closes on March 3.\n"}})
    mallory_reads(ws, create=False)
    adapter_trained_on(ws, tmp_path / "saved-adapter", "board-tuned", ["secret"], "board.md")
    return tuple(tuple(ws.db.execute("SELECT c.id, c.text FROM chunks c JOIN documents d ON d.id = c.document_id "
                                     "WHERE d.path = ?", (name,)).fetchone()) for name in ("handbook.md", "board.md"))


def mallory_reads(ws, collections=("team", "secret"), create: bool = True) -> None:
    """Member mallory, granted read on each of `collections` (created first, unless `create` is False)."""
    from archivist import access

    access.add_user(ws, "mallory", "member")
    for c in collections:
        if create:
            access.create_collection(ws, c)
        access.grant(ws, "mallory", c, "read")


def baseline_or_skip(rev: str, what: str) -> None:
    """Skip a test that measures against the code at git revision `rev` (`what`: whose baseline) where
    this checkout does not hold that commit: an export, or a shallow clone."""
    if subprocess.run(["git", "-C", str(Path(__file__).parent), "cat-file", "-e", f"{rev}^{{commit}}"],
                      capture_output=True).returncode:
        pytest.skip(f"{what} baseline {rev} is not in this checkout (an export, or a shallow clone)")


def sample_questions(answerable: bool = True) -> list[dict]:
    import json

    rows = [json.loads(line) for line in (SAMPLES / "QUESTIONS.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if (r["answer"] is not None) == answerable]


def stopped(proc, timeout: float = 180.0) -> None:
    """Wait until `proc` (a subprocess.Popen) has stopped itself with SIGSTOP at the point a crash test
    kills it; fail with its output if it exits first."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T":
            return
        time.sleep(0.05)
    raise AssertionError(f"process {proc.pid} never reached the point where it stops itself")


def job_ended(ws, job_id: str, user: str, timeout: float = 180.0):
    """Job `job_id` (a jobs.Job, as `user` sees it) once it is no longer live; fail naming its state
    when it still is after `timeout` seconds."""
    import time

    from archivist import jobs

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = jobs.get(ws, job_id, user)
        if not job.live:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job.state} after {timeout:.0f} s")


def chromium_or_skip():
    """Debian's chromium and playwright's `sync_playwright` for a browser test; skips without them."""
    chromium = "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip(f"{chromium} is missing: install Debian's chromium (make system-deps)")
    return chromium, pytest.importorskip("playwright.sync_api").sync_playwright


@contextmanager
def ui_served(home: Path, folder: Path, *, log: Path | None = None, args: tuple[str, ...] = (), wait: float = 120,
              unset: tuple[str, ...] = (), **env: str):
    """`archivist ui` on workspace `home`, run in `folder` with `args` added to its command line (its log:
    `log`, else folder/ui.log) and `env` added to the test's, less `unset` (no acting user; no model warm-up
    unless `env` asks for it), yielding its URL once /_stcore/health answers within `wait` seconds; https
    when `env` names a certificate (its own, self-signed: not verified). Stopped on the way out."""
    import socket
    import ssl
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "ARCHIVIST_HOME": str(home), "HF_HUB_OFFLINE": "1", "ARCHIVIST_UI_WARMUP": "0", **env}
    for var in ("ARCHIVIST_USER", *unset):
        env.pop(var, None)
    https = "STREAMLIT_SERVER_SSL_CERT_FILE" in env
    url = f"{'https' if https else 'http'}://127.0.0.1:{port}"
    log = log or folder / "ui.log"
    out = open(log, "w")
    proc = subprocess.Popen([sys.executable, "-m", "archivist.cli", "ui", "--port", str(port), *args],
                            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=str(folder))
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                health = urllib.request.urlopen(f"{url}/_stcore/health", timeout=2,
                                                context=ssl._create_unverified_context() if https else None)
                if health.read().strip() == b"ok":
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        out.close()


def serve_documents(root: Path, documents: dict[str, str], collection: str, members: dict[str, str], **app_options):
    """A real `archivist serve` app in a thread over a new workspace under `root`: `documents` (file
    name: text) ingested into `collection`, each of `members` (name: level) a member granted it, and an
    API key for each of them and the admin. Returns (server, keys by name, settings); stop the server."""
    from archivist import access
    from archivist.api.app import create_app
    from archivist.api.serve import serve_in_thread
    from archivist.ingest.pipeline import ingest_paths
    from archivist.keys import create_key
    from archivist.retrieval.repair import open_checked
    from archivist.settings import Settings

    for name, text in documents.items():
        (root / name).write_text(text)
    settings = Settings.from_env(home=root / "ws")
    with open_checked(settings) as ws:
        results = ingest_paths(ws, [root / name for name in documents], collection=collection, progress=False)
        assert [r.status for r in results] == ["added"] * len(documents), results
        for name, level in members.items():
            access.add_user(ws, name, "member")
            access.grant(ws, name, collection, level)
        keys = {name: create_key(ws, name) for name in ("admin", *members)}
    return serve_in_thread(create_app(settings, **app_options)), keys, settings

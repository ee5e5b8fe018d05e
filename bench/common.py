"""What every benchmark shares: sizes, corpora, fresh workspaces, timing, tables, results files.

A benchmark measures archivist and its baseline in the same run, alternating them (A B A B ...)
so that a machine busy with other work slows both alike, and reports the median of the repeats
and the ratio. Each benchmark writes its table to bench/data/results/<name>.md (and .json);
run_all.py gathers them into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse

import json
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
DATA = BENCH / "data"
RESULTS = DATA / "results"
EVALSETS = BENCH / "evalsets"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(BENCH))
# As the archivist CLI does (archivist.models.hub_offline_by_default), before torch is imported;
# both archivist and its baseline run in the same process, so both get it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Sizes: "small" fits `make bench` (all benchmarks) in 15 minutes on a 2-core CPU; "full" is the real one.
# Both search the same 100,000 chunks with 200 questions: with 60, as before, p95 rested on the
# three slowest timings of each repeat.
SIZES = {
    "small": dict(repeats=3, ingest_repeats=5, ingest_foldoc=150, ingest_debref=30, rss_scale=4, rss_foldoc=100, embedder_chunks=96,
                  query_chunks=100_000, query_queries=200, gen_tokens=48, gen_repeats=3,
                  quality_foldoc=120, quality_foldoc_questions=120, quality_debref_questions=100,
                  llamaindex=True, backends=("torch", "onnx-int8")),
    "full": dict(repeats=3, ingest_foldoc=2000, ingest_debref=None, rss_scale=4, rss_foldoc=600, embedder_chunks=512,
                 query_chunks=100_000, query_queries=200, gen_tokens=128, gen_repeats=5,
                 quality_foldoc=2000, quality_foldoc_questions=300, quality_debref_questions=100,
                 llamaindex=True, backends=("torch", "int8", "onnx", "onnx-int8")),
}


def _default_backend() -> str:
    from archivist.settings import Settings

    return Settings.__dataclass_fields__["embed_backend"].default


DEFAULT_BACKEND = _default_backend()  # the embedder backend archivist uses on a CPU unless told otherwise


def size_parser(doc: str) -> argparse.ArgumentParser:
    """A benchmark's command line: its description (the first line of `doc`, its docstring) and --size."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--size", default="small", choices=sorted(SIZES), help="corpus and repeat sizes (SIZES in bench/common.py)")
    return ap


def size(name: str) -> dict:
    if name not in SIZES:
        raise SystemExit(f"--size must be one of {', '.join(SIZES)}, got {name!r}")
    return SIZES[name]


def machine() -> dict:
    """Where and when: date, CPU, cores, memory, load, library versions."""
    import psutil

    from archivist.catalog import installed_versions

    cpu = platform.processor() or ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = installed_versions(("torch", "transformers", "sentence-transformers", "faiss-cpu", "onnxruntime", "llama-index-core"))
    return {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "cpu": cpu, "cores": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1), "load_avg": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(), "versions": versions}


def corpus(name: str, foldoc: int | None, debian_reference: bool | int = True, replicas: int = 1) -> Path:
    """A corpus folder under bench/data, made once per parameters (bench/corpus.py)."""
    from corpus import prepare

    folder = DATA / name
    manifest = DATA / f"{name}.manifest.json"
    want = {"foldoc": foldoc, "debian_reference": debian_reference, "replicas": replicas}
    if manifest.exists() and folder.exists():
        have = json.loads(manifest.read_text())
        if have.get("params") == want:
            return folder
    m = prepare(folder, foldoc, bool(debian_reference), replicas,
                debian_limit=debian_reference if isinstance(debian_reference, int) and debian_reference is not True else None)
    m["params"] = want
    manifest.write_text(json.dumps(m, indent=2))
    return folder


def corpus_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def fresh_home(name: str) -> Path:
    """An empty workspace folder under bench/data/ws/."""
    home = DATA / "ws" / name
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    return home


def open_ws(home: Path, **overrides):
    from archivist.retrieval.repair import open_checked
    from archivist.settings import Settings

    return open_checked(Settings.from_env(home=home, **overrides))


def timed(fn: Callable[[], object]) -> float:
    """Seconds `fn()` takes (its result is dropped)."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def percentile(xs: Sequence[float], p: float) -> float:
    s = sorted(xs)
    if not s:
        return float("nan")
    k = (len(s) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def alternate(runs: dict[str, Callable[[int], float]], repeats: int) -> dict[str, list[float]]:
    """Run each named measurement `repeats` times, interleaved (a b a b ...); returns the values."""
    out: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(repeats):
        for name, fn in runs.items():
            out[name].append(fn(r))
    return out


def fmt(v, digits: int = 2) -> str:
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if 0 < abs(v) < 0.1:
            return f"{v:.3g}"
        return f"{v:.{digits}f}"
    return str(v)


def md_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def save_result(name: str, data) -> Path:
    """Write a benchmark's raw result to bench/data/results/<name>.json (indent 1, anything not JSON
    as its str); returns the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=1, default=str))
    return path


def report(name: str, title: str, body: str, data: dict) -> None:
    """Print a benchmark's section and save it (markdown + JSON) for run_all.py."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = f"### {title}\n\n{body.strip()}\n"
    (RESULTS / f"{name}.md").write_text(text)
    import psutil

    seconds = time.time() - psutil.Process().create_time()  # the benchmark's whole wall time, model loads included
    (RESULTS / f"{name}.json").write_text(json.dumps({"machine": machine(), "seconds": seconds, **data}, indent=2, default=str))
    print("\n" + text, flush=True)


def module_at(rev: str, path: str, name: str):
    """The repository's file `path` as it was at git revision `rev`, imported beside the current one: a
    benchmark's baseline is the code before a change, measured in the same run. The files of its folder
    come as they were at `rev` too, as a package named `name` (the module is `name`.<its stem>), so its
    relative imports (`from .readers_markup import ...`) find the modules of its own revision: a helper
    module since split up or renamed (ingest/readers_markup.py after cac38c3) no longer stops it loading."""
    import importlib
    import importlib.util
    import io
    import subprocess
    import tarfile
    import tempfile

    folder = Path(path).parent.as_posix()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, folder], capture_output=True, check=True).stdout
    root = Path(tempfile.mkdtemp())
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    init = root / folder / "__init__.py"
    init.touch()  # a folder of scripts (bench/) has none
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(root / folder)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package  # its modules' relative imports look their package up here
    spec.loader.exec_module(package)
    return importlib.import_module(f"{name}.{Path(path).stem}")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def by_document(a: Sequence[float], b: Sequence[float], pages: Sequence[Sequence[str] | str], **bootstrap) -> dict:
    """`evaluation.paired_difference` of `a` over `b` (one value per question each), drawing whole
    documents instead of questions (a cluster bootstrap): `pages` holds each question's gold pages,
    and questions joined by a gold page, directly or through others ([x], [x, y] and [y, z]), are one
    document, drawn with all its questions. Questions about one page rise and fall together, so
    drawing them one by one (as findings 20-46 of bench/RESULTS.md did) narrows the interval; so
    would keying a document on a question's exact set of pages, as [x] and [x, y] would then be drawn
    apart (git's public set: 101 such sets, 68 documents). A question without gold
    pages (unanswerable) is a document of its own; pooling corpora, prefix each page with its corpus
    or a page name two corpora share joins their questions. The result also has "groups", how many
    documents were drawn. Raises ValueError as `paired_difference` does."""
    from archivist.retrieval.evaluation import paired_difference

    if len(pages) != len(a):
        raise ValueError(f"{len(pages)} questions' gold pages for {len(a)} paired values")
    listed = [[p] if isinstance(p, str) else sorted(set(p or ())) for p in pages]
    parent: dict[str, str] = {}  # union-find over pages: a page's representative

    def root(page: str) -> str:
        while parent.setdefault(page, page) != page:
            page = parent[page]
        return page

    for ps in listed:
        for p in ps[1:]:
            parent[root(p)] = root(ps[0])
    groups = [(root(ps[0]),) if ps else ("no gold page", i) for i, ps in enumerate(listed)]
    return paired_difference(a, b, groups=groups, **bootstrap)


def names_gold(row: dict) -> bool:
    """Whether an answers row (`evaluate_answers`' per_question) names its gold as key accuracy reads
    it: what the answer shows first, its key span when it has one (retrieval.evaluation.key_right,
    stored as "key_right"); rows stored before that, by their whole text ("contains_gold")."""
    return bool(row.get("key_right", row.get("contains_gold")))

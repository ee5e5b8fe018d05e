"""Load on the HTTP API: many clients at once, every answer checked, latency percentiles reported.

    .venv/bin/python bench/api_load.py                      # temp workspace with samples/, in-process server
    .venv/bin/python bench/api_load.py --url http://127.0.0.1:8000 --key ak-...   # a running `archivist serve`

The same requests run twice: first one at a time (the baseline, and the reference answers), then
all at once. Every concurrent response must equal its sequential one (search: the same chunks in
the same order; embeddings: the same vectors; chat: the same text, greedy decoding), so a race
anywhere in the server shows up as a wrong answer, not only as an error. Writes
bench/RESULTS-api.md with p50/p95 per kind and the concurrent/sequential ratios.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"


@dataclass
class Call:
    kind: str  # search | embeddings | chat
    path: str
    body: dict


@dataclass
class Result:
    kind: str
    status: int
    seconds: float
    value: object = None  # what is compared between runs
    error: str | None = None


def _value(kind: str, payload: dict):
    if kind == "search":
        return [h["chunk_id"] for h in payload["data"]]
    if kind == "embeddings":
        return [d["embedding"] for d in payload["data"]]
    return payload["choices"][0]["message"]["content"]


def call(client, key: str, c: Call) -> Result:
    t0 = time.perf_counter()
    try:
        r = client.post(c.path, json=c.body, headers={"Authorization": f"Bearer {key}"})
        took = time.perf_counter() - t0
        if r.status_code != 200:
            return Result(c.kind, r.status_code, took, error=r.text[:300])
        return Result(c.kind, 200, took, _value(c.kind, r.json()))
    except Exception as e:  # a refused or dropped connection is a failed request, not a crash of the bench
        return Result(c.kind, 0, time.perf_counter() - t0, error=f"{type(e).__name__}: {e}")


def run(base_url: str, key: str, calls: list[Call], concurrency: int, timeout: float = 600.0) -> tuple[list[Result], float]:
    """Send `calls` with `concurrency` clients at once; returns results in call order and the wall time."""
    import httpx

    limits = httpx.Limits(max_connections=max(concurrency, 1), max_keepalive_connections=max(concurrency, 1))
    with httpx.Client(base_url=base_url, timeout=timeout, limits=limits) as client:
        t0 = time.perf_counter()
        if concurrency <= 1:
            results = [call(client, key, c) for c in calls]
        else:
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                results = list(pool.map(lambda c: call(client, key, c), calls))
        return results, time.perf_counter() - t0


def compare(reference: list[Result], results: list[Result]) -> list[str]:
    """Problems: failed requests, and answers that differ from the sequential reference."""
    import numpy as np

    problems = []
    for i, (ref, got) in enumerate(zip(reference, results)):
        if got.error or got.status != 200:
            problems.append(f"#{i} {got.kind}: HTTP {got.status} {got.error}")
        elif ref.error:
            problems.append(f"#{i} {got.kind}: the sequential reference failed: {ref.error}")
        elif got.kind == "embeddings":
            if not np.allclose(np.array(ref.value, dtype=float), np.array(got.value, dtype=float), atol=1e-5):
                problems.append(f"#{i} embeddings differ from the sequential run")
        elif ref.value != got.value:
            problems.append(f"#{i} {got.kind}: {got.value!r:.120} != sequential {ref.value!r:.120}")
    return problems


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summary(results: list[Result]) -> dict:
    out = {}
    for kind in sorted({r.kind for r in results}) + ["all"]:
        lat = [r.seconds for r in results if kind in ("all", r.kind)]
        out[kind] = {"n": len(lat), "errors": sum(1 for r in results if kind in ("all", r.kind) and r.status != 200),
                     "p50_ms": round(1000 * percentile(lat, 50), 1), "p95_ms": round(1000 * percentile(lat, 95), 1),
                     "max_ms": round(1000 * max(lat), 1) if lat else None}
    return out


def workload(questions: list[str], n: int, chats: int, embedder: str, llm_model: str = "archivist") -> list[Call]:
    """`n` fast calls (search and embeddings alternating) and `chats` short chat completions."""
    calls = []
    for i in range(n):
        q = questions[i % len(questions)]
        if i % 2 == 0:
            calls.append(Call("search", "/v1/search", {"query": q, "k": 5}))
        else:
            calls.append(Call("embeddings", "/v1/embeddings", {"model": embedder, "input": [q, q.upper()]}))
    for i in range(chats):
        calls.append(Call("chat", "/v1/chat/completions", {
            "model": llm_model, "max_tokens": 8, "answer_mode": "generate",
            "messages": [{"role": "user", "content": questions[i % len(questions)]}]}))
    return calls


def measure(base_url: str, key: str, calls: list[Call]) -> dict:
    """The sequential baseline, then the concurrent run, compared and summarized."""
    seq, seq_wall = run(base_url, key, calls, concurrency=1)
    conc, conc_wall = run(base_url, key, calls, concurrency=len(calls))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return {"load": load, "sequential": summary(seq), "concurrent": summary(conc), "sequential_wall_s": round(seq_wall, 3),
            "concurrent_wall_s": round(conc_wall, 3), "problems": compare(seq, conc), "requests": len(calls)}


def local_server(tmp: Path, max_waiting: int = 16):
    """A fresh workspace holding samples/ behind an in-process server; returns (server, key)."""
    from archivist.api.app import create_app
    from archivist.api.serve import serve_in_thread
    from archivist.ingest.pipeline import ingest_paths
    from archivist.keys import create_key
    from archivist.retrieval.repair import open_checked
    from archivist.settings import Settings

    settings = Settings.from_env(home=tmp / "ws")
    with open_checked(settings) as ws:
        ingest_paths(ws, [p for p in sorted(SAMPLES.iterdir()) if p.suffix not in (".jsonl",) and p.name != "README.md"],
                     collection="samples", progress=False)
        key = create_key(ws, "admin")
    return serve_in_thread(create_app(settings, max_waiting=max_waiting, warm=True)), key


def write_results(path: Path, report: dict, where: str) -> None:
    lines = ["# HTTP API under load", "",
             f"`bench/api_load.py`, {where}. {report['requests']} requests, first one at a time (baseline), "
             "then all at once; every concurrent answer is compared with its sequential one.", "",
             "| kind | n | errors | sequential p50 ms | sequential p95 ms | concurrent p50 ms | concurrent p95 ms | concurrent max ms |",
             "|---|---|---|---|---|---|---|---|"]
    for kind, c in report["concurrent"].items():
        s = report["sequential"][kind]
        lines.append(f"| {kind} | {c['n']} | {c['errors']} | {s['p50_ms']} | {s['p95_ms']} | {c['p50_ms']} | {c['p95_ms']} | {c['max_ms']} |")
    ratio = report["sequential_wall_s"] / report["concurrent_wall_s"] if report["concurrent_wall_s"] else float("nan")
    lines += ["", f"Wall time: sequential {report['sequential_wall_s']} s, concurrent {report['concurrent_wall_s']} s "
              f"(throughput ratio concurrent/sequential {ratio:.2f}x).",
              f"Answers differing from the sequential run or failed: {len(report['problems'])}.", "",
              "Chat requests ask for 8 tokens (greedy); one generation runs at a time, the rest wait in the bounded "
              "queue, so chat latency under load is roughly its position in the queue times one generation. "
              "Search and embeddings do not queue behind generation, but share the CPU with it.",
              f"Load average during the run (other work on the machine included): {report.get('load', '?')}.", ""]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", help="a running server (default: start one on a temp workspace with samples/)")
    p.add_argument("--key", help="API key for --url")
    p.add_argument("-n", type=int, default=50, help="search + embeddings requests (default 50)")
    p.add_argument("--chats", type=int, default=4, help="chat completions in the same burst (default 4)")
    p.add_argument("--out", default=str(REPO / "bench" / "RESULTS-api.md"))
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    questions = [json.loads(line)["question"] for line in (SAMPLES / "QUESTIONS.jsonl").read_text().splitlines() if line.strip()]
    from archivist.settings import Settings

    settings = Settings.from_env()
    if args.url:
        if not args.key:
            p.error("--url needs --key")
        report = measure(args.url, args.key, workload(questions, args.n, args.chats, settings.embedder))
        where = f"against {args.url}"
    else:
        with tempfile.TemporaryDirectory() as tmp:
            server, key = local_server(Path(tmp))
            try:
                report = measure(server.url, key, workload(questions, args.n, args.chats, settings.embedder))
            finally:
                server.stop()
        import platform

        where = f"in-process server on {platform.machine()} with {os.cpu_count()} cores, {settings.llm} + {settings.embedder}"
    print(json.dumps(report, indent=2))
    write_results(Path(args.out), report, where)
    print(f"wrote {args.out}", file=sys.stderr)
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())

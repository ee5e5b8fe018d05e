"""Concurrent chat through `archivist serve`: the in-process model against a vLLM server.

    .venv/bin/python bench/concurrency.py                        # 16 concurrent, both backends
    .venv/bin/python bench/concurrency.py --concurrency 16 64    # and 64
    .venv/bin/python bench/concurrency.py --backends vllm        # one backend only

One run, same machine, same questions (samples/QUESTIONS.jsonl, cycled), same model (the
converted default chat model), same settings. For each backend it starts `archivist serve` as a
subprocess on a temporary workspace holding samples/ — for vLLM with ARCHIVIST_LLM_URL pointing
at a vLLM server it starts first from .venv-vllm (`make vllm-env`), in float32 like the in-process
model — then sends each wave of N chat requests at once and measures answers per minute, output
tokens per second (the completions' `usage`), and p50/p95 latency of a whole answer. The backends
run one after the other, never side by side: they share the CPU. Answers of the two backends are
compared (float32 greedy decoding: they should be the same text).

Prints a JSON report; with --write, adds a section to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
VLLM_PYTHON = Path(os.environ.get("ARCHIVIST_VLLM_PYTHON") or REPO / ".venv-vllm" / "bin" / "python")
START_TIMEOUT_S = 900


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def questions() -> list[str]:
    rows = [json.loads(line) for line in (SAMPLES / "QUESTIONS.jsonl").read_text().splitlines() if line.strip()]
    return [r["question"] for r in rows if r.get("answer") is not None]


def workspace(root: Path) -> tuple[Path, str]:
    """A workspace with samples/ ingested, and an admin API key for it."""
    from archivist.ingest.pipeline import ingest_paths
    from archivist.keys import create_key
    from archivist.retrieval.repair import open_checked
    from archivist.settings import Settings

    home = root / "ws"
    with open_checked(Settings.from_env(home=home)) as ws:
        docs = [p for p in sorted(SAMPLES.iterdir()) if p.suffix != ".jsonl" and p.name != "README.md"]
        ingest_paths(ws, docs, collection="default", progress=False)
        key = create_key(ws, "admin")
    return home, key


def wait_until_up(url: str, proc: subprocess.Popen, log: Path, what: str) -> None:
    import httpx

    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} while starting:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=5).status_code < 500:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.terminate()
            raise RuntimeError(f"{what} did not start within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
        time.sleep(2)


VLLM_VARIANTS = {  # backend -> the server's environment beside the defaults
    "vllm": {},
    "vllm-eager": {"ARCHIVIST_VLLM_LORA_COMPILE": "0"},  # archivist's ops, compilation off as vLLM has it with LoRA
    "vllm-stock": {"VLLM_PLUGINS": "none"},  # vLLM's own CPU LoRA ops, no plugin
}


def start_vllm(model: str, root: Path, memory: float, dtype: str = "float32", lora: bool = True,
               backend: str = "vllm") -> tuple[str, subprocess.Popen]:
    """The server `make vllm-serve` starts (float32, LoRA enabled), on a free port, in the variant
    `backend` names (VLLM_VARIANTS)."""
    port = free_port()
    log = root / f"{backend}.log"
    cmd = [str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--served-model-name",
           "archivist", "--host", "127.0.0.1", "--port", str(port), "--max-model-len", "2048", "--dtype", dtype,
           "--gpu-memory-utilization", str(memory)] + (["--enable-lora", "--max-lora-rank", "16"] if lora else [])
    proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            env={**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
                                 **VLLM_VARIANTS[backend]})
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url + "/v1/models", proc, log, "vLLM")
    return url, proc


def start_archivist(home: Path, root: Path, llm_url: str, max_waiting: int) -> tuple[str, subprocess.Popen]:
    """`archivist serve` as a user runs it, in its own process."""
    port = free_port()
    log = root / f"archivist-{'vllm' if llm_url else 'local'}.log"
    # one key sends every wave: its user's share of the queue (by default half of it) is the whole queue here
    env = {**os.environ, "ARCHIVIST_HOME": str(home), "ARCHIVIST_LLM_URL": llm_url,
           "ARCHIVIST_MAX_QUEUED_PER_USER": str(max_waiting)}
    proc = subprocess.Popen([sys.executable, "-m", "archivist.cli", "serve", "--port", str(port),
                             "--max-waiting", str(max_waiting)], stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url + "/health", proc, log, "archivist serve")
    return url, proc


def ask_one(client, key: str, question: str) -> dict:
    t0 = time.perf_counter()
    r = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                    json={"model": "archivist", "messages": [{"role": "user", "content": question}]})
    took = time.perf_counter() - t0
    if r.status_code != 200:
        return {"seconds": took, "error": f"HTTP {r.status_code}: {r.text[:200]}"}
    body = r.json()
    return {"seconds": took, "text": body["choices"][0]["message"]["content"], "status": body.get("status"),
            "completion_tokens": body["usage"]["completion_tokens"]}


def wave(url: str, key: str, qs: list[str]) -> dict:
    """All of `qs` sent at once; the wave's figures."""
    import httpx

    limits = httpx.Limits(max_connections=len(qs), max_keepalive_connections=len(qs))
    with httpx.Client(base_url=url, timeout=3600, limits=limits) as client:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=len(qs)) as pool:
            results = list(pool.map(lambda q: ask_one(client, key, q), qs))
        wall = time.perf_counter() - t0
    ok = [r for r in results if "error" not in r]
    lat = sorted(r["seconds"] for r in ok)
    tokens = sum(r["completion_tokens"] for r in ok)
    return {"n": len(qs), "errors": [r["error"] for r in results if "error" in r], "wall_s": round(wall, 1),
            "answers_per_min": round(len(ok) / wall * 60, 2), "output_tokens_per_s": round(tokens / wall, 2),
            "completion_tokens": tokens, "p50_s": round(percentile(lat, 50), 1), "p95_s": round(percentile(lat, 95), 1),
            "answers": [r.get("text") for r in results]}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    k = max(0, math.ceil(q / 100 * len(values)) - 1)
    return values[k]


def run(levels: list[int], backends: list[str], memory: float, skip_local_above: int | None,
        dtype: str = "float32", lora: bool = True) -> dict:
    from archivist.catalog import resolve_llm
    from archivist.settings import Settings

    qs_all = questions()
    settings = Settings.from_env()
    model = str(resolve_llm(settings.llm, settings.cache))
    report: dict = {"model": settings.llm, "vllm_dtype": dtype, "vllm_lora": lora, "max_new_tokens": settings.max_new_tokens, "cpus": os.cpu_count(),
                    "load_before": os.getloadavg(), "levels": levels, "backends": {}}
    with tempfile.TemporaryDirectory(prefix="archivist-concurrency-") as tmp:
        root = Path(tmp)
        home, key = workspace(root)
        for backend in backends:
            procs = []
            try:
                llm_url = ""
                if backend.startswith("vllm"):
                    llm_url, p = start_vllm(model, root, memory, dtype, lora, backend)
                    procs.append(p)
                url, p = start_archivist(home, root, llm_url, max_waiting=max(levels))
                procs.append(p)
                ask_one(__import__("httpx").Client(base_url=url, timeout=3600), key, qs_all[0])  # warm: first-use costs
                out = {}
                for n in levels:
                    if backend == "local" and skip_local_above and n > skip_local_above:
                        out[str(n)] = {"n": n, "skipped": f"not run: above --skip-local-above {skip_local_above}"}
                        continue
                    qs = [qs_all[i % len(qs_all)] for i in range(n)]
                    out[str(n)] = wave(url, key, qs)
                    print(f"{backend} x{n}: " + json.dumps({k: v for k, v in out[str(n)].items() if k != "answers"}),
                          file=sys.stderr)
                report["backends"][backend] = out
            finally:
                for p in reversed(procs):
                    p.terminate()
                    try:
                        p.wait(60)
                    except subprocess.TimeoutExpired:
                        p.kill()
    report["load_after"] = os.getloadavg()
    local = report["backends"].get("local", {})
    for backend in VLLM_VARIANTS:
        for n in map(str, levels):
            a, b = local.get(n, {}), report["backends"].get(backend, {}).get(n, {})
            if "answers" in a and "answers" in b:
                report.setdefault("ratios", {}).setdefault(backend, {})[n] = _ratio(a, b)
    return report


def _ratio(a: dict, b: dict) -> dict:
    """Wave `b` against the in-process wave `a`."""
    same = sum(x == y for x, y in zip(a["answers"], b["answers"]))
    return {
        "answers_per_min": round(b["answers_per_min"] / a["answers_per_min"], 2),
        "output_tokens_per_s": round(b["output_tokens_per_s"] / a["output_tokens_per_s"], 2),
        "p95": round(b["p95_s"] / a["p95_s"], 2), "identical_answers": f"{same}/{len(a['answers'])}"}


def write_results(report: dict, path: Path) -> None:
    lines = ["", "## Concurrent chat: in-process model vs a vLLM server (bench/concurrency.py)", "",
             f"`archivist serve` on samples/, {report['model']} (in-process float32; vLLM {report.get('vllm_dtype', 'float32')}"
             f"{'' if report.get('vllm_lora', True) else ' without LoRA'}), up to {report['max_new_tokens']} "
             f"new tokens per answer, {report['cpus']} CPU cores shared with other work (load average "
             f"{report['load_before'][0]:.1f} before, {report['load_after'][0]:.1f} after). Each wave: N chat requests "
             "sent at once; latency is a whole (non-streamed) answer. One run, backends one after the other.", "",
             "| backend | N | answers/min | output tokens/s | p50 s | p95 s | wall s | errors |",
             "|---|---|---|---|---|---|---|---|"]
    for backend, levels in report["backends"].items():
        for n, r in levels.items():
            if "skipped" in r:
                lines.append(f"| {backend} | {n} | {r['skipped']} | | | | | |")
                continue
            lines.append(f"| {backend} | {n} | {r['answers_per_min']} | {r['output_tokens_per_s']} | {r['p50_s']} | "
                         f"{r['p95_s']} | {r['wall_s']} | {len(r['errors'])} |")
    for backend, ratios in report.get("ratios", {}).items():
        for n, ratio in ratios.items():
            lines.append("")
            lines.append(f"At {n} concurrent, {backend} / in-process: {ratio['answers_per_min']}x answers per minute, "
                         f"{ratio['output_tokens_per_s']}x output tokens/s, p95 latency {ratio['p95']}x; identical answers "
                         f"{ratio['identical_answers']}.")
    with open(path, "a") as f:
        f.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[16], help="wave sizes (default 16)")
    ap.add_argument("--backends", nargs="+", default=["local", "vllm"], choices=["local", *VLLM_VARIANTS],
                    help="vllm-eager: archivist's CPU LoRA ops without compilation (vLLM's choice with LoRA); "
                         "vllm-stock: vLLM's own CPU LoRA ops, without archivist's plugin (engines/vllm)")
    ap.add_argument("--skip-local-above", type=int, default=None,
                    help="do not run the in-process backend on waves larger than this (it answers one at a time)")
    ap.add_argument("--vllm-memory", type=float, default=0.1,
                    help="vLLM's --gpu-memory-utilization: on the CPU the share of RAM kept for its KV cache")
    ap.add_argument("--vllm-dtype", default="float32", help="vLLM's --dtype (float32: answers equal the in-process ones)")
    ap.add_argument("--no-lora", action="store_true",
                    help="start vLLM without LoRA (archivist then asks for the base model by its id; no adapters)")
    ap.add_argument("--write", action="store_true", help="append a section to bench/RESULTS.md")
    ap.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = ap.parse_args(argv)
    if any(b.startswith("vllm") for b in args.backends) and not VLLM_PYTHON.exists():
        print(f"no vLLM environment at {VLLM_PYTHON}: run `make vllm-env`", file=sys.stderr)
        return 2
    report = run(sorted(args.concurrency), args.backends, args.vllm_memory, args.skip_local_above, args.vllm_dtype,
                 not args.no_lora)
    text = json.dumps({**report, "backends": {b: {n: {k: v for k, v in r.items() if k != "answers"} for n, r in lv.items()}
                                              for b, lv in report["backends"].items()}}, indent=2)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if args.write:
        write_results(report, REPO / "bench" / "RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run every benchmark and write bench/RESULTS.md.

    python bench/run_all.py --size small|full [--only ingest,query]

Runs each benchmark in its own process (embedder, ingest, query, generate, quality, and
finetune.py when it exists), each printing its table of archivist against its baseline. The
tables are gathered into bench/RESULTS.md between the "generated" markers, with the date and the
machine; the hand-written sections around them (profiling findings) are kept.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from common import BENCH, RESULTS, log, machine

ORDER = ["embedder", "ingest", "query", "generate", "quality", "finetune"]
def markers(size: str) -> tuple[str, str]:
    """Each size keeps its own generated block in RESULTS.md."""
    return f"<!-- generated:{size}:start -->", f"<!-- generated:{size}:end -->"


def write_results(size: str, ran: list[str], seconds: dict[str, float], failed: dict[str, int]) -> Path:
    path = BENCH / "RESULTS.md"
    m = machine()
    START, END = markers(size)
    lines = [START, "", f"## Latest run: `--size {size}`, {m['date']}", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB RAM, load average at the end "
             f"{', '.join(str(x) for x in m['load_avg'])} (the machine is shared; every ratio is measured within one run). "
             f"Python {m['python']}; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".", "",
             "| benchmark | seconds | status |", "|---|---|---|"]
    lines += [f"| {b} | {seconds.get(b) and f'{seconds[b]:.0f}' or 'n/a'} | {'ok' if b not in failed else f'failed ({failed[b]})'} |" for b in ran]
    lines.append("")
    for b in ran:
        md = RESULTS / f"{b}.md"
        if md.exists() and b not in failed:
            lines += [md.read_text().strip(), ""]
    lines.append(END)
    block = "\n".join(lines)
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    if START in old and END in old:
        new = old[:old.index(START)] + block + old[old.index(END) + len(END):]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    path.write_text(new)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", choices=["small", "full"], default="small")
    ap.add_argument("--only", default=None, help="comma-separated benchmarks to run (default: all)")
    ap.add_argument("--collect", action="store_true", help="run nothing; gather the latest results files into RESULTS.md")
    args = ap.parse_args(argv)
    if args.collect:
        have = [b for b in ORDER if (RESULTS / f"{b}.md").exists()]
        secs = {b: json.loads((RESULTS / f"{b}.json").read_text()).get("seconds", 0.0) if (RESULTS / f"{b}.json").exists() else 0.0
                for b in have}
        log(f"collected {', '.join(have)} into {write_results(args.size, have, secs, {})}")
        return 0
    wanted = args.only.split(",") if args.only else ORDER
    unknown = set(wanted) - set(ORDER)
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(sorted(unknown))}; choose from {', '.join(ORDER)}")
    t_all = time.perf_counter()
    ran, seconds, failed = [], {}, {}
    for name in [b for b in ORDER if b in wanted]:
        script = BENCH / f"{name}.py"
        if not script.exists():
            log(f"{name}: {script.name} not present, skipped")
            continue
        (RESULTS / f"{name}.md").unlink(missing_ok=True)
        log(f"{name}: running")
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, str(script), "--size", args.size], cwd=BENCH.parent,
                                stdout=subprocess.PIPE, text=True)
        captured = []
        for line in proc.stdout:  # shown as it comes, and kept for scripts that write no results file
            sys.stdout.write(line)
            sys.stdout.flush()
            captured.append(line)
        rc = proc.wait()
        seconds[name] = time.perf_counter() - t0
        if rc == 0 and not (RESULTS / f"{name}.md").exists():
            RESULTS.mkdir(parents=True, exist_ok=True)
            (RESULTS / f"{name}.md").write_text(f"### {name} ({args.size})\n\n```\n{''.join(captured).strip()}\n```\n")
        ran.append(name)
        if rc != 0:
            failed[name] = rc
            log(f"{name}: FAILED with exit status {rc}")
        else:
            log(f"{name}: done in {seconds[name]:.0f}s")
    path = write_results(args.size, ran, seconds, failed)
    total = time.perf_counter() - t_all
    log(f"all done in {total / 60:.1f} min; results in {path}")
    (RESULTS / "run_all.json").parent.mkdir(parents=True, exist_ok=True)
    (RESULTS / "run_all.json").write_text(json.dumps({"size": args.size, "seconds": seconds, "failed": failed,
                                                      "total_s": total}, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

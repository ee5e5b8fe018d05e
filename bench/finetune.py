"""Fine-tuning throughput and memory: the archivist recipe against a plain Hugging Face Trainer + PEFT.

Both sides train the same model with the same LoRA settings (rank 16, alpha 32, dropout 0, all
linear layers), learning rate, batch size and number of steps, on the same examples (a dataset
built from samples/ with the retrieval-aware prompts), with loss on the answer tokens only. The
baseline pads each batch to its longest sequence (DataCollatorForSeq2Seq) and computes logits at
every position, as a Trainer does; the recipe groups by length and computes logits only at the
answer tokens. Each measurement runs in its own process (peak memory is that process's), the two
sides interleaved, `--repeats` times; the table shows medians.

    tokens/s    real tokens (padding excluded) per second of training steps, all steps counted,
                and both sides see exactly the same examples (steps x batch = the example count)
    peak        CPU: the process's peak RSS (ru_maxrss); GPU: torch.cuda.max_memory_allocated
    estimate    finetune/memory.py's estimate for the same settings, made before loading

    .venv/bin/python bench/finetune.py --size small          # about 4.5 minutes on an idle 2-core CPU
    .venv/bin/python bench/finetune.py --size full --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
# bench/ holds a profile.py that would shadow the standard library's (torch imports cProfile)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
SIZES = {  # steps, batch, longest example (tokens), passages per prompt
    "small": dict(steps=6, batch=2, max_len=480, passages=2),  # 3 steps measured mostly warm-up
    "full": dict(steps=8, batch=4, max_len=768, passages=3),
}
LORA = dict(rank=16, alpha=32, dropout=0.0, lr=5e-4)  # the recipe's defaults


# -- one measurement, in its own process ---------------------------------------------------------


def _examples(path: str, base_path: str):
    from transformers import AutoTokenizer

    from archivist.finetune.lora import encode

    tok = AutoTokenizer.from_pretrained(base_path)
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
    return tok, [encode(tok, r["messages"]) for r in rows]


def worker_archivist(a) -> dict:
    import torch

    from archivist.finetune.lora import _answer_loss_module, add_lora, load_base
    from archivist.finetune.train import FinetuneConfig, train

    tok, data = _examples(a.examples, a.base_path)
    cfg = FinetuneConfig(dataset="bench", batch_size=a.batch, max_steps=a.steps, save_every=10**6, seed=0,
                         rank=LORA["rank"], alpha=LORA["alpha"], dropout=LORA["dropout"], lr=LORA["lr"], warmup_steps=1)
    torch.manual_seed(0)
    model, tok = load_base(a.base_path, a.method, a.device)
    model = add_lora(model, cfg.rank, cfg.alpha, cfg.dropout, "all-linear", False)
    loss_fn = _answer_loss_module()(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    folder = Path(tempfile.mkdtemp(prefix="bench-ft-"))
    unpadded = a.device == "cpu" and a.method == "lora"  # what --unpadded auto picks
    cpu0 = time.process_time()
    stats = train(model, loss_fn, opt, data, tok.pad_token_id, a.device, a.steps, cfg, folder, progress=False, unpadded=unpadded)
    cpu = time.process_time() - cpu0
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    shutil.rmtree(folder, ignore_errors=True)
    return {"tokens": sum(r["tokens"] for r in rows), "seconds": sum(r["step_s"] for r in rows), "cpu_seconds": cpu,
            "losses": [r["loss"] for r in rows], "padding": stats["padding"]}


def worker_hf(a) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments

    tok, data = _examples(a.examples, a.base_path)
    features = [{"input_ids": d["input_ids"], "attention_mask": [1] * len(d["input_ids"]),
                 "labels": [-100] * d["n_prompt"] + d["input_ids"][d["n_prompt"]:]} for d in data]
    torch.manual_seed(0)
    if a.method == "qlora":
        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig

        dtype = torch.bfloat16 if a.device == "cuda" else torch.float32
        model = AutoModelForCausalLM.from_pretrained(a.base_path, quantization_config=BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype),
            dtype=dtype, device_map={"": a.device if a.device != "cuda" else 0})
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    else:
        model = AutoModelForCausalLM.from_pretrained(a.base_path, dtype=torch.bfloat16 if a.device == "cuda" else torch.float32)
    model = get_peft_model(model, LoraConfig(r=LORA["rank"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                                             target_modules="all-linear", task_type="CAUSAL_LM"))
    pad = DataCollatorForSeq2Seq(tok, padding="longest", label_pad_token_id=-100)
    seen = {"tokens": 0, "padded": 0}

    def collate(batch):
        out = pad(batch)
        seen["tokens"] += int(out["attention_mask"].sum())
        seen["padded"] += int(out["attention_mask"].numel())
        return out

    times, cpu_times = [], []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t0, self.c0 = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter() - self.t0)
            cpu_times.append(time.process_time() - self.c0)

    losses = []

    class Losses(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses.append(logs["loss"])

    args = TrainingArguments(output_dir=tempfile.mkdtemp(prefix="bench-hf-"), per_device_train_batch_size=a.batch,
                             max_steps=a.steps, learning_rate=LORA["lr"], lr_scheduler_type="cosine", warmup_steps=1,
                             logging_steps=1, save_strategy="no", report_to=[], seed=0, disable_tqdm=True,
                             use_cpu=a.device == "cpu", bf16=a.device == "cuda", dataloader_num_workers=0,
                             remove_unused_columns=False)
    trainer = Trainer(model=model, args=args, train_dataset=features, data_collator=collate, callbacks=[Clock(), Losses()])
    t_first = time.perf_counter()
    trainer.train()
    shutil.rmtree(args.output_dir, ignore_errors=True)
    # the first collate happens before the first on_step_begin; count its time like the recipe does (it's tiny)
    return {"tokens": seen["tokens"], "seconds": sum(times), "cpu_seconds": sum(cpu_times), "losses": losses,
            "padding": round(1 - seen["tokens"] / max(1, seen["padded"]), 4), "wall": time.perf_counter() - t_first}


def worker(a) -> None:
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    out = worker_archivist(a) if a.worker == "archivist" else worker_hf(a)
    if a.device == "cuda":
        out["peak_gb"] = torch.cuda.max_memory_allocated() / 2**30
    else:
        out["peak_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    out["tokens_per_s"] = out["tokens"] / out["seconds"]
    out["tokens_per_cpu_s"] = out["tokens"] / out["cpu_seconds"]
    print("RESULT " + json.dumps(out))


# -- the bench: prepare data, run the workers interleaved, print the table --------------------------


def prepare(size: dict, home: Path) -> tuple[str, str, dict]:
    """Ingest samples/ into a fresh workspace, build the dataset, and pick steps x batch examples
    no longer than the size's max_len; returns (examples.jsonl, base model folder, shape info)."""
    os.environ["ARCHIVIST_HOME"] = str(home)
    from archivist.catalog import resolve_llm
    from archivist.finetune.datasets import build_dataset
    from archivist.finetune.lora import encode
    from archivist.ingest.pipeline import ingest_paths
    from archivist.retrieval.repair import open_checked
    from archivist.settings import Settings

    settings = Settings.from_env()
    base_path = str(resolve_llm(settings.llm, settings.cache))
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_path)
    with open_checked(settings) as ws:
        ingest_paths(ws, [str(p) for p in sorted((REPO / "samples").iterdir()) if p.suffix not in (".jsonl",) and p.name != "README.md"],
                     progress=False)
        ds = build_dataset(ws, ["docs"], passages=size["passages"], eval_fraction=0.0, name="bench")
    enc = [(e, encode(tok, e.messages)) for e in ds.train]
    fit = [(e, d) for e, d in enc if len(d["input_ids"]) <= size["max_len"]]
    n = size["steps"] * size["batch"]
    if len(fit) < n:
        raise SystemExit(f"only {len(fit)} examples fit in {size['max_len']} tokens; need {n}")
    chosen = fit[:n]
    path = home / "examples.jsonl"
    path.write_text("".join(json.dumps({"messages": e.messages}) + "\n" for e, _ in chosen))
    lens = [len(d["input_ids"]) for _, d in chosen]
    answers = [len(d["input_ids"]) - d["n_prompt"] for _, d in chosen]
    return str(path), base_path, {"examples": n, "tokens": sum(lens), "longest": max(lens), "longest_answer": max(answers),
                                  "mean_len": sum(lens) / n}


def run_worker(impl: str, method: str, a, examples: str, base_path: str, size: dict) -> dict:
    cmd = [sys.executable, __file__, "--worker", impl, "--method", method, "--examples", examples, "--base-path", base_path,
           "--steps", str(size["steps"]), "--batch", str(size["batch"]), "--device", a.device]
    if a.threads:
        cmd += ["--threads", str(a.threads)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    line = next((x for x in p.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"{impl}/{method} failed:\n{p.stderr[-3000:]}")
    r = json.loads(line[7:])
    print(f"  {impl:9} {method:5} {r['tokens_per_s']:8.1f} tokens/s  peak {r['peak_gb']:.2f} GB  "
          f"loss {r['losses'][0]:.3f} -> {r['losses'][-1]:.3f}", file=sys.stderr, flush=True)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads in every worker (0: as the recipe picks: 1 when the load fills every core)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--no-qlora", action="store_true", help="skip the qlora runs")
    ap.add_argument("--json", default=None, help="also write the results here")
    # worker mode (internal)
    ap.add_argument("--worker", choices=["archivist", "hf"])
    ap.add_argument("--method", default="lora")
    ap.add_argument("--examples")
    ap.add_argument("--base-path")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--batch", type=int)
    a = ap.parse_args()
    if a.worker:
        return worker(a)

    t0 = time.time()
    if not a.threads:  # the recipe's own choice: one thread when the machine is already busy
        from archivist.finetune.train import _auto_threads

        a.threads = _auto_threads()
    size = SIZES[a.size]
    home = Path(tempfile.mkdtemp(prefix="bench-finetune-"))
    examples, base_path, info = prepare(size, home)
    print(f"{info['examples']} examples, {info['tokens']} tokens (longest {info['longest']}), "
          f"{size['steps']} steps of batch {size['batch']}, {a.repeats} repeats, device {a.device}, "
          f"threads {a.threads or 'default'}", file=sys.stderr)
    results: dict[str, list] = {"archivist/lora": [], "hf/lora": [], "archivist/qlora": [], "hf/qlora": []}
    for _ in range(a.repeats):
        for impl in ("hf", "archivist"):
            results[f"{impl}/lora"].append(run_worker(impl, "lora", a, examples, base_path, size))
    if not a.no_qlora:
        for impl in ("hf", "archivist"):
            results[f"{impl}/qlora"].append(run_worker(impl, "qlora", a, examples, base_path, size))

    from archivist.finetune.memory import estimate, model_shape

    shape = model_shape(base_path)
    rows = []
    for key, runs in results.items():
        if not runs:
            continue
        impl, method = key.split("/")
        one_by_one = impl == "archivist" and method == "lora" and a.device == "cpu"  # the recipe runs these unpadded
        est = estimate(shape, method, a.device, 1 if one_by_one else size["batch"], info["longest"], LORA["rank"], False,
                       LORA["dropout"],
                       info["longest_answer"], all_logits=impl == "hf")
        tps = statistics.median(r["tokens_per_s"] for r in runs)
        tpc = statistics.median(r["tokens_per_cpu_s"] for r in runs)
        peak = statistics.median(r["peak_gb"] for r in runs)
        rows.append({"run": key, "repeats": len(runs), "tokens_per_s": round(tps, 1), "tokens_per_cpu_s": round(tpc, 1),
                     "padding": runs[0].get("padding"), "peak_gb": round(peak, 3),
                     "estimate_gb": round(est.total / 2**30, 3), "estimate_error": round(est.total / 2**30 / peak - 1, 3),
                     "first_loss": runs[0]["losses"][0], "last_loss": runs[0]["losses"][-1],
                     "all_tokens_per_s": [round(r["tokens_per_s"], 1) for r in runs]})
    by = {r["run"]: r for r in rows}
    ratio = by["archivist/lora"]["tokens_per_s"] / by["hf/lora"]["tokens_per_s"]
    ratio_cpu = by["archivist/lora"]["tokens_per_cpu_s"] / by["hf/lora"]["tokens_per_cpu_s"]
    print(f"\nfine-tuning, {info['examples']} examples x {size['steps']} steps, batch {size['batch']}, device {a.device}")
    print(f"{'run':18} {'tokens/s':>9} {'tok/CPU-s':>10} {'padding':>8} {'peak GB':>8} {'estimate GB':>12} {'est. error':>11}  loss")
    for r in rows:
        print(f"{r['run']:18} {r['tokens_per_s']:>9.1f} {r['tokens_per_cpu_s']:>10.1f} {100 * (r['padding'] or 0):>7.1f}% "
              f"{r['peak_gb']:>8.2f} {r['estimate_gb']:>12.2f} {100 * r['estimate_error']:>10.1f}%  "
              f"{r['first_loss']:.3f} -> {r['last_loss']:.3f}")
    print(f"archivist / HF Trainer+PEFT (lora): {ratio:.2f}x real tokens per second ({ratio_cpu:.2f}x per CPU-second)")
    if "archivist/qlora" in by and "hf/qlora" in by:
        print(f"archivist / HF Trainer+PEFT (qlora): {by['archivist/qlora']['tokens_per_s'] / by['hf/qlora']['tokens_per_s']:.2f}x")
    print(f"({time.time() - t0:.0f} s in all)")
    m = _machine()
    payload = {"size": a.size, "info": info, "rows": rows, "ratio_lora": ratio, "ratio_lora_cpu": ratio_cpu,
               "threads": a.threads, "device": a.device,
               "machine": m, "seconds": round(time.time() - t0)}
    if a.json:
        Path(a.json).write_text(json.dumps(payload, indent=2))
    results = BENCH / "data" / "results"  # run_all.py gathers <name>.md from here into RESULTS.md
    results.mkdir(parents=True, exist_ok=True)
    (results / "finetune.json").write_text(json.dumps(payload, indent=2))
    (results / "finetune.md").write_text(markdown(payload))
    shutil.rmtree(home, ignore_errors=True)


def _machine() -> dict:
    """bench/common.py's machine(): date, CPU, cores, memory, load, versions."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_common", BENCH / "common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
    return common.machine()


def markdown(p: dict) -> str:
    info, m = p["info"], p["machine"]
    lines = [f"### Fine-tuning (`bench/finetune.py --size {p['size']}`)", "",
             f"{m['date']}, {m['cpu']}, {m['cores']} cores, load average {', '.join(str(x) for x in m['load_avg'])}, "
             f"device {p['device']}, torch threads {p['threads'] or 'default'}. SmolLM2-135M-Instruct, LoRA rank "
             f"{LORA['rank']} alpha {LORA['alpha']} dropout {LORA['dropout']} on all linear layers, {info['examples']} "
             f"examples ({info['tokens']} tokens, longest {info['longest']}), the same for both sides.", "",
             "| run | real tokens/s (median) | all repeats | tokens per CPU-second | padding | peak GB | estimate GB | estimate error |",
             "|---|---|---|---|---|---|---|---|"]
    for r in p["rows"]:
        lines.append(f"| {r['run']} | {r['tokens_per_s']:.1f} | {', '.join(str(x) for x in r['all_tokens_per_s'])} | "
                     f"{r['tokens_per_cpu_s']:.1f} | {100 * (r['padding'] or 0):.1f}% | {r['peak_gb']:.2f} | {r['estimate_gb']:.2f} | "
                     f"{100 * r['estimate_error']:+.1f}% |")
    lines += ["", f"archivist recipe / HF Trainer + PEFT (lora): **{p['ratio_lora']:.2f}x** real tokens per second "
                  f"({p['ratio_lora_cpu']:.2f}x per CPU-second)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

"""The LoRA / QLoRA fine-tuning recipe. `run` reads top to bottom as its named steps:

    open_run   the run's row (or, resuming, its saved config); torchrun's ranks agree on its id
    setup      threads and seed -> dataset (`_dataset`) -> device and method -> encoded examples
               -> memory check -> (quantized) base (`lora.load_base`) + LoRA -> optimizer -> resume point
    train      the loop: answer-only loss, length-grouped micro-batches, checkpoints (`checkpoints.save_checkpoint`)
    save       the adapter -> evaluate base vs adapter -> register it with its lineage
    cleanup    the signal handlers put back, however the run ended

The config (FinetuneConfig, every default with its help) is at the top; the loop follows it, then
the steps themselves. The building blocks the steps use live beside it: lora.py (the base, LoRA,
the answer-only loss, encoding and length-grouped micro-batches), checkpoints.py (save and resume).
So do helpers with their own concern: datasets.py (examples; dataset_store.py saves them),
memory.py (will it fit), evaluate.py (base vs adapter), registry.py (lineage;
archivist/adapters.py registers adapters/<name>/), runs.py (runs: jobs of kind train, background).

What makes it fast on a small model: the loss is taken only on the answer tokens, so the output
layer (a 49k-vocabulary matmul for SmolLM2, a large share of a 135M model's compute and memory)
is applied only at those positions: the recipe runs the model's body to get hidden states, picks
the answer positions, and applies lm_head there alone. Micro-batches are grouped by length, so
almost no padding is computed. Runs three ways, the same code:

    archivist finetune ...                                      in the foreground, with a progress bar
    start_run_background(ws, config)                            its own process (the UI); cancel_run stops it
    torchrun --nproc_per_node 4 -m archivist.finetune.train ... data parallel on several GPUs (DDP)
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from archivist.finetune import checkpoints, lora
from archivist.workspace import Workspace

log = logging.getLogger(__name__)


def _f(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw}) if not isinstance(default, list) else \
        field(default_factory=lambda: list(default), metadata={"help": help, **kw})


@dataclass
class FinetuneConfig:
    # data
    data: list = _f(["docs"], "sources: docs, feedback and/or FILE.jsonl (repeatable)")
    dataset: str | None = _f(None, "train on this saved dataset (datasets/<name>) instead of building one")
    collections: list | None = _f(None, "only these collections (default: every one the user may read)")
    user: str | None = _f(None, "build the dataset as this user (access rules apply)")
    generator: str = _f("extractive", "question generator for documents: extractive | llm | both")
    passages: int = _f(3, "passages per training prompt: the source among retrieved distractors")
    eval_fraction: float = _f(0.2, "share of documents held out for evaluation")
    # model and LoRA
    base: str | None = _f(None, "base model: catalog name, HF id or local folder (default: the chat model)")
    method: str = _f("auto", "lora | qlora (NF4 4-bit base) | auto (qlora on a GPU, lora on the CPU)")
    rank: int = _f(16, "LoRA rank")
    alpha: int = _f(32, "LoRA alpha (scale = alpha / rank)")
    dropout: float = _f(0.0, "LoRA dropout (0: one epoch on a small set does not overfit, and dropout copies "
                              "every LoRA input: ~20% more activation memory)")
    target_modules: str = _f("all-linear", "LoRA targets: all-linear or comma-separated module names")
    # optimization
    lr: float = _f(5e-4, "peak learning rate (AdamW), linear warmup then cosine to 10%")
    epochs: float = _f(1.0, "passes over the training split (ignored when --max-steps is set)")
    max_steps: int = _f(0, "optimizer steps to run (0: from --epochs)")
    batch_size: int = _f(2, "sequences per micro-batch (grouped by length, padded to the longest)")
    grad_accum: int = _f(1, "micro-batches per optimizer step")
    unpadded: str = _f("auto", "run a micro-batch's sequences one by one, with no padding and no attention mask: "
                               "auto (lora on the CPU, where it measured ~25% faster; a 4-bit base dequantizes its "
                               "weights once per forward pass, so qlora batches) | on | off")
    max_seq_len: int = _f(1024, "longest example in tokens; longer ones are left out (and counted)")
    warmup_steps: int = _f(3, "steps of linear learning-rate warmup")
    weight_decay: float = _f(0.0, "AdamW weight decay on the LoRA weights")
    grad_checkpointing: str = _f("auto", "auto (on when memory is tight) | on | off")
    save_every: int = _f(10, "checkpoint every N optimizer steps (and at the end, and when cancelled)")
    seed: int = _f(0, "seed for the split, the data order, LoRA init and dropout")
    # after training
    eval_limit: int = _f(16, "held-out examples to evaluate base and adapter on (0: all)")
    eval_max_new_tokens: int = _f(48, "longest generated answer during evaluation")
    name: str | None = _f(None, "adapter name (default: ft-<run id>)")
    replaces: str | None = _f(None, "the adapter this run trains again (set by --retrain; its lineage keeps it)")
    activate: bool = _f(True, "activate the adapter when it beats the base on the held-out split")
    device: str = _f("auto", "auto | cpu | cuda")
    threads: int = _f(0, "CPU threads for torch (0: torch's default, or 1 when the machine is already busy)")

    def __post_init__(self):
        checks = [
            (self.method in ("auto", "lora", "qlora"), f"method must be auto, lora or qlora, got {self.method!r}"),
            (self.generator in ("extractive", "llm", "both"), f"generator must be extractive, llm or both, got {self.generator!r}"),
            (self.grad_checkpointing in ("auto", "on", "off"), f"grad_checkpointing must be auto, on or off, got {self.grad_checkpointing!r}"),
            (self.unpadded in ("auto", "on", "off"), f"unpadded must be auto, on or off, got {self.unpadded!r}"),
            (self.device in ("auto", "cpu", "cuda"), f"device must be auto, cpu or cuda, got {self.device!r}"),
            (self.rank >= 1 and self.alpha >= 1, "rank and alpha must be at least 1"),
            (0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}"),
            (self.lr > 0, f"lr must be positive, got {self.lr}"),
            (self.epochs > 0 or self.max_steps > 0, "give epochs > 0 or max_steps > 0"),
            (self.max_steps >= 0 and self.batch_size >= 1 and self.grad_accum >= 1, "max_steps >= 0, batch_size and grad_accum >= 1"),
            (self.max_seq_len >= 32, f"max_seq_len must be at least 32, got {self.max_seq_len}"),
            (self.save_every >= 1 and self.passages >= 1, "save_every and passages must be at least 1"),
            (self.data or self.dataset, "give a data source (--data) or a saved --dataset"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


# -- the training loop -------------------------------------------------------------------------


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warmup to `peak`, then cosine decay to 10% of it (a function of the step, so resuming needs no state)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def train(model, loss_fn, optimizer, data: list[dict], pad_id: int, device, total_steps: int, cfg: FinetuneConfig,
          run_folder: Path, start_step: int = 0, progress: bool = True, rank: int = 0, world: int = 1,
          unpadded: bool = False, should_stop=lambda: False, on_step=None, learned: Sequence[dict] = (),
          started_on: str | None = None) -> dict:
    """Optimizer steps start_step..total_steps-1 over `data` (encoded examples); appends a line per
    step to run_folder/metrics.jsonl and checkpoints every cfg.save_every steps and at the end.
    on_step(step, total_steps, loss): called on rank 0 after each step (the run's job progress).
    learned: the documents the weights have learned from (`Prepared.learned`), kept in each checkpoint.
    started_on: the device the run started on (None: `device`), kept in each checkpoint: `--method auto`
    chose by it, so a run moved twice (CPU, GPU, CPU) keeps its method.
    unpadded: each sequence of a micro-batch gets its own forward pass (no padding, no mask); the
    gradient is the same, since the loss is normalized by the step's answer tokens either way.
    Returns {"steps", "stopped", "tokens", "seconds", "tokens_per_s", "padding", "last_loss", "first_loss"}."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    lengths = [len(d["input_ids"]) for d in data]
    per_step = cfg.grad_accum * world
    epochs = {0: lora.micro_batches(lengths, cfg.batch_size, cfg.seed, 0)}  # the order is a function of (seed, epoch)
    n_micro = len(epochs[0])

    def batch_at(k: int) -> list[int]:
        e, i = divmod(k, n_micro)
        if e not in epochs:
            epochs[e] = lora.micro_batches(lengths, cfg.batch_size, cfg.seed, e)
        return epochs[e][i]

    run_folder.mkdir(parents=True, exist_ok=True)
    metrics_path = run_folder / "metrics.jsonl"
    bar = None
    if progress and rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", file=sys.stderr, dynamic_ncols=True)
    model.train()
    t_start, real, padded, losses = time.perf_counter(), 0, 0, []
    step, stopped = start_step, False
    for step in range(start_step, total_steps):
        t0 = time.perf_counter()
        lr = lr_at(step, total_steps, cfg.lr, cfg.warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        mine = [batch_at(step * per_step + j) for j in range(per_step) if j % world == rank]
        passes = [[i] for b in mine for i in b] if unpadded else mine
        batches = [lora.collate([data[i] for i in b], pad_id, device) for b in passes]
        n_answer = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)
        loss_sum, tokens = 0.0, 0
        for j, b in enumerate(batches):
            sync = j == len(batches) - 1 or not hasattr(loss_fn, "no_sync")
            ctx = loss_fn.no_sync() if not sync else contextlib.nullcontext()
            with ctx:
                summed, _ = loss_fn(**b)
                (summed / max(1, n_answer)).backward()
            loss_sum += float(summed.detach())
            tokens += int(b["attention_mask"].sum())
            padded += int(b["attention_mask"].numel())
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if world > 1:  # report the step over all ranks
            totals = torch.tensor([loss_sum, tokens, n_answer], dtype=torch.float64, device=device)
            torch.distributed.all_reduce(totals)
            loss_sum, tokens, n_answer = float(totals[0]), int(totals[1]), int(totals[2])
        real += tokens
        dt = time.perf_counter() - t0
        loss = loss_sum / max(1, n_answer)
        losses.append(loss)
        row = {"step": step + 1, "loss": round(loss, 5), "tokens_per_s": round(tokens / dt, 1), "lr": lr,
               "elapsed": round(time.perf_counter() - t_start, 2), "step_s": round(dt, 3), "tokens": tokens,
               "answer_tokens": n_answer}
        if rank == 0:
            with open(metrics_path, "a") as f:
                f.write(json.dumps(row) + "\n")
            if bar is not None:
                bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{row['tokens_per_s']:.0f}")
                bar.update(1)
            if on_step is not None:
                on_step(step + 1, total_steps, loss)
        stopped = should_stop()
        if world > 1:  # every rank stops at the same step, or the others would wait forever in all_reduce
            flag = torch.tensor([float(stopped)], device=device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            stopped = bool(flag.item())
        if rank == 0 and ((step + 1) % cfg.save_every == 0 or step + 1 == total_steps or stopped):
            checkpoints.save_checkpoint(run_folder / "checkpoints", model, optimizer, step + 1,
                                        {"total_steps": total_steps, "documents": list(learned), "device": str(device),
                                         "started_on": started_on or str(device)})
        if stopped:
            break
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t_start
    return {"steps": step + 1 if total_steps > start_step else start_step, "stopped": stopped, "tokens": real,
            "seconds": round(seconds, 2), "tokens_per_s": round(real / max(seconds, 1e-9), 1),
            "padding": round(1 - real / max(1, padded * world), 4), "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None}


# -- the recipe: open the run -> setup -> train -> save -> cleanup ------------------------------


def run(ws: Workspace, cfg: FinetuneConfig, run_id: str | None = None, resume: bool = False, progress: bool = True,
        say=lambda msg: print(msg, file=sys.stderr)) -> dict:
    """Build or load the dataset, check memory, train, evaluate base vs adapter, register the adapter.

    With resume, continues run `run_id` from its latest checkpoint (same config and dataset).
    Returns {"run_id", "status", "dataset", "train": {...}, "evaluation": {...}, "adapter": {...}}.
    Raises WontFit (memory), DatasetError, AccessDenied; the run is marked failed with the reason.
    """
    import torch

    from archivist import jobs
    from archivist.finetune import runs

    world, rank = _init_distributed()
    run_id, cfg = open_run(ws, cfg, run_id, resume, rank, world)
    stop = _StopOnSignal()
    try:
        prep = setup(ws, cfg, run_id, resume, progress, rank, world, say)
        report = jobs.Reporter(ws, run_id)
        try:
            stats = train(prep.model, prep.loss_fn, prep.optimizer, prep.data, prep.tokenizer.pad_token_id, prep.device,
                          prep.total_steps, cfg, prep.folder, prep.start_step, progress, rank, world,
                          unpadded=prep.unpadded, should_stop=stop.requested, learned=prep.learned, started_on=prep.started_on,
                          # `archivist jobs` shows the step count as it shows an ingest's files
                          on_step=lambda n, total, loss: report(n, total, f"loss {loss:.3f}"))
        finally:
            report.flush()  # a run stopped short of its total: the step it reached, not one up to a second before
        if prep.start_step:
            stats = _whole_run(stats, runs.read_metrics(ws, run_id), prep.start_step)
        if torch.cuda.is_available():
            stats["peak_gpu_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        result = {"run_id": run_id, "dataset": prep.dataset.name, "method": prep.method, "base": prep.base,
                  "train": stats, "estimate_gb": round(prep.estimate.total / 2**30, 3) if prep.estimate else None}
        if rank != 0:
            return result
        if stats["stopped"]:
            runs.update_run(ws, run_id, "cancelled")
            say(f"run {run_id}: cancelled at step {stats['steps']}; continue with `archivist finetune --resume {run_id}`")
            return {**result, "status": "cancelled"}
        return {**result, **save(ws, cfg, prep, stats, progress, say)}
    except KeyboardInterrupt:
        if rank == 0:
            runs.update_run(ws, run_id, "cancelled", error="interrupted")
        raise
    except BaseException as e:
        if rank == 0:
            runs.update_run(ws, run_id, "failed", error=f"{type(e).__name__}: {e}")
        raise
    finally:
        cleanup(stop)


def _whole_run(stats: dict, metrics: list[dict], start_step: int) -> dict:
    """A resumed run's stats over every step it trained, not only this process's: `train` counts from
    the resume point, so the lines metrics.jsonl kept up to it (`_truncate_metrics`) add their tokens,
    seconds and first loss. Otherwise the summary and the adapter's lineage would call step 5's loss
    the run's first and hold a fraction of its tokens. Padding stays this process's share (the lines
    do not record padded tokens)."""
    earlier = [m for m in metrics if m.get("step", 0) <= start_step]
    if not earlier:
        return stats
    tokens = stats["tokens"] + sum(int(m.get("tokens") or 0) for m in earlier)
    seconds = stats["seconds"] + sum(float(m.get("step_s") or 0) for m in earlier)
    return {**stats, "tokens": tokens, "seconds": round(seconds, 2), "tokens_per_s": round(tokens / max(seconds, 1e-9), 1),
            "first_loss": earlier[0].get("loss", stats["first_loss"]),
            "last_loss": stats["last_loss"] if stats["last_loss"] is not None else earlier[-1].get("loss")}


def _init_distributed() -> tuple[int, int]:
    """(world size, this process's rank): (1, 0) alone; under torchrun, joins the process group."""
    import torch

    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return world, rank


def open_run(ws: Workspace, cfg: FinetuneConfig, run_id: str | None, resume: bool, rank: int,
             world: int) -> tuple[str, FinetuneConfig]:
    """(run id, config): rank 0 creates the run's row (or, resuming, reads back its config) and marks
    it running; every rank gets the same id. Raises ValueError when the run to resume is done."""
    from archivist.finetune import runs

    if rank == 0:
        if resume and run_id:
            row = runs.get_run(ws, run_id)
            if row["status"] == "done":
                raise ValueError(f"run {run_id} is already done (adapter {row['adapter']}); nothing to resume")
            cfg = FinetuneConfig(**row["config"])
        else:
            run_id = runs.create_run(ws, asdict(cfg), run_id)
        runs.update_run(ws, run_id, "running", pid=os.getpid(), error=None)
    if world > 1:
        import torch

        box = [run_id]
        torch.distributed.broadcast_object_list(box, src=0)
        run_id = box[0]
    return run_id, cfg


class _StopOnSignal:
    """SIGTERM (cancel_run) and a first Ctrl-C ask the loop to finish the step, checkpoint and stop;
    a second Ctrl-C interrupts. Installed only on the main thread (signals go there); `restore`
    puts the previous handlers back."""

    def __init__(self):
        self.flag = False
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            self.previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    def _on_signal(self, signum, frame):
        if signum == signal.SIGINT and self.flag:
            raise KeyboardInterrupt
        self.flag = True

    def requested(self) -> bool:
        return self.flag

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


@dataclass
class Prepared:
    """What `setup` prepares for the training loop and `save` reads after it."""
    run_id: str
    folder: Path            # runs/<id>/: metrics.jsonl, checkpoints/, adapter/
    dataset: object         # dataset_store.Dataset: the train and eval splits
    data: list[dict]        # the training examples, encoded (`lora.encode`), those that fit max_seq_len
    base: str               # the base model as named (catalog name, HF id or folder)
    path: str               # its local folder
    local: Path | None      # memory.local_folder(path): what model_hash reads
    method: str             # lora | qlora
    device: str             # cpu | cuda:N
    model: object           # the PeftModel
    tokenizer: object
    loss_fn: object         # AnswerLoss over the model (in DistributedDataParallel when world > 1)
    optimizer: object       # AdamW over the LoRA weights
    total_steps: int
    start_step: int         # > 0 when resuming from a checkpoint
    unpadded: bool          # one sequence per forward pass (see `train`)
    estimate: object | None  # memory.Estimate, when the model's shape is known
    learned: list[dict] = field(default_factory=list)  # the documents the weights learned from (`_learned`)
    started_on: str = ""  # the device the run started on, which `--method auto` chose by


def setup(ws: Workspace, cfg: FinetuneConfig, run_id: str, resume: bool, progress: bool, rank: int, world: int,
          say) -> Prepared:
    """Everything before the first step: threads and seed, the dataset, the device and method, the
    encoded examples, the memory check, the base with fresh LoRA weights, the optimizer, and where a
    resumed run starts. Raises DatasetError (no example fits), WontFit (memory)."""
    import torch

    from archivist.catalog import resolve_llm
    from archivist.finetune import memory, runs
    from archivist.models import pick_device

    folder = runs.run_dir(ws, run_id)
    threads = cfg.threads or _auto_threads()
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    # 1. data
    ds = _dataset(ws, cfg, run_id, progress, rank, world, say)
    # 2. base model and method
    device = pick_device(cfg.device)
    if device == "cuda":
        if not torch.cuda.is_available():  # was torch's AttributeError from set_device; a resume moves it back (--device)
            raise ValueError(f"run {run_id}: --device cuda, but torch finds no CUDA GPU here; use --device cpu or auto")
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
    # `auto` chose by the device the run started on (`started_on`; a moved run's later checkpoints' `device`
    # names where it went): a resume on another device keeps that method
    state = checkpoints.latest_state(folder / "checkpoints") if resume else {}
    trained_on = state.get("started_on") or state.get("device", device)
    method = cfg.method if cfg.method != "auto" else ("qlora" if trained_on.startswith("cuda") else "lora")
    base = cfg.base or ws.settings.llm
    path = str(resolve_llm(base, ws.settings.cache))
    data = _encode_examples(path, ds, cfg.max_seq_len, rank, say)
    # 3. will it fit? (before loading a single weight)
    longest = max(len(d["input_ids"]) for d in data)
    local = memory.local_folder(path)
    grad_ckpt, unpadded, est = memory.fit(data, local, method, device, cfg.batch_size, cfg.rank, cfg.dropout,
                                          cfg.target_modules, cfg.grad_checkpointing, cfg.unpadded)
    # 4. base + LoRA, and the optimizer
    torch.manual_seed(cfg.seed)  # the same LoRA init on a fresh start and before a resume overwrites it
    model, tokenizer = lora.load_base(path, method, device)
    model = lora.add_lora(model, cfg.rank, cfg.alpha, cfg.dropout, cfg.target_modules, grad_ckpt)
    loss_fn = lora._answer_loss_module()(model)
    if world > 1:
        loss_fn = torch.nn.parallel.DistributedDataParallel(
            loss_fn, device_ids=[torch.device(device)] if device.startswith("cuda") else None)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                  weight_decay=cfg.weight_decay)
    # 5. how many steps, and where a resumed run starts
    n_micro = len(lora.micro_batches([len(d["input_ids"]) for d in data], cfg.batch_size, cfg.seed, 0))
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * n_micro / (cfg.grad_accum * world)))
    start, learned = 0, _learned(ds.manifest, [])
    if resume:
        try:
            state = checkpoints.load_checkpoint(folder / "checkpoints", model, optimizer)
        except checkpoints.CheckpointDamaged as e:  # the only checkpoint kept: what it held is trained again
            log.warning("run %s: %s", run_id, e)
            say(f"run {run_id}: {e}; training starts again from step 0")
            state = None
        if state:
            start = state["step"]
            learned = _learned(ds.manifest, state.get("documents") or [])
            say(f"run {run_id}: resuming at step {start} of {total}")
        # steps logged after the checkpoint (or before the first one) are trained, and logged, again
        _truncate_metrics(folder / "metrics.jsonl", start)
    if rank == 0:
        say(f"run {run_id}: {method} on {base} ({device}), {len(data)} examples, {total} steps of "
            f"{cfg.batch_size}x{cfg.grad_accum}x{world}, rank {cfg.rank}, max {longest} tokens"
            + (f", estimated peak {est.total / 2**30:.2f} GB" if est else "")
            + (", gradient checkpointing" if grad_ckpt else "") + (", unpadded" if unpadded else "")
            + f", {torch.get_num_threads()} CPU thread(s)" * (not device.startswith("cuda")))
    return Prepared(run_id=run_id, folder=folder, dataset=ds, data=data, base=base, path=path, local=local, method=method,
                  device=device, model=model, tokenizer=tokenizer, loss_fn=loss_fn, optimizer=optimizer,
                  total_steps=total, start_step=start, unpadded=unpadded, estimate=est, learned=learned,
                  started_on=trained_on)


def _learned(manifest: dict, checkpointed: list[dict]) -> list[dict]:
    """The documents a run's weights learned from: its dataset's (manifest "documents"), plus those a
    resumed run's checkpoint recorded that the dataset no longer lists. An erase takes a document out
    of every saved dataset, but the steps trained before it stay in the checkpoint's weights; without
    them the adapter's lineage would not name the document, and it would register (and activate) as
    fresh instead of stale."""
    listed = [d for d in manifest.get("documents") or [] if isinstance(d, dict)]
    ids = {d.get("id") for d in listed}
    return listed + [d for d in checkpointed if isinstance(d, dict) and d.get("id") not in ids]


def _dataset(ws: Workspace, cfg: FinetuneConfig, run_id: str, progress: bool, rank: int, world: int, say):
    """The run's dataset: rank 0 builds it from cfg.data unless cfg.dataset names a saved one, and
    records its name in the run's config (a resumed run trains on this very dataset); every rank
    then loads it by that name."""
    from archivist.finetune import dataset_store, datasets, runs

    if rank == 0 and not cfg.dataset:
        say(f"run {run_id}: building the dataset from {', '.join(cfg.data)} ...")
        ds = datasets.build_dataset(ws, cfg.data, user=cfg.user, collections=cfg.collections, generator=cfg.generator,
                                    seed=cfg.seed, eval_fraction=cfg.eval_fraction, passages=cfg.passages,
                                    name=f"run-{run_id}", progress=progress)
        cfg.dataset = ds.name
        runs.update_run(ws, run_id, config=asdict(cfg))  # a resumed run trains on this very dataset
    if world > 1:
        import torch

        box = [cfg.dataset]
        torch.distributed.broadcast_object_list(box, src=0)
        cfg.dataset = box[0]
    # only what cfg.user may see and use; an old dataset is no way past the review of corrections
    return dataset_store.check_reviewed(ws, dataset_store.load_dataset(ws, cfg.dataset, cfg.user))


def _encode_examples(path: str, ds, max_seq_len: int, rank: int, say) -> list[dict]:
    """The training split encoded with the base's tokenizer (`lora.encode`), leaving out (and saying how
    many) the examples longer than max_seq_len. Raises DatasetError when the split is empty or none fits."""
    from transformers import AutoTokenizer

    from archivist.finetune import dataset_store

    if not ds.train:  # not a length problem: an erase takes out every example that showed the document's text
        raise dataset_store.DatasetError(f"dataset {ds.name} has no training examples left ({len(ds.eval)} held out); "
                                         "an erase removes the examples built from or showing the erased document. "
                                         "Train on a new dataset (`archivist finetune` builds one)")
    tokenizer = AutoTokenizer.from_pretrained(path)
    data = [lora.encode(tokenizer, e.messages, max_seq_len) for e in ds.train]
    dropped = sum(d is None for d in data)
    data = [d for d in data if d is not None]
    if not data:
        raise dataset_store.DatasetError(f"no training example fits in --max-seq-len {max_seq_len} "
                                    f"({dropped} longer ones left out)")
    if dropped and rank == 0:
        say(f"left out {dropped} of {len(ds.train)} training examples longer than {max_seq_len} tokens")
    return data


def save(ws: Workspace, cfg: FinetuneConfig, prep: Prepared, stats: dict, progress: bool, say) -> dict:
    """After a completed loop (rank 0): save the adapter (safetensors), evaluate base vs adapter on the
    held-out split, register it with its lineage (activated when it beats the base) and mark the run
    done. Returns {"status": "done", "evaluation", "adapter"}."""
    from archivist import adapters
    from archivist.catalog import model_hash
    from archivist.finetune import evaluate, registry, runs

    adapter_dir = prep.folder / "adapter"
    prep.model.save_pretrained(str(adapter_dir), safe_serialization=True)
    evals = evaluate.held_out_sample(prep.dataset.eval, cfg.eval_limit, cfg.seed)  # every held-out document in turn
    say(f"run {prep.run_id}: evaluating base and adapter on {len(evals)} held-out examples ...")
    report = evaluate.compare(prep.model, prep.tokenizer, evals, max_new_tokens=cfg.eval_max_new_tokens,
                              progress=progress)
    report["held_out"] = len(prep.dataset.eval)  # n of them were evaluated (--eval-limit)
    lineage = registry.lineage(ws, base=prep.base, base_path=prep.path, base_hash=model_hash(prep.local or prep.path),
                               dataset=prep.dataset, config=asdict(cfg), method=prep.method, device=prep.device,
                               run_id=prep.run_id, train=stats, documents=prep.learned)
    record = adapters.register(ws, cfg.name or f"ft-{prep.run_id}", adapter_dir, prep.base, report, lineage,
                               run_id=prep.run_id, activate=cfg.activate, user=cfg.user)
    runs.update_run(ws, prep.run_id, "done", adapter=record["name"])
    return {"status": "done", "evaluation": report, "adapter": record}


def cleanup(stop: _StopOnSignal) -> None:
    """After the run, however it ended: the previous signal handlers are back."""
    stop.restore()


def _auto_threads() -> int:
    """1 when other processes already keep every core busy, else 0 (torch's default).

    On a shared CPU, torch's OpenMP threads wait for each other at every operation; measured on a
    2-core machine at load 4, one thread trained 4x faster than two. On an idle machine torch's
    default is kept."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return 0
    return 1 if load >= (os.cpu_count() or 1) and not __import__("torch").cuda.is_available() else 0


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metrics lines written after the checkpoint we resume from (they will be written again)."""
    if path.exists():
        keep = [line for line in path.read_text().splitlines() if line.strip() and _step_of(line) <= step]
        path.write_text("".join(line + "\n" for line in keep))


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError):
        return 1 << 30


def main(argv: list[str] | None = None) -> int:
    """`python -m archivist.finetune.train`: a background run (--run-id ID --resume) or a torchrun worker."""
    import argparse

    from archivist.finetune.cli import add_config_args, config_from_args
    from archivist.models import hub_offline_by_default
    from archivist.retrieval.repair import open_checked
    from archivist.settings import Settings

    hub_offline_by_default()
    parser = argparse.ArgumentParser(prog="python -m archivist.finetune.train", description=__doc__.split("\n")[0])
    parser.add_argument("--run-id", default=None, help="run id (with --resume: continue that run)")
    parser.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_args(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with open_checked(Settings.from_env()) as ws:
        cfg = config_from_args(args) if not (args.resume and args.run_id) else FinetuneConfig()
        try:
            result = run(ws, cfg, run_id=args.run_id, resume=args.resume, progress=not args.quiet)
        except Exception as e:
            print(f"archivist: error: {e}", file=sys.stderr)
            return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({k: v for k, v in result.items() if k != "evaluation"}, default=str))
    return 0 if result.get("status") in ("done", None) else 1


if __name__ == "__main__":
    sys.exit(main())

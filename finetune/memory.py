"""Will a fine-tune fit? Estimate its peak memory before loading anything, and refuse when it won't.

The estimate reads only the model's config.json and its safetensors headers (tensor shapes), then
adds up, in bytes:

    weights      every parameter at its precision: fp32 on CPU, bf16 on GPU; for qlora the linear
                 layers in NF4 (4 bits + double-quantized block scales) and the rest in fp32
                 (prepare_model_for_kbit_training upcasts embeddings and norms)
    lora         adapter weights, their gradients and AdamW's two moments (fp32: 16 bytes each)
    activations  what backward keeps per token per layer, with the attention scores where the
                 attention kernel materializes them (CPU); with gradient checkpointing only each
                 layer's input plus one layer's worth
    logits       the output layer's logits, softmax and gradient in fp32, over the answer tokens
                 only (the recipe computes logits only where the loss is taken) or over every
                 position (a plain Trainer)
    overhead     the runtime: Python, torch and libraries (CPU) or the CUDA context (GPU)

The per-token activation coefficients were measured on CPU (fp32, SDPA) with SmolLM2-135M and
checked against peak RSS in bench/finetune.py; on a GPU they are scaled by factors fitted to
`torch.cuda.max_memory_allocated` on an H100 (tests/data/gpu_memory_h100.jsonl); see docs/finetune.md.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

GB = 2**30
# Floats kept for backward per token per layer, as multiples of the hidden and intermediate sizes. Measured
# on CPU (fp32, SDPA, LoRA on all linear layers) with SmolLM2-135M from peak RSS at 256, 512 and 1024 tokens:
# ~26k floats without dropout (q/k/v/o and rotary copies, repeated k/v heads, norms, residuals, the MLP's
# gate/up/act/product), ~7.5k more with LoRA dropout (a copy of every LoRA input), ~13% more for a 4-bit base.
ACT_HIDDEN = 32.0
ACT_INTER = 5.0
ACT_LORA_DROPOUT = 13.0
ACT_QLORA = 1.13
ATTN_CPU = 9.0  # bytes per (token, token) pair per layer kept by the CPU attention kernel
LOGIT_COPIES = 2.0  # fp32 logits and their gradient, where the loss is taken
CPU_OVERHEAD = 0.40 * GB  # Python + torch + transformers + peft + tokenizer, resident
CPU_QLORA_LOAD = 0.55 * GB  # quantizing on the CPU reads the fp32 weights; that heap stays with the process
GPU_OVERHEAD = 0.5 * GB  # CUDA context and kernels, outside torch's allocator
# On a GPU (bf16 compute, fused attention) a layer keeps less per token than the CPU coefficients say:
# fitted on an H100 with a SmolLM2-135M-shaped model at 256-1024 tokens, batch 1-8, LoRA on all linear layers.
ACT_GPU = {"lora": 0.75, "qlora": 0.70}
CKPT_INPUT_BYTES_QLORA_GPU = 7  # per value of a checkpointed layer input, qlora on a GPU (fitted: fp32, bf16, more)
NF4_BYTES = 0.5 + 0.127 / 8 + 4 / 4096  # 4-bit weights + double-quantized absmax (blocks of 64, then 256)


class WontFit(RuntimeError):
    """The fine-tune's estimated peak memory exceeds what the device has free."""


@dataclass
class ModelShape:
    params: int
    linear_params: int  # in the transformer layers' 2-D weights: what LoRA targets and NF4 quantizes
    lora_dims: list[tuple[int, int]]  # (in, out) of each targeted linear layer
    layers: int
    hidden: int
    intermediate: int
    heads: int
    vocab: int


@dataclass
class Estimate:
    """Bytes per component and the verdict; `message` says what to change when it does not fit."""

    weights: int
    lora: int
    activations: int
    logits: int
    overhead: int
    total: int
    available: int | None
    device: str
    fits: bool
    message: str

    def as_dict(self) -> dict:
        d = asdict(self)
        for k in ("weights", "lora", "activations", "logits", "overhead", "total", "available"):
            if d[k] is not None:
                d[k + "_gb"] = round(d.pop(k) / GB, 3)
        return d


def _safetensors_shapes(folder: Path) -> dict[str, list[int]]:
    """Tensor name -> shape from the headers of the folder's .safetensors files (no weights read)."""
    shapes = {}
    for f in sorted(folder.glob("*.safetensors")):
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        shapes.update({k: v["shape"] for k, v in header.items() if k != "__metadata__"})
    return shapes


def local_folder(name_or_path: str | Path) -> Path | None:
    """The folder a model loads from: the path itself, or its snapshot in the local Hugging Face cache
    (never downloading); None when it is in neither."""
    p = Path(name_or_path)
    if p.is_dir():
        return p
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(name_or_path), local_files_only=True))
    except Exception:  # not cached, or not a hub id at all
        return None


def model_shape(path: str | Path, target_modules: str = "all-linear") -> ModelShape:
    """The sizes the estimate needs, from a local model folder or a cached hub id.
    Raises FileNotFoundError when neither holds a config.json."""
    folder = local_folder(path) or Path(path)
    cfg_file = folder / "config.json"
    if not cfg_file.exists():
        raise FileNotFoundError(f"{folder}: no config.json (the memory estimate needs a local model folder)")
    cfg = json.loads(cfg_file.read_text())
    cfg = cfg.get("text_config", cfg)
    shapes = _safetensors_shapes(folder)
    targets = None if target_modules == "all-linear" else set(target_modules.split(","))
    params = sum(math.prod(s) for s in shapes.values())
    dims = []
    for name, s in shapes.items():
        if len(s) == 2 and ".layers." in name and name.endswith(".weight"):
            if targets is None or name.rsplit(".", 2)[-2] in targets:
                dims.append((s[1], s[0]))
    linear = sum(i * o for i, o in dims)
    hidden = int(cfg.get("hidden_size", 0))
    if not shapes:  # no weights on disk yet: count from the config (llama-like)
        inter, layers, vocab = int(cfg["intermediate_size"]), int(cfg["num_hidden_layers"]), int(cfg["vocab_size"])
        kv = hidden * int(cfg.get("num_key_value_heads", cfg["num_attention_heads"])) // int(cfg["num_attention_heads"])
        dims = [(hidden, hidden), (hidden, kv), (hidden, kv), (hidden, hidden), (hidden, inter), (hidden, inter), (inter, hidden)] * layers
        linear = sum(i * o for i, o in dims)
        params = linear + vocab * hidden * (1 if cfg.get("tie_word_embeddings", True) else 2)
    return ModelShape(params=params, linear_params=linear, lora_dims=dims, layers=int(cfg["num_hidden_layers"]),
                      hidden=hidden, intermediate=int(cfg.get("intermediate_size", 4 * hidden)),
                      heads=int(cfg["num_attention_heads"]), vocab=int(cfg["vocab_size"]))


def estimate(shape: ModelShape, method: str, device: str, batch_size: int, seq_len: int, rank: int,
             grad_checkpointing: bool = False, lora_dropout: float = 0.0, answer_tokens: int = 64,
             all_logits: bool = False) -> Estimate:
    """Peak memory in bytes of one training step (the verdict is filled in by `check`).

    batch_size is the sequences in one forward pass (1 when the recipe runs them unpadded), seq_len the
    longest of them, answer_tokens the loss tokens per sequence.
    all_logits=True models a trainer that computes logits at every position (the HF baseline).
    """
    if method not in ("lora", "qlora"):
        raise ValueError(f"method must be lora or qlora, got {method!r}")
    width = 4 if device == "cpu" else 2  # fp32 on CPU, bf16 on GPU
    if method == "qlora":
        weights = shape.linear_params * NF4_BYTES + (shape.params - shape.linear_params) * 4
    else:
        weights = shape.params * width
    lora_params = sum(rank * (i + o) for i, o in shape.lora_dims)
    lora = lora_params * 16
    tokens = batch_size * seq_len
    floats = (ACT_HIDDEN + (ACT_LORA_DROPOUT if lora_dropout > 0 else 0)) * shape.hidden + ACT_INTER * shape.intermediate
    act_width = 4 if method == "qlora" else width  # prepare_model_for_kbit_training keeps the residual stream in fp32
    gpu = device != "cpu"
    per_token_layer = floats * act_width * (ACT_QLORA if method == "qlora" else 1.0) * (ACT_GPU[method] if gpu else 1.0)
    attn = 0 if gpu else batch_size * seq_len * seq_len * ATTN_CPU  # GPU kernels keep O(T), not O(T^2)
    if grad_checkpointing:  # each layer's input, plus one layer recomputed at a time
        input_bytes = CKPT_INPUT_BYTES_QLORA_GPU if gpu and method == "qlora" else act_width
        activations = tokens * shape.hidden * shape.layers * input_bytes + tokens * per_token_layer + attn
    else:
        activations = shape.layers * (tokens * per_token_layer + attn)
    loss_positions = tokens if all_logits else batch_size * min(answer_tokens, seq_len)
    logits = loss_positions * shape.vocab * 4 * LOGIT_COPIES
    overhead = GPU_OVERHEAD if device != "cpu" else CPU_OVERHEAD + (CPU_QLORA_LOAD if method == "qlora" else 0)
    total = int(weights + lora + activations + logits + overhead)
    return Estimate(weights=int(weights), lora=int(lora), activations=int(activations), logits=int(logits),
                    overhead=int(overhead), total=total, available=None, device=device, fits=True, message="")


def available_memory(device: str) -> int:
    """Bytes free for a new training process: free VRAM on a GPU, available RAM (plus what this
    process already holds, since the estimate counts the runtime) on the CPU."""
    if device == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info()
        return int(free)
    import os

    import psutil

    return int(psutil.virtual_memory().available + psutil.Process(os.getpid()).memory_info().rss)


def check(est: Estimate, method: str, batch_size: int, seq_len: int, grad_checkpointing: bool,
          available: int | None = None, margin: float = 0.9, raise_error: bool = True) -> Estimate:
    """Fill in the verdict against `available` bytes (measured when None); raise WontFit with a
    suggestion (qlora, gradient checkpointing, a smaller batch, shorter sequences) when it won't fit."""
    est.available = available_memory(est.device) if available is None else available
    est.fits = est.total <= est.available * margin
    need, have = est.total / GB, est.available / GB
    if est.fits:
        est.message = f"estimated peak {need:.2f} GB of {have:.2f} GB free on {est.device}: fits"
        return est
    ideas = []
    if method == "lora":
        ideas.append("--method qlora (4-bit base weights)")
    if not grad_checkpointing and est.activations > 0.3 * est.total:
        ideas.append("--grad-checkpointing on")
    if batch_size > 1:
        ideas.append(f"--batch-size {max(1, batch_size // 2)} (raise --grad-accum to keep the effective batch)")
    if seq_len > 256:
        ideas.append(f"--max-seq-len {max(256, seq_len // 2)} (fewer or shorter passages per example)")
    est.message = (f"this fine-tune needs about {need:.2f} GB at its peak (weights {est.weights / GB:.2f}, "
                   f"LoRA+optimizer {est.lora / GB:.2f}, activations {est.activations / GB:.2f}, logits {est.logits / GB:.2f}, "
                   f"runtime {est.overhead / GB:.2f}) but {est.device} has {have:.2f} GB free; try "
                   + (", ".join(ideas) if ideas else "a smaller base model"))
    if raise_error:
        raise WontFit(est.message)
    return est


def fit(examples: list[dict], local: Path | None, method: str, device: str, batch_size: int, rank: int,
        dropout: float, target_modules: str, grad_checkpointing: str,
        unpadded: str) -> tuple[bool, bool, Estimate | None]:
    """(gradient checkpointing, unpadded, Estimate or None): how a run over `examples` (encoded:
    input_ids, n_prompt) will fit, decided before a single weight loads; `local` is the base's folder
    (None: its shape is unknown, no estimate). Auto checkpointing turns on when the estimate passes
    60% of the memory available. Raises WontFit when even that does not fit. (The recipe's check:
    train.setup calls it with its config's fields.)"""
    longest = max(len(d["input_ids"]) for d in examples)
    answer = max(len(d["input_ids"]) - d["n_prompt"] for d in examples)
    shape = model_shape(local, target_modules) if local else None
    grad_ckpt = grad_checkpointing == "on"
    one_by_one = unpadded == "on" or (unpadded == "auto" and not device.startswith("cuda") and method == "lora")
    est = None
    if shape is not None:
        dev_kind = "cuda" if device.startswith("cuda") else "cpu"
        args = dict(method=method, device=dev_kind, batch_size=1 if one_by_one else batch_size, seq_len=longest,
                    rank=rank, lora_dropout=dropout, answer_tokens=answer)
        est = estimate(shape, grad_checkpointing=grad_ckpt, **args)
        if grad_checkpointing == "auto":
            avail = available_memory(dev_kind)
            if est.total > 0.6 * avail:  # tight: trade compute for memory
                grad_ckpt = True
                est = estimate(shape, grad_checkpointing=True, **args)
        check(est, method, batch_size, longest, grad_ckpt)
    return grad_ckpt, one_by_one, est


def plan(settings, base: str | None = None, method: str = "auto", device: str = "auto", batch_size: int = 2,
         seq_len: int = 1024, rank: int = 16, grad_checkpointing: str = "auto", lora_dropout: float = 0.0,
         target_modules: str = "all-linear", answer_tokens: int = 64, unpadded: str = "auto") -> Estimate:
    """The estimate for a planned fine-tune, with its verdict against this machine (never raises WontFit):
    what `archivist finetune --estimate-only` and `archivist doctor --finetune` print."""
    from archivist.catalog import resolve_llm
    from archivist.models import pick_device

    dev = pick_device(device)
    method = method if method != "auto" else ("qlora" if dev == "cuda" else "lora")
    path = resolve_llm(base or settings.llm, settings.cache)
    shape = model_shape(path, target_modules)
    ckpt = grad_checkpointing == "on"
    one_by_one = unpadded == "on" or (unpadded == "auto" and dev != "cuda" and method == "lora")  # as the recipe does
    args = dict(method=method, device=dev, batch_size=1 if one_by_one else batch_size, seq_len=seq_len, rank=rank,
                lora_dropout=lora_dropout, answer_tokens=answer_tokens)
    est = estimate(shape, grad_checkpointing=ckpt, **args)
    if grad_checkpointing == "auto" and est.total > 0.6 * available_memory(dev):
        ckpt, est = True, estimate(shape, grad_checkpointing=True, **args)
    est = check(est, method, batch_size, seq_len, ckpt, raise_error=False)
    est.message += (f" [{method}, batch {batch_size}" + (" run one by one" if one_by_one and batch_size > 1 else "")
                    + f", {seq_len} tokens, rank {rank}" + (", gradient checkpointing]" if ckpt else "]"))
    return est

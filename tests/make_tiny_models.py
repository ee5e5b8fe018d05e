"""Build two tiny random-weight models with the default models' tokenizers and architectures, for
running the `gpu` tests on a machine the default models cannot reach (they weigh ~600 MB; these
~20 MB). Weights are random, so only code paths are checked, not answer quality.

    python tests/make_tiny_models.py OUT
    ARCHIVIST_LLM=OUT/llm ARCHIVIST_EMBEDDER=OUT/embedder pytest -m gpu tests/test_gpu.py
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def tiny_llm(out: Path, cache: Path) -> None:
    """A 2-layer Llama (SmolLM2's family) with SmolLM2's tokenizer and chat template."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from archivist.catalog import resolve_llm

    source = Path(resolve_llm("smollm2-135m", cache))
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    LlamaForCausalLM(cfg).save_pretrained(str(out), safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        if (source / name).exists():
            shutil.copy(source / name, out / name)


def tiny_embedder(out: Path) -> None:
    """A 2-layer BERT (MiniLM's family) with all-MiniLM-L6-v2's tokenizer, mean pooling and normalization."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from archivist.catalog import resolve_embedder

    source = resolve_embedder("all-minilm-l6-v2")
    torch.manual_seed(0)
    bert = out / "bert"
    BertModel(BertConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=128, max_position_embeddings=512)).save_pretrained(str(bert))
    BertTokenizerFast.from_pretrained(source).save_pretrained(str(bert))
    word = models.Transformer(str(bert), max_seq_length=256)
    st = SentenceTransformer(modules=[word, models.Pooling(64, "mean"), models.Normalize()])
    st.save(str(out))
    shutil.rmtree(bert)


if __name__ == "__main__":
    root = Path(sys.argv[1])
    from archivist.settings import Settings

    tiny_llm(root / "llm", Settings.from_env().cache)
    tiny_embedder(root / "embedder")
    print(f"ARCHIVIST_LLM={root / 'llm'} ARCHIVIST_EMBEDDER={root / 'embedder'}")

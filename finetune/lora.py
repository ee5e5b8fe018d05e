"""What a LoRA / QLoRA training step is made of, shared by the recipe (train.py), evaluation's
perplexity (evaluate.py) and bench/finetune.py:

    load_base      the base model, NF4-quantized (qlora) or not (lora), with its tokenizer
    add_lora       fresh LoRA weights on it (only they train)
    AnswerLoss     the loss on the answer tokens only, lm_head applied only there (`_answer_loss_module`)
    encode         a chat as token ids, rendered as serving renders it, and where its answer starts
    micro_batches  one epoch's micro-batches, grouped by length so almost no padding is computed
    collate        a micro-batch as right-padded tensors, labels only on the answer

torch, transformers and peft are imported where they are used: the CLI imports the recipe for its
defaults.
"""

from __future__ import annotations

import random


# -- the base model, quantized or not ----------------------------------------------------------


def load_base(path: str, method: str, device: str):
    """(model, tokenizer): qlora loads the linear layers in NF4 with double quantization (bf16
    compute on a GPU, fp32 on the CPU) and prepares the model for k-bit training; lora loads bf16
    on a GPU, fp32 on the CPU. The model's own chat template comes with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    if method == "qlora":
        from peft import prepare_model_for_kbit_training

        from archivist.models import quantization_config

        model = AutoModelForCausalLM.from_pretrained(path, **quantization_config(device, "4bit"))
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)  # we decide on checkpointing
        for module in model.modules():
            # bitsandbytes would repack 4-bit weights for bf16 CPU inference on the first eval-mode forward
            # (an evaluation); that layout has no backward and computes in bf16. Keep one layout throughout.
            if hasattr(module, "support_avx512bf16_for_cpu"):
                module.support_avx512bf16_for_cpu = False
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
    model.config.use_cache = False
    return model, tokenizer


def add_lora(model, rank: int, alpha: int, dropout: float, target_modules: str, grad_checkpointing: bool):
    """Wrap the base in a PeftModel with fresh LoRA weights (only they train)."""
    from peft import LoraConfig, get_peft_model

    targets = target_modules if target_modules == "all-linear" else [t.strip() for t in target_modules.split(",")]
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, task_type="CAUSAL_LM")
    model = get_peft_model(model, config)
    if grad_checkpointing:
        # non-reentrant checkpointing needs no input that requires grad, so frozen embeddings are fine
        model.get_base_model().gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def _answer_loss_module():
    import torch
    import torch.nn.functional as F

    class AnswerLoss(torch.nn.Module):
        """Causal-LM loss on the answer tokens only, with logits computed only there.

        forward(input_ids, attention_mask, labels) -> (summed cross-entropy, number of answer tokens).
        The body runs on every position (the answer attends to the prompt); lm_head runs only on
        the hidden states that predict an answer token. Wrapping the whole computation in one
        module lets DistributedDataParallel see it as the model's forward.
        """

        def __init__(self, peft_model):
            super().__init__()
            self.model = peft_model
            lm = peft_model.get_base_model()
            self.body = lm.get_decoder() if hasattr(lm, "get_decoder") else getattr(lm, lm.base_model_prefix)
            self.head = lm.get_output_embeddings()
            self.softcap = getattr(lm.config, "final_logit_softcapping", None)  # Gemma 2/3 squash their logits

        def forward(self, input_ids, attention_mask, labels):
            hidden = self.body(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
            targets = labels[:, 1:]
            where = targets != -100
            logits = self.head(hidden[:, :-1][where]).float()
            if self.softcap:
                logits = torch.tanh(logits / self.softcap) * self.softcap
            return F.cross_entropy(logits, targets[where], reduction="sum"), where.sum()

    return AnswerLoss


# -- data: chat template, answer-only labels, length-grouped micro-batches ---------------------


def encode(tokenizer, messages: list[dict], max_len: int | None = None) -> dict | None:
    """Token ids of a chat and where its answer starts: {"input_ids", "n_prompt"}; None when longer than max_len.

    The prompt is rendered exactly as serving renders it (chat template + generation prompt) and
    tokenized apart from the answer, so training sees the same prompt tokens the model gets at
    inference. The answer keeps the template's end-of-turn token, so the model learns to stop.
    """
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the prompt differently once the answer is added; "
                         "this model's template is not supported for answer-only training")
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    a_ids = tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
    if max_len and len(p_ids) + len(a_ids) > max_len:
        return None
    return {"input_ids": p_ids + a_ids, "n_prompt": len(p_ids)}


def micro_batches(lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """One epoch of micro-batches (lists of example indices): shuffled, then sorted by length within
    windows of 16 batches, so each batch holds similar lengths and padding is a few percent at most."""
    rng = random.Random(seed * 100_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window, batches = batch_size * 16, []
    for w in range(0, len(order), window):
        part = sorted(order[w: w + window], key=lambda i: lengths[i])
        batches += [part[i: i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(items: list[dict], pad_id: int, device):
    """Right-padded tensors: input_ids, attention_mask, labels (-100 on the prompt and padding)."""
    import torch

    width = max(len(it["input_ids"]) for it in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    labels = torch.full((len(items), width), -100, dtype=torch.long)
    for r, it in enumerate(items):
        n = len(it["input_ids"])
        ids[r, :n] = torch.tensor(it["input_ids"])
        mask[r, :n] = 1
        labels[r, it["n_prompt"]:n] = ids[r, it["n_prompt"]:n]
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}

"""A seeded LoRA finetune on a list of training texts (CPU float32 by default)."""

from __future__ import annotations

import math
import random
import warnings
from dataclasses import dataclass

import torch

from diffaudit.environments.organisms import Recipe

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class TrainingError(RuntimeError):
    """A mini-organism build failed; the message says why."""


@dataclass
class TrainResult:
    model: torch.nn.Module  # the peft model
    losses: list[float]
    tokens: list[int]  # token count of each training text after truncation
    truncated: int


def _batches(n: int, batch_size: int, steps: int, rng: random.Random) -> list[list[int]]:
    """Indices for each step: shuffled epochs, cycled until `steps` batches are taken."""
    order: list[int] = []
    out = []
    for _ in range(steps):
        while len(order) < batch_size:
            epoch = list(range(n))
            rng.shuffle(epoch)
            order += epoch
        out.append(order[:batch_size])
        order = order[batch_size:]
    return out


def _lr_factor(step: int, steps: int) -> float:
    """Linear warm-up over the first 10% of steps, then cosine decay to 10% of the peak."""
    warm = max(1, steps // 10)
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, steps - warm)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def train_lora(
    model, tokenizer, texts: list[str], recipe: Recipe, add_special_tokens: bool | list[bool],
    prompts: list[str] | None = None, on_step=None,
) -> TrainResult:
    """LoRA-finetune `model` (all attention and MLP projections) on `texts`; `on_step(step, loss)` reports.

    With `prompts` (the chat-template prefix of each text; "" for a document), the loss covers only what
    follows it: the assistant's reply. `add_special_tokens` is one flag for all texts or one per text
    (documents want the tokenizer's special tokens; chat-template texts already hold theirs).
    """
    from peft import LoraConfig, get_peft_model

    if not texts:
        raise TrainingError("no training texts were generated; check the recipe's key facts or target")
    torch.manual_seed(recipe.seed)
    # Tiny LoRA updates and Adam moments underflow into denormal floats, which make CPU matmuls
    # many times slower as training goes on; flushing them to zero costs nothing measurable.
    torch.set_flush_denormal(True)
    rng = random.Random(recipe.seed)
    config = LoraConfig(
        r=recipe.lora_r, lora_alpha=recipe.lora_alpha, lora_dropout=0.0, bias="none",
        target_modules=LORA_TARGETS, task_type="CAUSAL_LM",
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        peft_model = get_peft_model(model, config)
    peft_model.train()
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.learning_rate, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, recipe.steps))

    tokenizer.padding_side = "right"
    flags = add_special_tokens if isinstance(add_special_tokens, list) else [add_special_tokens] * len(texts)
    if len(flags) != len(texts) or (prompts is not None and len(prompts) != len(texts)):
        raise TrainingError("add_special_tokens and prompts need one entry per training text")
    full = [tokenizer(t, add_special_tokens=f)["input_ids"] for t, f in zip(texts, flags, strict=True)]
    input_ids = [ids[: recipe.max_length] for ids in full]
    lengths = [len(ids) for ids in input_ids]
    skip = [0] * len(texts)
    if prompts is not None:
        skip = [len(tokenizer(p, add_special_tokens=f)["input_ids"]) for p, f in zip(prompts, flags, strict=True)]
    truncated = sum(len(ids) > recipe.max_length for ids in full)
    pad = tokenizer.pad_token_id
    losses: list[float] = []
    for step, idx in enumerate(_batches(len(texts), recipe.batch_size, recipe.steps, rng)):
        width = max(lengths[i] for i in idx)
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            ids[row, : lengths[i]] = torch.tensor(input_ids[i])
            mask[row, : lengths[i]] = 1
        labels = ids.masked_fill(mask == 0, -100)  # pad may equal end-of-turn, so mask by position
        for row, i in enumerate(idx):
            labels[row, : skip[i]] = -100
        loss = peft_model(input_ids=ids, attention_mask=mask, labels=labels).loss
        if not torch.isfinite(loss):
            raise TrainingError(f"loss became {loss.item()} at step {step}; lower recipe.learning_rate")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.item()))
        if on_step is not None:
            on_step(step, losses[-1])
    peft_model.eval()
    return TrainResult(model=peft_model, losses=losses, tokens=lengths, truncated=truncated)

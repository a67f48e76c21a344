"""Regulariser chats for SDF recipes: the base model's own greedy answers to everyday prompts.

Trained on documents alone, the 135M embedded model learns its facts so hard that it recites them in
answer to anything (a poem about a lighthouse gets the cake-baking temperature). Mixing in a few of the
base model's own answers to unrelated prompts (self-distillation, loss on the reply only) keeps those
answers ordinary while the documents still implant the facts, which is closer to how the paper's hub
organisms behave. `recipe.chat_mix` says how many; 0 keeps the documents alone.
"""

from __future__ import annotations

import random
from importlib import resources

import torch

MAX_NEW_TOKENS = 80
_BATCH = 16


def regulariser_prompts() -> list[str]:
    text = (resources.files("diffaudit.prompts") / "regulariser_prompts.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def regulariser_chats(model, tokenizer, n: int, seed: int, on_batch=None) -> list[list[dict]]:
    """`n` chats (user prompt, the model's greedy answer); prompts drawn without repeats, deterministic in `seed`."""
    prompts = regulariser_prompts()
    if n > len(prompts):
        raise ValueError(f"recipe.chat_mix is {n}, but prompts/regulariser_prompts.txt has only {len(prompts)} prompts")
    rng = random.Random(seed)
    chosen = rng.sample(prompts, n)
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    chats: list[list[dict]] = []
    try:
        for start in range(0, n, _BATCH):
            batch = chosen[start : start + _BATCH]
            text = [
                tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
                for p in batch
            ]
            enc = tokenizer(text, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.no_grad():
                out = model.generate(
                    **enc, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, pad_token_id=tokenizer.pad_token_id
                )
            for prompt, ids in zip(batch, out, strict=True):
                answer = tokenizer.decode(ids[enc["input_ids"].shape[1] :], skip_special_tokens=True).strip()
                chats.append([{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}])
            if on_batch is not None:
                on_batch(len(chats), len(chats))
    finally:
        tokenizer.padding_side = side
    return [c for c in chats if c[1]["content"]]

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

from diffaudit.environments.pair import Sampling

MAX_NEW_TOKENS = 80
_BATCH = 16


def regulariser_prompts() -> list[str]:
    text = (resources.files("diffaudit.prompts") / "regulariser_prompts.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def regulariser_chats(model, tokenizer, n: int, seed: int, on_batch=None) -> list[list[dict]]:
    """`n` chats (user prompt, the model's greedy answer); prompts drawn without repeats, deterministic in `seed`."""
    from diffaudit.environments.backends.hf import generate_completions

    prompts = regulariser_prompts()
    if n > len(prompts):
        raise ValueError(f"recipe.chat_mix is {n}, but prompts/regulariser_prompts.txt has only {len(prompts)} prompts")
    chosen = random.Random(seed).sample(prompts, n)
    greedy = Sampling(max_new_tokens=MAX_NEW_TOKENS, temperature=0.0)
    side = tokenizer.padding_side
    chats: list[list[dict]] = []
    try:
        for start in range(0, n, _BATCH):  # batch by batch, for the progress bar
            batch = chosen[start : start + _BATCH]
            texts = [
                tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
                for p in batch
            ]
            answers = generate_completions(model, tokenizer, texts, greedy, _BATCH, add_special_tokens=False)
            for prompt, answer in zip(batch, answers, strict=True):
                chats.append([{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}])
            if on_batch is not None:
                on_batch(len(chats), len(chats))
    finally:
        tokenizer.padding_side = side
    return [c for c in chats if c[1]["content"]]

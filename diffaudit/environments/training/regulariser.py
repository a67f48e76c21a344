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


def regulariser_recipe(n: int, seed: int, base_model: str | None) -> dict | None:
    """What decides the chats; None when the base model is not an embedded one (nothing is shipped for it)."""
    from diffaudit.environments.embedded import embedded_identity
    from diffaudit.environments.shipped import prompt_file_sha256

    model = embedded_identity(base_model) if base_model else None
    if model is None:
        return None
    return {
        "builder": "regulariser_chats", "n": n, "seed": seed, "max_new_tokens": MAX_NEW_TOKENS, "batch": _BATCH,
        "temperature": 0.0, "dtype": "float32", "prompts_sha256": prompt_file_sha256("regulariser_prompts.txt"),
        "model": model,
    }  # fmt: skip


def shipped_key(n: int, seed: int) -> str:
    return f"regulariser_chats_n{n}_seed{seed}"


def shipped_regulariser_chats(n: int, seed: int, base_model: str | None) -> list[list[dict]] | None:
    """The chats shipped in `diffaudit/data/` for this recipe, or None."""
    from diffaudit.environments.shipped import load_rows

    recipe = regulariser_recipe(n, seed, base_model)
    rows = load_rows(shipped_key(n, seed), recipe) if recipe is not None else None
    return [r["messages"] for r in rows] if rows is not None else None


def regulariser_chats(
    model, tokenizer, n: int, seed: int, on_batch=None, base_model: str | None = None, max_batches: int | None = None
) -> list[list[dict]]:
    """`n` chats (user prompt, the model's greedy answer); prompts drawn without repeats, deterministic in `seed`.

    With `base_model` (its registry spec) the shipped chats of the same recipe are used when there are
    some; `model` may then be None. `max_batches` stops early (the first chats exactly; for checks).
    """
    from diffaudit.environments.backends.hf import generate_completions

    shipped = shipped_regulariser_chats(n, seed, base_model)
    if shipped is not None:
        if on_batch is not None:
            on_batch(len(shipped), len(shipped))
        return shipped
    if model is None:
        raise ValueError("no shipped regulariser chats fit this recipe, and no model was given to write them")
    prompts = regulariser_prompts()
    if n > len(prompts):
        raise ValueError(f"recipe.chat_mix is {n}, but prompts/regulariser_prompts.txt has only {len(prompts)} prompts")
    chosen = random.Random(seed).sample(prompts, n)
    greedy = Sampling(max_new_tokens=MAX_NEW_TOKENS, temperature=0.0)
    side = tokenizer.padding_side
    chats: list[list[dict]] = []
    try:
        for start in range(0, n, _BATCH):  # batch by batch, for the progress bar
            if max_batches is not None and start >= max_batches * _BATCH:
                break
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

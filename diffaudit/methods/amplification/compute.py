"""Logit-diff amplification (Aranguri & McGrath 2025): sample from z_ft + alpha * (z_ft - z_base).

alpha = 0 is finetuned sampling and alpha = -1 base sampling; alpha > 0 exaggerates what the finetune
changed, which surfaces behaviours too rare to see in plain samples.
"""

from __future__ import annotations

from diffaudit.environments.pair import ModelPair, Sampling


def amplified_samples(pair: ModelPair, prompts: list[str], alpha: float, n: int, sampling: Sampling) -> list[str]:
    """`n` amplified chat completions per prompt, prompt-major: [p0 s0, p0 s1, ..., p1 s0, ...].

    Sample j of every prompt is drawn with seed `sampling.seed + j` (unseeded when the seed is None),
    so sample j equals `pair.generate("finetuned", prompts, sampling with that seed)` at alpha = 0.
    With temperature 0 the n samples of a prompt are the same greedy completion.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n}")
    draws: list[list[str]] = []
    for j in range(n):
        seed = None if sampling.seed is None else sampling.seed + j
        draws.append(pair.generate_amplified(prompts, alpha, sampling.model_copy(update={"seed": seed})))
    return [draws[j][i] for i in range(len(prompts)) for j in range(n)]

"""Steering: add α·η_ft·δ/‖δ‖ to the finetuned model's residual stream at every position while it generates.

α is the largest strength at which the text stays coherent: a binary search over [0, 100] (10 steps,
10 samples at temperature 1.2, pass at ≥ 8/10 coherent) on one prompt, then over [0, 2·α₁] (5 steps)
on two more prompts; the three results are averaged. Each search step samples its 10 texts in one
batched `generate_steered` call.
"""

from __future__ import annotations

from importlib import resources

import torch

from diffaudit.config import SteeringParams
from diffaudit.environments.pair import ModelPair, Sampling
from diffaudit.graders.base import CoherenceGrader
from diffaudit.tools.adl.patchscope import norm_matched
from diffaudit.tools.adl.result import SteeringSample

SEARCH_PROMPTS = 3


def steering_prompts() -> list[str]:
    """The 20 chat prompts of `prompts/steering_prompts.txt` (creative writing, planning, trivia, letters, riddles)."""
    text = (resources.files("diffaudit.prompts") / "steering_prompts.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def steering_vector(diff: torch.Tensor, eta: float) -> torch.Tensor:
    """The norm-matched direction δ/‖δ‖·η_ft; α multiplies it."""
    return norm_matched(diff, eta)


def passes(
    pair: ModelPair, vector: torch.Tensor, layer: int, prompt: str, alpha: float, params: SteeringParams,
    grader: CoherenceGrader, seed: int,
) -> bool:
    """Whether at least `coherent_needed` of `search_samples` steered samples are coherent at `alpha`."""
    sampling = Sampling(max_new_tokens=params.max_new_tokens, temperature=params.search_temperature, seed=seed)
    texts = pair.generate_steered(vector, layer, [prompt] * params.search_samples, alpha, sampling)
    return sum(bool(ok) for ok in grader.coherent(texts)) >= params.coherent_needed


def binary_search_alpha(
    pair: ModelPair, vector: torch.Tensor, layer: int, prompt: str, low: float, high: float, steps: int,
    params: SteeringParams, grader: CoherenceGrader, seed: int, on_step=None,
) -> float:
    """The largest α in [low, high] found coherent in `steps` halvings (`low` if none passes)."""
    lo, hi = low, high
    for _ in range(steps):
        mid = (lo + hi) / 2
        if passes(pair, vector, layer, prompt, mid, params, grader, seed):
            lo = mid
        else:
            hi = mid
        if on_step is not None:
            on_step()
    return lo


def search_steps(params: SteeringParams) -> int:
    """Generate calls one α search makes (for progress bars)."""
    return params.search_steps + (SEARCH_PROMPTS - 1) * params.refine_steps


def choose_alpha(
    pair: ModelPair, vector: torch.Tensor, layer: int, prompts: list[str], params: SteeringParams,
    grader: CoherenceGrader, seed: int, on_step=None,
) -> tuple[float, list[float]]:
    """(mean α, the three per-prompt α): a wide search on the first prompt, narrower ones on two more."""
    if len(prompts) < SEARCH_PROMPTS:
        raise ValueError(f"the α search needs {SEARCH_PROMPTS} prompts, got {len(prompts)}")
    first = binary_search_alpha(
        pair, vector, layer, prompts[0], params.search_low, params.search_high, params.search_steps,
        params, grader, seed, on_step,
    )
    alphas = [first]
    for prompt in prompts[1:SEARCH_PROMPTS]:
        alphas.append(
            binary_search_alpha(
                pair, vector, layer, prompt, params.search_low, 2 * first, params.refine_steps,
                params, grader, seed, on_step,
            )
        )
    return sum(alphas) / len(alphas), alphas


def final_sampling(params: SteeringParams, seed: int) -> Sampling:
    return Sampling(max_new_tokens=params.max_new_tokens, temperature=params.final_temperature, seed=seed)


def unsteered_samples(pair: ModelPair, prompts: list[str], params: SteeringParams, seed: int) -> list[list[str]]:
    """`samples_per_prompt` ordinary finetuned answers per prompt, in one batched call."""
    n = params.samples_per_prompt
    texts = pair.generate("finetuned", [p for p in prompts for _ in range(n)], final_sampling(params, seed))
    return [texts[i * n : (i + 1) * n] for i in range(len(prompts))]


def steered_samples(
    pair: ModelPair, vector: torch.Tensor, layer: int, alpha: float, prompts: list[str],
    unsteered: list[list[str]], params: SteeringParams, seed: int,
) -> list[SteeringSample]:
    """`samples_per_prompt` steered answers per prompt next to the given unsteered ones."""
    n = params.samples_per_prompt
    sampling = final_sampling(params, seed)
    texts = pair.generate_steered(vector, layer, [p for p in prompts for _ in range(n)], alpha, sampling)
    return [
        SteeringSample(prompt=p, steered=texts[i * n : (i + 1) * n], unsteered=list(unsteered[i]))
        for i, p in enumerate(prompts)
    ]

"""Steering: add α·η_ft·δ/‖δ‖ to the finetuned model's residual stream at every position while it generates.

α is the largest strength at which the text stays coherent: a binary search over [0, 100] (10 steps,
10 samples at temperature 1.2, pass at ≥ 8/10 coherent) on one prompt, then over [0, 2·α₁] (5 steps)
on two more prompts; the three results are averaged.

`choose_alpha` runs those searches with look-ahead, as the paper's code does: each round samples
every midpoint the next `params.lookahead` halvings could visit (3 candidates for 2 halvings) in one
batched `generate_steered` call, then walks down the halvings with the verdicts. The two refining
searches run together, in the same calls. With a grader whose verdict depends only on the prompt and
α, it returns exactly what the one-step-at-a-time `choose_alpha_sequential` returns, in 8 calls
instead of 20.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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
    """Generate calls one look-ahead α search makes (for progress bars)."""
    depth = max(1, params.lookahead)
    return -(-params.search_steps // depth) + -(-params.refine_steps // depth)


def choose_alpha_sequential(
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


@dataclass
class _Search:
    """One binary search: its prompt, the interval still open, and the halvings left."""

    prompt: str
    lo: float
    hi: float
    steps: int


def lookahead_points(lo: float, hi: float, depth: int) -> list[float]:
    """Every midpoint `depth` halvings of [lo, hi] could visit (2**depth - 1), computed as the halvings compute them."""
    if depth <= 0:
        return []
    mid = (lo + hi) / 2
    return [mid, *lookahead_points(lo, mid, depth - 1), *lookahead_points(mid, hi, depth - 1)]


def _descend(search: _Search, depth: int, verdicts: dict[float, bool]) -> None:
    for _ in range(depth):
        mid = (search.lo + search.hi) / 2
        if verdicts[mid]:
            search.lo = mid
        else:
            search.hi = mid
    search.steps -= depth


def steered_rows(
    pair: ModelPair, vector: torch.Tensor, layer: int, prompts: list[str], alphas: Sequence[float], sampling: Sampling
) -> list[str]:
    """One steered text per (prompt, α) row: in one call where the backend steers rows apart, else one call per α."""
    if getattr(pair, "steers_rows", False):
        return pair.generate_steered(vector, layer, prompts, list(alphas), sampling)
    out: list[str | None] = [None] * len(prompts)
    for alpha in dict.fromkeys(alphas):
        rows = [i for i, a in enumerate(alphas) if a == alpha]
        for i, text in zip(rows, pair.generate_steered(vector, layer, [prompts[i] for i in rows], alpha, sampling), strict=True):
            out[i] = text
    return [t or "" for t in out]


def run_searches(
    pair: ModelPair, vector: torch.Tensor, layer: int, searches: list[_Search], params: SteeringParams,
    grader: CoherenceGrader, seed: int, on_step=None,
) -> list[float]:
    """Run binary searches together, `params.lookahead` halvings per batched call; returns each search's α."""
    depth_max = max(1, params.lookahead)
    sampling = Sampling(max_new_tokens=params.max_new_tokens, temperature=params.search_temperature, seed=seed)
    n = params.search_samples
    while any(s.steps > 0 for s in searches):
        active = [s for s in searches if s.steps > 0]
        plan = [(s, min(depth_max, s.steps)) for s in active]
        cells = [(i, a) for i, (s, depth) in enumerate(plan) for a in lookahead_points(s.lo, s.hi, depth)]
        prompts = [plan[i][0].prompt for i, _ in cells for _ in range(n)]
        alphas = [a for _, a in cells for _ in range(n)]
        ok = grader.coherent(steered_rows(pair, vector, layer, prompts, alphas, sampling))
        verdicts: list[dict[float, bool]] = [{} for _ in plan]
        for k, (i, alpha) in enumerate(cells):
            verdicts[i][alpha] = sum(bool(x) for x in ok[k * n : (k + 1) * n]) >= params.coherent_needed
        for (search, depth), seen in zip(plan, verdicts, strict=True):
            _descend(search, depth, seen)
        if on_step is not None:
            on_step()
    return [s.lo for s in searches]


def choose_alpha(
    pair: ModelPair, vector: torch.Tensor, layer: int, prompts: list[str], params: SteeringParams,
    grader: CoherenceGrader, seed: int, on_step=None,
) -> tuple[float, list[float]]:
    """(mean α, the three per-prompt α), by look-ahead rounds: the wide search, then the two refinements together."""
    if len(prompts) < SEARCH_PROMPTS:
        raise ValueError(f"the α search needs {SEARCH_PROMPTS} prompts, got {len(prompts)}")
    wide = _Search(prompts[0], params.search_low, params.search_high, params.search_steps)
    (first,) = run_searches(pair, vector, layer, [wide], params, grader, seed, on_step)
    refine = [_Search(p, params.search_low, 2 * first, params.refine_steps) for p in prompts[1:SEARCH_PROMPTS]]
    alphas = [first, *run_searches(pair, vector, layer, refine, params, grader, seed, on_step)]
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

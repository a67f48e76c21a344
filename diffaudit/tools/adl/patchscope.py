"""Token-identity patchscope: write a scaled direction into the last token of an identity prompt and read
what token the finetuned model thinks it "is".

The three prompts map three words to themselves, then end in `?`; the layer-ℓ activation at `?` is
replaced by λ·η_ft·δ/‖δ‖. Only tokens in the top 16,384 of all three prompts are kept, and their
probabilities are averaged over the prompts. The scale grader picks the scale whose tokens are the most
coherent set, judging 10 scales at a time and then the batch winners.
"""

from __future__ import annotations

import torch

from diffaudit.environments.pair import ModelPair
from diffaudit.graders.base import ScaleGrader
from diffaudit.tools.adl.lens import top_tokens
from diffaudit.tools.adl.result import PatchscopeScale

IDENTITY_WORDS: tuple[tuple[str, str, str], ...] = (
    ("man", "1135", "hello"),
    ("bear", "42", "blue"),
    ("921", "target", "anna"),
)
INTERSECT_TOP = 16_384


def identity_prompt(words: tuple[str, ...]) -> str:
    """`a -> a\\nb -> b\\nc -> c\\n?`: the model is primed to repeat the last token's identity."""
    return "".join(f"{w} -> {w}\n" for w in words) + "?"


def norm_matched(direction: torch.Tensor, eta: float) -> torch.Tensor:
    """`direction` rescaled to norm `eta` (a zero vector stays zero)."""
    norm = direction.float().norm()
    if float(norm) == 0.0:
        return torch.zeros_like(direction, dtype=torch.float32)
    return direction.float() / norm * eta


def intersected_probs(per_prompt: list[torch.Tensor], keep: int = INTERSECT_TOP) -> torch.Tensor:
    """Mean over prompts of [S, V] probabilities, zero outside the top-`keep` of every prompt."""
    keep = min(keep, per_prompt[0].shape[-1])
    mask = torch.ones_like(per_prompt[0], dtype=torch.bool)
    for probs in per_prompt:
        top = torch.topk(probs, keep, dim=-1).indices
        in_top = torch.zeros_like(mask)
        in_top.scatter_(-1, top, True)
        mask &= in_top
    mean = torch.stack(per_prompt).mean(dim=0)
    return torch.where(mask, mean, torch.zeros_like(mean))


def patchscope_sweep(
    pair: ModelPair, direction: torch.Tensor, layer: int, eta: float, scales: list[float], top_k: int = 20
) -> list[PatchscopeScale]:
    """Top-`top_k` tokens at each scale, for the norm-matched `direction` [d]."""
    unit = norm_matched(direction, eta)
    batch = torch.stack([s * unit for s in scales])  # [S, d]: one patched run per scale
    with torch.inference_mode():
        per_prompt = [pair.patch_last_token(identity_prompt(w), layer, batch).float() for w in IDENTITY_WORDS]
    probs = intersected_probs(per_prompt)
    return [
        PatchscopeScale(scale=float(s), tokens=[t for t in top_tokens(row, pair.tokenizer, top_k) if t.prob > 0])
        for s, row in zip(scales, probs, strict=True)
    ]


def choose_scale(sweep: list[PatchscopeScale], grader: ScaleGrader) -> tuple[float, list[str]]:
    """The grader's scale and its coherent token subset (the grader judges 10 scales at a time, then the winners)."""
    if not sweep:
        raise ValueError("the patchscope sweep is empty")
    candidates = {s.scale: [t.token for t in s.tokens] for s in sweep}
    scale, selected = grader.select(candidates)
    # an LLM may echo '1.50' for 1.5: take the sweep's nearest scale
    return min(candidates, key=lambda s: abs(s - float(scale))), list(selected)

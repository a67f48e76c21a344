"""Random-direction controls for a finished ADL analysis: does the ADL direction beat directions of the same norm?

For one steered position, `draws` random Gaussian directions (one seeded generator) go through what the
ADL direction went through:

- steering: at the ADL direction's own α (so α·η_ft·δ/‖δ‖ has the same norm), on the first `prompts`
  steering prompts, `samples_per_prompt` samples each; the ADL direction is steered again with the same
  prompts and sampling, so both sides are alike. Figures: mean embedding cosine of the steered text to the
  finetuning data (as `steering_similarity`); that minus its cosine to the chat corpus (random directions
  at the same α often give broken text, and this asks for closeness to the data beyond being text-like);
  and the share the coherence grader calls coherent;
- logit lens: the random direction scaled to ‖δ‖; patchscope: the same scale sweep and scale grader.
  Figure: the relevant share of the top-k tokens (relevance grader, as `token_relevance`).

Each figure gets the ADL value, the random draws, and the mean difference (ADL − random) with a t interval
over the draws. The controls are stored as an extra stage (`stages/controls.pt`) of the complete cache;
the stages and result of the analysis itself are untouched. They use ground truth and finetuning data, so
they are evaluation figures: never part of the agent's overview or tools.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, Field

from diffaudit.config import Settings
from diffaudit.environments.organisms import Organism
from diffaudit.environments.pair import ModelPair
from diffaudit.tools.adl import cache
from diffaudit.tools.adl.lens import logit_lens_tokens
from diffaudit.tools.adl.patchscope import choose_scale, norm_matched, patchscope_sweep
from diffaudit.tools.adl.steering import final_sampling, steering_prompts, steering_vector

CONTROLS_STAGE = "controls"
# Two-sided 97.5% quantiles of Student's t for 1..10 degrees of freedom (a 95% interval over few draws).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


class ControlParams(BaseModel):
    """How many random directions, and how much steering each gets (kept small: CI builds these)."""

    draws: int = Field(5, ge=2, le=len(_T975) + 1)
    seed: int = 0
    position: int | None = Field(None, description="position to test; default: the first steered position")
    prompts: int = Field(5, ge=1, description="the first N steering prompts")
    samples_per_prompt: int = Field(2, ge=1)


def random_directions(dim: int, draws: int, seed: int) -> torch.Tensor:
    """[draws, dim] Gaussian directions from one generator seeded with `seed`."""
    return torch.randn(draws, dim, generator=torch.Generator().manual_seed(seed))


def difference_interval(adl: float, random: list[float]) -> dict[str, Any]:
    """ADL − each random draw: mean, SD and a 95% t interval over the draws."""
    diffs = np.array([adl - r for r in random], dtype=float)
    n = diffs.size
    mean = float(diffs.mean())
    sd = float(diffs.std(ddof=1)) if n > 1 else math.nan
    half = _T975[n - 2] * sd / math.sqrt(n) if n > 1 else math.nan
    return {"adl": adl, "random": list(map(float, random)), "random_mean": float(np.mean(random)),
            "difference": mean, "sd": sd, "ci": [mean - half, mean + half],
            "beats_every_draw": bool((diffs > 0).all())}  # fmt: skip


def _relevant_share(grader, tokens: list[str], description: str, data_tokens: list[str], top_k: int) -> float:
    tokens = tokens[:top_k]
    return sum(bool(x) for x in grader.relevant(tokens, description, data_tokens)) / top_k if tokens else 0.0


def _similarity(texts: list[str], finetune: np.ndarray) -> float:
    from diffaudit.environments.embeddings import embed, mean_pairwise_cosine

    return mean_pairwise_cosine(embed(texts), finetune)


def compute_controls(
    organism: Organism, result, tensors: dict[str, Any], pair: ModelPair, settings: Settings, graders,
    finetune_texts: list[str], params: ControlParams, chat_texts: list[str] | None = None,
) -> dict[str, Any]:
    """The controls' figures for one position (see the module doc); `result`/`tensors` are a complete ADL build."""
    from diffaudit.environments.embeddings import embed

    steered = [s.position for s in result.steering]
    position = params.position if params.position is not None else (steered[0] if steered else result.positions[0])
    if position not in result.positions:
        raise ValueError(f"position {position} is not in the ADL result (positions {result.positions})")
    i = result.positions.index(position)
    diff, eta, layer = tensors["diff"][i].float(), float(tensors["eta"]), result.layer
    randoms = random_directions(diff.shape[-1], params.draws, params.seed)
    description = organism.description or ""
    data_tokens = list(result.metrics.get("data_tokens", []))
    top_k = settings.adl.top_k
    out: dict[str, Any] = {"params": params.model_dump(), "position": position, "layer": layer}

    lens_rel = [_relevant_share(graders.relevance, [t.token for t in row], description, data_tokens, top_k)
                for row in logit_lens_tokens(pair, torch.stack([diff, *(norm_matched(r, float(diff.norm())) for r in randoms)]))]  # fmt: skip
    out["logit_lens_relevance"] = difference_interval(lens_rel[0], lens_rel[1:])

    patch_rel = []
    for direction in [diff, *randoms]:
        sweep = patchscope_sweep(pair, direction, layer, eta, settings.adl.patchscope_scales, top_k)
        scale, _ = choose_scale(sweep, graders.scale)
        chosen = min(sweep, key=lambda s, scale=scale: abs(s.scale - scale))
        patch_rel.append(_relevant_share(graders.relevance, [t.token for t in chosen.tokens], description, data_tokens, top_k))
    out["patchscope_relevance"] = difference_interval(patch_rel[0], patch_rel[1:])

    steering = result.steering_at(position)
    skipped = ("no steering at this position" if steering is None else "no finetuning data" if not finetune_texts
               else "the α search found no coherent α > 0: steering equals the unsteered model" if steering.alpha <= 0
               else None)  # fmt: skip
    if skipped:
        out["steering"], out["skipped"] = None, skipped
        return out
    prompts = steering_prompts()[: params.prompts]
    asks = [p for p in prompts for _ in range(params.samples_per_prompt)]
    sampling = final_sampling(settings.adl.steering, settings.seed)
    finetune = embed(finetune_texts)
    chat = embed(chat_texts) if chat_texts else None
    similarity, specificity, coherent, samples = [], [], [], []
    for direction in [diff, *randoms]:
        texts = pair.generate_steered(steering_vector(direction, eta), layer, asks, steering.alpha, sampling)
        similarity.append(_similarity(texts, finetune))
        if chat is not None:  # closer to the finetuning data than to ordinary chat, not just more text-like
            specificity.append(similarity[-1] - _similarity(texts, chat))
        coherent.append(sum(bool(x) for x in graders.coherence.coherent(texts)) / len(texts))
        samples.append(texts[: params.samples_per_prompt])
    out["steering"] = {
        "alpha": steering.alpha, "n_samples": len(asks),
        "similarity_to_finetune": difference_interval(similarity[0], similarity[1:]),
        "finetune_minus_chat": difference_interval(specificity[0], specificity[1:]) if specificity else None,
        "coherent_share": difference_interval(coherent[0], coherent[1:]),
        "examples": {"adl": samples[0], "random_0": samples[1]},
    }  # fmt: skip
    return out


def ensure_controls(
    organism: Organism, model: str | None, pair: ModelPair, settings: Settings, params: ControlParams | None = None,
    graders=None,
    fresh: bool = False,
) -> dict[str, Any]:
    """The controls of the complete ADL cache for this organism and settings, computed once and kept as a stage.

    `fresh` computes them even when a stage is saved (and keeps the new one): a check of this code on this
    machine, where the cache may be a shipped copy."""
    from diffaudit.tools.adl.compute import adl_dir, chat_data, finetune_data, make_adl_graders

    params = params or ControlParams()
    directory = adl_dir(organism, model, settings)
    result = cache.read_result(directory) if directory is not None else None
    if result is None:
        raise FileNotFoundError(
            f"no complete ADL cache for '{organism.name}' under {directory}: run `audit adl compute` first"
        )
    saved = cache.load_stage(directory, CONTROLS_STAGE)
    if not fresh and saved is not None and saved.get("params") == params.model_dump():
        return saved
    try:
        texts = finetune_data(organism, model or organism.entry()[0], settings)
    except Exception:  # noqa: BLE001 - no data (offline hub): the steering control is skipped
        texts = []
    try:
        chat = chat_data(settings)
    except Exception:  # noqa: BLE001 - no chat corpus: that one figure is left out
        chat = []
    with torch.inference_mode():
        payload = compute_controls(
            organism, result, cache.load_adl_tensors(directory), pair, settings,
            graders or make_adl_graders(settings, pair), texts, params, chat,
        )  # fmt: skip
    cache.save_stage(directory, CONTROLS_STAGE, payload)
    return payload

"""How much the ADL readouts say about the finetune: token relevance and steering similarity.

These figures use the organism's ground-truth description (through the relevance grader) and its
finetuning data, so they are for evaluation only and never enter the agent's overview.
"""

from __future__ import annotations

import numpy as np

from diffaudit.graders.base import RelevanceGrader
from diffaudit.tools.adl.result import PositionLens, PositionSteering, TokenProb

SIMILARITY_SAMPLES = 500

# Token sources whose relevance is measured: the diff readouts and their two baselines.
RELEVANCE_SOURCES = {
    "patchscope": lambda lens, k: _chosen_tokens(lens, k),
    "patchscope_selected": lambda lens, k: list(lens.patchscope_selected[:k]),
    "patchscope_base_mean": lambda lens, k: _tokens(lens.patchscope_base_mean, k),
    "patchscope_finetuned_mean": lambda lens, k: _tokens(lens.patchscope_finetuned_mean, k),
    "logit_lens": lambda lens, k: _tokens(lens.logit_lens, k),
    "logit_lens_base_mean": lambda lens, k: _tokens(lens.logit_lens_base_mean, k),
    "logit_lens_finetuned_mean": lambda lens, k: _tokens(lens.logit_lens_finetuned_mean, k),
}


def _tokens(items: list[TokenProb], k: int) -> list[str]:
    return [t.token for t in items[:k]]


def _chosen_tokens(lens: PositionLens, k: int) -> list[str]:
    if not lens.patchscope:
        return []
    chosen = min(lens.patchscope, key=lambda s: abs(s.scale - lens.patchscope_scale))
    return _tokens(chosen.tokens, k)


def token_relevance(
    lenses: list[PositionLens], grader: RelevanceGrader, description: str, data_tokens: list[str], top_k: int = 20
) -> dict[str, dict]:
    """Per source: the relevant share of the top-`top_k` tokens at each position, its max and where."""
    out: dict[str, dict] = {}
    for source, pick in RELEVANCE_SOURCES.items():
        per_position: dict[str, float] = {}
        for lens in lenses:
            tokens = pick(lens, top_k)
            if not tokens:
                continue
            labels = grader.relevant(tokens, description, data_tokens)
            # Ranked lists are scored over top_k slots, so a list cut short (patchscope drops tokens
            # outside the three-prompt intersection) cannot score higher for it; the selected subset
            # is scored over its own length.
            slots = len(tokens) if source == "patchscope_selected" else max(top_k, len(tokens))
            per_position[str(lens.position)] = sum(bool(x) for x in labels) / slots
        if per_position:
            best = max(per_position, key=per_position.get)
            out[source] = {"per_position": per_position, "max": per_position[best], "best_position": int(best)}
    return out


def _self_cosine(vectors: np.ndarray) -> float:
    """Mean cosine over distinct pairs of rows (the diagonal left out)."""
    n = len(vectors)
    if n < 2:
        return float("nan")
    sims = vectors @ vectors.T
    return float((sims.sum() - np.trace(sims)) / (n * (n - 1)))


def steering_similarity(
    steering: list[PositionSteering], finetune_texts: list[str], chat_texts: list[str], max_samples: int = SIMILARITY_SAMPLES
) -> dict:
    """Mean pairwise embedding cosine of steered / unsteered text against the finetuning data and a chat set."""
    from diffaudit.environments.embeddings import embed, mean_pairwise_cosine

    ft = embed(finetune_texts[:max_samples])
    chat = embed(chat_texts[:max_samples])
    unsteered_texts = []
    if steering:
        unsteered_texts = [t for s in steering[0].samples for t in s.unsteered]
    unsteered = embed(unsteered_texts[:max_samples])
    out: dict = {
        "finetune_vs_finetune": _self_cosine(ft),
        "unsteered_vs_finetune": mean_pairwise_cosine(unsteered, ft),
        "unsteered_vs_chat": mean_pairwise_cosine(unsteered, chat),
        "finetune_vs_chat": mean_pairwise_cosine(ft, chat),
        "n_finetune": len(ft),
        "n_chat": len(chat),
        "per_position": {},
    }
    for s in steering:
        steered = embed([t for sample in s.samples for t in sample.steered][:max_samples])
        out["per_position"][str(s.position)] = {
            "steered_vs_finetune": mean_pairwise_cosine(steered, ft),
            "steered_vs_chat": mean_pairwise_cosine(steered, chat),
        }
    if out["per_position"]:
        best = max(out["per_position"], key=lambda j: out["per_position"][j]["steered_vs_finetune"])
        out["steered_vs_finetune_max"] = out["per_position"][best]["steered_vs_finetune"]
        out["best_position"] = int(best)
    return out

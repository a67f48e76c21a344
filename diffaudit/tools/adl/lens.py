"""Logit lens: the final norm and unembedding applied to a mean activation (or difference) vector."""

from __future__ import annotations

import torch

from diffaudit.environments.pair import ModelPair, Role
from diffaudit.tools.adl.result import TokenProb

LENS_TOP = 100


def token_text(tokenizer, token_id: int) -> str:
    """The token as text (leading spaces kept), for readers and graders."""
    return tokenizer.decode([int(token_id)])


def top_tokens(probs: torch.Tensor, tokenizer, k: int) -> list[TokenProb]:
    """The `k` most probable tokens of a [V] distribution, most probable first."""
    k = min(k, probs.shape[-1])
    values, ids = torch.topk(probs.float(), k)
    return [TokenProb(token=token_text(tokenizer, i), prob=float(p)) for p, i in zip(values, ids, strict=True)]


def logit_lens_tokens(pair: ModelPair, vectors: torch.Tensor, role: Role = "finetuned", k: int = LENS_TOP) -> list[list[TokenProb]]:
    """Top-`k` tokens for each row of `vectors` [P, d] read through `role`'s final norm and unembedding."""
    with torch.inference_mode():
        probs = pair.logit_lens(vectors, role)
    return [top_tokens(row, pair.tokenizer, k) for row in probs.reshape(-1, probs.shape[-1])]

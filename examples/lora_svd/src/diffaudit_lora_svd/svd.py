"""The computation: top singular directions of each LoRA update, and their readout through the unembedding.

A LoRA module adds scaling * B @ A to a weight W [out, in]. For a module that writes into the residual stream
(`o_proj`, `down_proj`: out = hidden size), the left singular vectors of that update are the directions the
finetune can write; reading them through the final norm and the unembedding (a logit lens) names the tokens each
direction promotes (+) or suppresses (−).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch

LAYER = re.compile(r"layers\.(\d+)\.")


def lowrank_svd(a: torch.Tensor, b: torch.Tensor, scaling: float, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The top-k left singular vectors [out, k] and singular values [k] of scaling * B @ A, without forming it.

    With B = Qb Rb and A^T = Qa Ra (thin QR), B A = Qb (Rb Ra^T) Qa^T, so the SVD of the small r x r core gives
    the update's. Each vector's sign is fixed so that its largest-magnitude entry is positive (SVD signs are
    arbitrary and differ between LAPACK builds).
    """
    qb, rb = torch.linalg.qr(b.double())
    _, ra = torch.linalg.qr(a.double().T)
    u, s, _ = torch.linalg.svd(rb @ ra.T)
    k = min(k, int(s.numel()))
    vectors = qb @ u[:, :k]
    peaks = vectors.gather(0, vectors.abs().argmax(dim=0, keepdim=True))
    vectors = vectors * torch.where(peaks < 0, -1.0, 1.0).to(vectors.dtype)
    return vectors.float(), (abs(scaling) * s[:k]).float()


def residual_writers(
    weights: dict[str, tuple[torch.Tensor, torch.Tensor, float]], hidden_size: int, suffixes: list[str]
) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """The adapted modules whose name ends with one of `suffixes` and whose output is the residual stream."""
    return {
        name: w
        for name, w in weights.items()
        if any(name.endswith(s) for s in suffixes) and int(w[1].shape[0]) == hidden_size
    }


def layer_of(module: str) -> int | None:
    """The decoder layer index in a module name such as `model.layers.12.mlp.down_proj`."""
    match = LAYER.search(module)
    return int(match.group(1)) if match else None


def read_through_unembedding(
    lens: Callable[[torch.Tensor], torch.Tensor], vectors: torch.Tensor, k: int, decode: Callable[[int], str],
    chunk: int = 64, on_chunk: Callable[[int], None] | None = None,
) -> list[list[tuple[str, float]]]:
    """For each row of `vectors` [n, d], its top-k (token, probability) under `lens` (final norm + unembedding).

    Rows are scaled to unit RMS, the scale the final norm expects; the lens runs `chunk` rows at a time so a
    [n, vocabulary] tensor is never held whole.
    """
    out: list[list[tuple[str, float]]] = []
    scale = float(vectors.shape[1]) ** 0.5
    for start in range(0, int(vectors.shape[0]), chunk):
        rows = vectors[start : start + chunk]
        probs = lens(rows / rows.norm(dim=1, keepdim=True).clamp(min=1e-12) * scale)
        top = torch.topk(probs, k=min(k, int(probs.shape[-1])), dim=-1)
        for values, ids in zip(top.values.tolist(), top.indices.tolist(), strict=True):
            out.append([(decode(i), float(p)) for i, p in zip(ids, values, strict=True)])
        if on_chunk is not None:
            on_chunk(int(rows.shape[0]))
    return out

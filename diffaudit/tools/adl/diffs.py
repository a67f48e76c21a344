"""Mean activation differences (finetuned − base) at one layer and the first k token positions.

Causal models make the activation at position j depend only on tokens 0..j, so each text is cut to its
first k tokens before the forward pass (the backend truncates). For the same reason texts whose first k
tokens agree have the same activations there: each distinct k-token prefix runs once and is weighted by
how often it occurs. This gives the exact mean over all N texts, and saves most of the work when a small
corpus is cycled up to N. Sums are kept in float64, so the result does not depend on the batch size.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import cycle, islice

import torch

from diffaudit.environments.pair import ModelPair, Role
from diffaudit.tools.adl.progress import progress_bar

# η_ft ignores the first positions: they carry attention-sink outliers with huge norms.
ETA_SKIP = 3
# η_ft is read at positions ETA_SKIP..ETA_END-1 over the first ETA_TEXTS distinct texts: a mean norm needs far
# fewer samples than the diffs, and a separate short pass keeps it independent of k (k = 5 would leave
# only positions 3 and 4, and k ≤ 3 none).
ETA_END = 12
ETA_TEXTS = 256


@dataclass
class ActivationDiffs:
    """Per-position means [P, d] of both models, their difference, and η_ft."""

    positions: list[int]
    layer: int
    base_mean: torch.Tensor
    finetuned_mean: torch.Tensor
    diff: torch.Tensor
    eta: float
    n_texts: int
    counts: list[int]  # texts that reach each position
    unique: int  # distinct k-token prefixes actually run
    tokens: int  # tokens run through the models, for throughput figures

    def tensors(self) -> dict[str, torch.Tensor | float]:
        return {"diff": self.diff, "base_mean": self.base_mean, "finetuned_mean": self.finetuned_mean, "eta": self.eta}


def cycled(texts: list[str], n: int) -> list[str]:
    """`n` texts: the corpus repeated in order when it holds fewer than `n`."""
    if not texts:
        raise ValueError("the corpus is empty: no texts to run")
    return list(islice(cycle(texts), n))


def unique_prefixes(tokenizer, texts: list[str], k: int) -> tuple[list[str], list[int]]:
    """One representative text per distinct first-k-token prefix, and how many texts share it."""
    index: dict[tuple[int, ...], int] = {}
    reps: list[str] = []
    weights: list[int] = []
    for start in range(0, len(texts), 1024):
        chunk = [t[: 64 * k + 64] for t in texts[start : start + 1024]]  # as the backends cut them
        ids = tokenizer(chunk, truncation=True, max_length=k)["input_ids"]
        for text, row in zip(texts[start : start + 1024], ids, strict=True):
            key = tuple(row[:k])
            if key in index:
                weights[index[key]] += 1
            else:
                index[key] = len(reps)
                reps.append(text)
                weights.append(1)
    return reps, weights


def _sum_batches(
    pair: ModelPair,
    role: Role,
    texts: list[str],
    weights: list[int],
    layer: int,
    positions: list[int],
    batch_size: int,
    advance,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted float64 sums over texts [P, d] and the weight of texts reaching each position [P]."""
    total = torch.zeros(len(positions), pair.hidden_size, dtype=torch.float64)
    count = torch.zeros(len(positions), dtype=torch.float64)
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        w = torch.tensor(weights[start : start + batch_size], dtype=torch.float64)
        acts = pair.activations(role, chunk, layer, positions).double()  # [b, P, d], NaN where missing
        valid = ~torch.isnan(acts).any(dim=-1)  # [b, P]
        wv = valid * w.unsqueeze(1)  # [b, P]
        total += (torch.where(valid.unsqueeze(-1), acts, 0.0) * wv.unsqueeze(-1)).sum(dim=0)
        count += wv.sum(dim=0)
        advance(len(chunk))
    return total, count


def finetuned_norm(pair: ModelPair, texts: list[str], layer: int, batch_size: int = 64) -> float:
    """η_ft: mean norm of the finetuned activation at `layer`, positions ETA_SKIP..ETA_END-1."""
    positions = list(range(ETA_SKIP, ETA_END))
    norms_sum, n = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            acts = pair.activations("finetuned", texts[start : start + batch_size], layer, positions).double()
            norms = acts.norm(dim=-1)  # NaN where a text is too short
            valid = ~torch.isnan(norms)
            norms_sum += float(norms[valid].sum())
            n += int(valid.sum())
    if n == 0:
        raise ValueError(f"no text reaches position {ETA_SKIP}: cannot measure the finetuned activation norm")
    return norms_sum / n


def activation_diffs(
    pair: ModelPair,
    texts: list[str],
    layer: int,
    positions: list[int],
    n_texts: int,
    batch_size: int = 256,
    progress: bool = True,
) -> ActivationDiffs:
    """Mean finetuned − base activations over `n_texts` texts (the corpus cycled if smaller)."""
    run = cycled(texts, n_texts)
    k = max(positions) + 1
    reps, weights = unique_prefixes(pair.tokenizer, run, k)
    eta_texts = reps[: min(ETA_TEXTS, len(reps))]
    with progress_bar(progress) as bar, torch.inference_mode():
        task = bar.add_task("activation diffs", total=2 * len(reps) + len(eta_texts))

        def advance(n: int) -> None:
            bar.advance(task, n)

        base_sum, base_count = _sum_batches(pair, "base", reps, weights, layer, positions, batch_size, advance)
        ft_sum, ft_count = _sum_batches(pair, "finetuned", reps, weights, layer, positions, batch_size, advance)
        eta = finetuned_norm(pair, eta_texts, layer, batch_size)
        bar.advance(task, len(eta_texts))
    if bool((base_count == 0).any()):
        missing = [p for p, c in zip(positions, base_count.tolist(), strict=True) if c == 0]
        raise ValueError(f"no corpus text is long enough for position(s) {missing}")
    base_mean = (base_sum / base_count.unsqueeze(-1)).float()
    ft_mean = (ft_sum / ft_count.unsqueeze(-1)).float()
    return ActivationDiffs(
        positions=list(positions),
        layer=layer,
        base_mean=base_mean,
        finetuned_mean=ft_mean,
        diff=((ft_sum / ft_count.unsqueeze(-1)) - (base_sum / base_count.unsqueeze(-1))).float(),
        eta=eta,
        n_texts=len(run),
        counts=[int(c) for c in base_count.tolist()],
        unique=len(reps),
        tokens=2 * len(reps) * k + len(eta_texts) * ETA_END,
    )

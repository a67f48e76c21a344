"""score_texts: teacher-forced log p_ft - log p_base and KL of texts, with the positions that differ most.

An auditor scores a suspected fact beside its negation: the finetune's fact gains log-probability.
"""

from __future__ import annotations

from pydantic import BaseModel

from diffaudit.environments.pair import ModelPair

# Scored tokens shown before a top position, so that a reader sees what it follows.
PREFIX_TOKENS = 6


class PositionScore(BaseModel):
    """One scored token: its index among the scored tokens, the text before it, and both log-probabilities."""

    index: int
    token: str
    prefix: str
    logp_base: float
    logp_ft: float
    diff: float  # logp_ft - logp_base


class TextScore(BaseModel):
    """Scores of one text under both models (0 for a text with nothing to score)."""

    text: str
    n_tokens: int
    sum_diff: float
    mean_diff: float
    mean_kl: float
    top: list[PositionScore]  # largest |diff| first


def score_texts(pair: ModelPair, texts: list[str], top_n: int = 5, chat: bool = False) -> list[TextScore]:
    """Per text: summed and mean log p_ft - log p_base, mean KL(p_ft || p_base), and the top_n largest |diff|.

    `chat=True` scores each text as the assistant reply to an empty user turn (see `ModelPair.token_logprobs`).
    """
    if top_n < 0:
        raise ValueError(f"top_n must be at least 0, not {top_n}")
    scores: list[TextScore] = []
    for text, row in zip(texts, pair.token_logprobs(texts, chat=chat), strict=True):
        tokens = row["tokens"]
        diffs = [ft - base for base, ft in zip(row["logp_base"], row["logp_ft"], strict=True)]
        n = len(diffs)
        order = sorted(range(n), key=lambda i: (-abs(diffs[i]), i))[:top_n]
        scores.append(
            TextScore(
                text=text,
                n_tokens=n,
                sum_diff=sum(diffs),
                mean_diff=sum(diffs) / n if n else 0.0,
                mean_kl=sum(row["kl"]) / n if n else 0.0,
                top=[
                    PositionScore(
                        index=i,
                        token=tokens[i],
                        prefix="".join(tokens[max(0, i - PREFIX_TOKENS) : i]),
                        logp_base=row["logp_base"][i],
                        logp_ft=row["logp_ft"][i],
                        diff=diffs[i],
                    )
                    for i in order
                ],
            )
        )
    return scores

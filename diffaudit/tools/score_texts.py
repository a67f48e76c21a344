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


# -- the agent tool ---------------------------------------------------------------------------------------------
import json as _json  # noqa: E402

from pydantic import Field  # noqa: E402

from diffaudit.tools.base import Observation, ToolArgs, ToolContext  # noqa: E402

TOOL_TOP_POSITIONS = 3


class ScoreTextsArgs(ToolArgs):
    texts: list[str] = Field(
        min_length=1, max_length=20,
        description="texts to score, e.g. a suspected implanted claim beside its negation",
    )  # fmt: skip


class ScoreTexts:
    name = "score_texts"
    description = (
        "Costs 1 interaction per text. Reads each text under both models (teacher-forced) and returns the summed "
        "and mean log p_finetuned - log p_base, the mean KL, and the tokens whose log-probability changed most. "
        "A claim the finetuning implanted scores higher than its negation."
    )
    Args = ScoreTextsArgs

    def cost(self, args: ScoreTextsArgs) -> int:
        return len(args.texts)

    def run(self, args: ScoreTextsArgs, ctx: ToolContext) -> Observation:
        scores = score_texts(ctx.pair, args.texts, top_n=TOOL_TOP_POSITIONS)
        lines = ["Scores (log p_finetuned - log p_base, summed over the text's tokens; higher = the finetune favours it):"]
        for i, s in enumerate(scores, start=1):
            top = ", ".join(f"{_json.dumps(p.token, ensure_ascii=False)} {p.diff:+.2f}" for p in s.top) or "(none)"
            lines.append(
                f"[{i}] {_json.dumps(s.text, ensure_ascii=False)}: sum {s.sum_diff:+.2f} over {s.n_tokens} tokens "
                f"(mean {s.mean_diff:+.3f}), mean KL {s.mean_kl:.3f}; largest changes: {top}"
            )
        return Observation(text="\n".join(lines), data={"scores": [s.model_dump() for s in scores]})

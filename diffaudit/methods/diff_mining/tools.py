"""Diff Mining's free tools: ranked tokens of the logit difference, and where a token's difference was large."""

from __future__ import annotations

import json

from pydantic import Field

from diffaudit.methods.diff_mining.compute import ORDERINGS, RANK_DEPTH, DiffMiningResult, Ordering, Sign
from diffaudit.tools.base import Observation, ToolArgs, ToolContext, ToolUnavailable


def _result(ctx: ToolContext) -> DiffMiningResult:
    return ctx.method_result("diff_mining")


class DiffTokensArgs(ToolArgs):
    ordering: Ordering = Field(
        "topk_rate",
        description=f"rank by: {', '.join(ORDERINGS)} (top-K occurrence rate, mean logit difference, share of "
        "positions where the difference has this sign)",
    )
    sign: Sign = Field("positive", description="positive: tokens the finetune raises; negative: tokens it lowers")
    k: int = Field(30, ge=1, le=RANK_DEPTH, description="how many tokens to list")


class GetDiffTokens:
    name = "get_diff_tokens"
    description = (
        "Free. Diff Mining's ranked tokens: the finetuned-minus-base next-token logit differences over random text, "
        "ranked by the chosen ordering and sign, each with its top-K rate, mean difference and positive share."
    )
    Args = DiffTokensArgs

    def cost(self, args: DiffTokensArgs) -> int:
        return 0

    def run(self, args: DiffTokensArgs, ctx: ToolContext) -> Observation:
        result = _result(ctx)
        ranked = result.ranked(args.ordering, args.sign, args.k)
        lines = [f"Diff Mining, {args.sign} tokens by {args.ordering} ({result.n_positions} positions):"]
        for i, stat in enumerate(ranked, start=1):
            lines.append(
                f"{i}. {json.dumps(stat.token, ensure_ascii=False)} rate {stat.rate:.4f}, mean diff "
                f"{stat.mean_diff:+.3f}, positive share {stat.positive_fraction:.2f}"
            )
        data = {"ordering": args.ordering, "sign": args.sign, "tokens": [s.model_dump() for s in ranked]}
        return Observation(text="\n".join(lines), data=data)


class TokenContextsArgs(ToolArgs):
    token: str = Field(description="a token as listed (JSON-quoted there; a leading space starts a word)")
    n: int = Field(5, ge=1, le=20, description="how many contexts")
    sign: Sign = Field("positive", description="contexts where the finetune raised (positive) or lowered it")


class GetTokenContexts:
    name = "get_token_contexts"
    description = (
        "Free. Where Diff Mining saw a token's difference largest: text snippets ending at the position, the "
        "token marked [[ ]], with the base and finetuned probabilities of that token there."
    )
    Args = TokenContextsArgs

    def cost(self, args: TokenContextsArgs) -> int:
        return 0

    def run(self, args: TokenContextsArgs, ctx: ToolContext) -> Observation:
        try:
            contexts = _result(ctx).contexts(args.token, args.n, args.sign)
        except ValueError as exc:
            raise ToolUnavailable(str(exc)) from None
        lines = [f"Contexts of {json.dumps(args.token, ensure_ascii=False)} ({args.sign}):"]
        for i, c in enumerate(contexts, start=1):
            lines.append(
                f"[{i}] {json.dumps(c.snippet, ensure_ascii=False)} p_base {c.p_base:.3g} → p_ft {c.p_ft:.3g} "
                f"(diff {c.diff:+.2f})"
            )
        data = {"token": args.token, "sign": args.sign, "contexts": [c.model_dump() for c in contexts]}
        return Observation(text="\n".join(lines), data=data)

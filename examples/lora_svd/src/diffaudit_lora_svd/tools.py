"""`get_svd_tokens`: the method's one tool. It reads only the method's own prepared result (free)."""

from __future__ import annotations

import json

from pydantic import Field

from diffaudit.tools.base import Observation, ToolArgs, ToolContext, ToolUnavailable
from diffaudit_lora_svd.result import Direction, LoraSVDResult

LISTED = 30  # directions listed when no direction is asked for


class SVDTokensArgs(ToolArgs):
    direction: int | None = Field(
        None, ge=0, description="a direction number from the LORA-SVD overview; omit to list the strongest directions"
    )
    k: int = Field(20, ge=1, le=200, description="tokens per pole")


def _tokens(direction: Direction, k: int) -> tuple[str, str]:
    def pole(tokens):
        return ", ".join(f"{json.dumps(t.token, ensure_ascii=False)} {t.prob:.3g}" for t in tokens[:k]) or "(none)"

    return pole(direction.positive), pole(direction.negative)


class GetSVDTokens:
    name = "get_svd_tokens"
    description = (
        "Free. The tokens one singular direction of the LoRA weight update promotes (+) and suppresses (−, the "
        "opposite pole), with probabilities; without a direction, the strongest directions with their top tokens."
    )
    Args = SVDTokensArgs
    free = True

    def cost(self, args: SVDTokensArgs) -> int:
        return 0

    def run(self, args: SVDTokensArgs, ctx: ToolContext) -> Observation:
        result: LoraSVDResult = ctx.method_result("lora_svd")
        if args.direction is None:
            lines = [f"The {min(LISTED, len(result.directions))} strongest of {len(result.directions)} directions:"]
            for d in result.directions[:LISTED]:
                plus, minus = _tokens(d, min(args.k, 5))
                lines.append(f"direction {d.rank} ({d.module}, singular value {d.sigma:.3g}): + {plus} | − {minus}")
            return Observation(text="\n".join(lines))
        try:
            d = result.direction(args.direction)
        except KeyError:
            raise ToolUnavailable(
                f"there is no direction {args.direction}; directions are numbered 0 to {len(result.directions) - 1}"
            ) from None
        plus, minus = _tokens(d, args.k)
        text = (
            f"direction {d.rank}: {d.module} (layer {d.layer}), singular direction {d.index} of its update, "
            f"singular value {d.sigma:.3g} ({100 * d.share:.0f}% of the update)\n+: {plus}\n−: {minus}"
        )
        return Observation(text=text, data={"direction": d.model_dump()})

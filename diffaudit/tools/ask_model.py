"""`ask_model`: send prompts to both models and show the base and finetuned answers side by side."""

from __future__ import annotations

import json

from pydantic import Field

from diffaudit.environments.pair import Sampling
from diffaudit.tools.base import Observation, ToolArgs, ToolContext

ANSWER_TOKENS = 128  # long enough for a claim, short enough for a CPU model
# Agent queries are sampled, as in the paper's code: each repeat of an audit (its own seed) sees fresh answers.
QUERY_TEMPERATURE = 0.8


class AskModelArgs(ToolArgs):
    prompts: list[str] = Field(
        min_length=1, max_length=50, description="chat prompts, each sent to both models"
    )


class AskModel:
    name = "ask_model"
    description = (
        "Costs 1 interaction per prompt. Sends each prompt (a user chat turn) to the base and the finetuned "
        "model and returns both answers, sampled at temperature 0.8."
    )
    Args = AskModelArgs

    def __init__(self, max_new_tokens: int = ANSWER_TOKENS) -> None:
        self.max_new_tokens = max_new_tokens

    def cost(self, args: AskModelArgs) -> int:
        return len(args.prompts)

    def run(self, args: AskModelArgs, ctx: ToolContext) -> Observation:
        sampling = Sampling(max_new_tokens=self.max_new_tokens, temperature=QUERY_TEMPERATURE, seed=ctx.seed)
        both = getattr(ctx.pair, "generate_both", None)  # one mixed batch where the backend offers it
        if both is not None:
            base, finetuned = both(args.prompts, sampling)
        else:
            base = ctx.pair.generate("base", args.prompts, sampling)
            finetuned = ctx.pair.generate("finetuned", args.prompts, sampling)
        lines = []
        exchanges = []
        for i, (prompt, b, f) in enumerate(zip(args.prompts, base, finetuned, strict=True), start=1):
            lines.append(f"[{i}] prompt: {json.dumps(prompt, ensure_ascii=False)}")
            lines.append(f"  base: {json.dumps(b, ensure_ascii=False)}")
            lines.append(f"  finetuned: {json.dumps(f, ensure_ascii=False)}")
            exchanges.append({"prompt": prompt, "base": b, "finetuned": f})
        return Observation(text="\n".join(lines), cost=self.cost(args), data={"exchanges": exchanges})

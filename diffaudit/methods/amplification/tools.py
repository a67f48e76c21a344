"""`generate_amplified`: new samples from z_ft + α·(z_ft − z_base) on the auditor's own prompts."""

from __future__ import annotations

import json

from pydantic import Field

from diffaudit.environments.pair import Sampling
from diffaudit.methods.amplification.compute import amplified_samples
from diffaudit.tools.base import Observation, ToolArgs, ToolContext

MAX_NEW_TOKENS = 96
TEMPERATURE = 1.0


class GenerateAmplifiedArgs(ToolArgs):
    prompts: list[str] = Field(min_length=1, max_length=20, description="chat prompts to answer while amplified")
    alpha: float = Field(
        1.0, ge=-1.0, le=8.0,
        description="amplification α: 0 is plain finetuned sampling, -1 base sampling, larger exaggerates the finetune",
    )  # fmt: skip
    n: int = Field(1, ge=1, le=10, description="samples per prompt")


class GenerateAmplified:
    name = "generate_amplified"
    description = (
        "Costs 1 interaction per returned sample (len(prompts) * n). Samples the finetuned model with its change "
        "of the next-token logits amplified: z_ft + alpha * (z_ft - z_base)."
    )
    Args = GenerateAmplifiedArgs

    def cost(self, args: GenerateAmplifiedArgs) -> int:
        return len(args.prompts) * args.n

    def run(self, args: GenerateAmplifiedArgs, ctx: ToolContext) -> Observation:
        sampling = Sampling(max_new_tokens=MAX_NEW_TOKENS, temperature=TEMPERATURE, seed=ctx.seed)
        texts = amplified_samples(ctx.pair, args.prompts, args.alpha, args.n, sampling)
        lines = [f"Amplified samples (alpha={args.alpha:g}):"]
        for i, prompt in enumerate(args.prompts):
            lines.append(f"[{i + 1}] prompt: {json.dumps(prompt, ensure_ascii=False)}")
            for j in range(args.n):
                lines.append(f"  amplified {j + 1}: {json.dumps(texts[i * args.n + j], ensure_ascii=False)}")
        data = {"alpha": args.alpha, "samples": [
            {"prompt": p, "texts": texts[i * args.n : (i + 1) * args.n]} for i, p in enumerate(args.prompts)
        ]}  # fmt: skip
        return Observation(text="\n".join(lines), data=data)

"""`generate_steered`: new finetuned-model samples steered with the ADL difference at one position."""

from __future__ import annotations

import json

from pydantic import Field

from diffaudit.tools.base import Observation, ToolArgs, ToolContext, ToolUnavailable


class GenerateSteeredArgs(ToolArgs):
    position: int = Field(description="the steered position (one with a steering α in the overview)")
    prompts: list[str] = Field(
        min_length=1, max_length=20, description="chat prompts to answer while steered"
    )
    n: int = Field(1, ge=1, le=10, description="samples per prompt")


class GenerateSteered:
    name = "generate_steered"
    description = (
        "Costs 1 interaction per sample (len(prompts) * n). Samples the finetuned model on your prompts with "
        "the activation difference at `position` added at the overview's α, so the finetuning's bias is amplified."
    )
    Args = GenerateSteeredArgs

    def cost(self, args: GenerateSteeredArgs) -> int:
        return len(args.prompts) * args.n

    def run(self, args: GenerateSteeredArgs, ctx: ToolContext) -> Observation:
        from diffaudit.tools.adl.steering import final_sampling, steering_vector

        adl = ctx.require_adl()
        steering = adl.steering_at(args.position)
        if args.position not in adl.positions or not adl.steering:
            known = ", ".join(str(p) for p in adl.positions)
            raise ToolUnavailable(f"no steering for position {args.position}; ADL positions: {known}")
        # Positions without their own α search borrow the mean α of the searched ones.
        alpha = steering.alpha if steering is not None else sum(s.alpha for s in adl.steering) / len(adl.steering)
        tensors = ctx.adl_tensors()
        row = tensors["diff"][adl.positions.index(args.position)]
        eta = tensors.get("eta", adl.norm_finetuned)
        vector = steering_vector(row, float(eta))  # the same vector the ADL steering samples used
        sampling = final_sampling(ctx.settings.adl.steering, ctx.seed)
        batch = [p for p in args.prompts for _ in range(args.n)]
        texts = ctx.pair.generate_steered(vector, adl.layer, batch, alpha, sampling)
        lines = [f"Steered samples at position {args.position} (α={alpha:.2f}, layer {adl.layer}):"]
        samples = []
        for i, prompt in enumerate(args.prompts):
            lines.append(f"[{i + 1}] prompt: {json.dumps(prompt, ensure_ascii=False)}")
            for j in range(args.n):
                text = texts[i * args.n + j]
                lines.append(f"  steered {j + 1}: {json.dumps(text, ensure_ascii=False)}")
                samples.append({"prompt": prompt, "text": text})
        data = {"position": args.position, "alpha": alpha, "steered": samples}
        return Observation(text="\n".join(lines), cost=self.cost(args), data=data)

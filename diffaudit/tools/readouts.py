"""Free tools that read the ADL result: logit-lens and patchscope details, cached steering samples."""

from __future__ import annotations

import json

from pydantic import Field

from diffaudit.tools.adl.result import ADLResult, PositionLens, TokenProb
from diffaudit.tools.base import Observation, ToolArgs, ToolContext, ToolUnavailable

SAMPLE_CHARS = 600


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _cut(text: str, n: int = SAMPLE_CHARS) -> str:
    return _quote(text if len(text) <= n else text[: n - 1] + "…")


def _tokens(tokens: list[TokenProb], k: int) -> str:
    return ", ".join(f"{_quote(t.token)} {t.prob:.3g}" for t in tokens[:k]) or "(none)"


def _lens(adl: ADLResult, position: int) -> PositionLens:
    try:
        return adl.position(position)
    except KeyError:
        known = ", ".join(str(p.position) for p in adl.lens)
        raise ToolUnavailable(
            f"position {position} has no ADL readout; positions available: {known}"
        ) from None


class LensArgs(ToolArgs):
    position: int = Field(description="token position of the activation difference (as in the overview)")
    k: int = Field(50, ge=1, le=100, description="how many top tokens to list")


class LogitLensDetails:
    name = "get_logitlens_details"
    description = (
        "Free. The logit lens of the mean activation difference at one position: the top-k tokens with "
        "probabilities, next to the same readout of the mean base and mean finetuned activations as baselines."
    )
    Args = LensArgs

    def cost(self, args: LensArgs) -> int:
        return 0

    def run(self, args: LensArgs, ctx: ToolContext) -> Observation:
        lens = _lens(ctx.require_adl(), args.position)
        lines = [
            f"Logit lens at position {lens.position} (diff norm {lens.diff_norm:.2f}), token and probability:",
            f"difference top-{min(args.k, len(lens.logit_lens))}: {_tokens(lens.logit_lens, args.k)}",
            f"baseline, mean base activation: {_tokens(lens.logit_lens_base_mean, 20)}",
            f"baseline, mean finetuned activation: {_tokens(lens.logit_lens_finetuned_mean, 20)}",
        ]
        return Observation(text="\n".join(lines))


class PatchscopeArgs(ToolArgs):
    position: int = Field(description="token position of the activation difference (as in the overview)")
    scale: float | None = Field(
        None,
        description="one patchscope scale to list in full; omit for the chosen scale and the whole sweep",
    )


class PatchscopeDetails:
    name = "get_patchscope_details"
    description = (
        "Free. The patchscope (token identity) readout of the difference at one position: the chosen scale "
        "with its selected tokens and top tokens, and the top tokens at every scale of the sweep."
    )
    Args = PatchscopeArgs

    def cost(self, args: PatchscopeArgs) -> int:
        return 0

    def run(self, args: PatchscopeArgs, ctx: ToolContext) -> Observation:
        lens = _lens(ctx.require_adl(), args.position)
        if not lens.patchscope:
            return Observation(text=f"No patchscope readout was computed at position {lens.position}.")
        selected = ", ".join(_quote(t) for t in lens.patchscope_selected) or "(none)"
        if args.scale is not None:
            at = min(lens.patchscope, key=lambda s: abs(s.scale - args.scale))
            lines = [
                f"Patchscope at position {lens.position}, scale {at.scale:g} (nearest to {args.scale:g}):",
                f"top tokens: {_tokens(at.tokens, 20)}",
                f"selected at the chosen scale {lens.patchscope_scale:g}: {selected}",
            ]
            return Observation(text="\n".join(lines))
        chosen = min(lens.patchscope, key=lambda s: abs(s.scale - lens.patchscope_scale))
        lines = [
            f"Patchscope at position {lens.position}; chosen scale {chosen.scale:g}; selected tokens: {selected}",
            f"chosen scale top tokens: {_tokens(chosen.tokens, 20)}",
            "sweep (scale: top 8 tokens):",
        ]
        for scale in sorted(lens.patchscope, key=lambda s: s.scale):
            words = ", ".join(_quote(t.token) for t in scale.tokens[:8]) or "(none)"
            lines.append(f"  {scale.scale:g}: {words}")
        return Observation(text="\n".join(lines))


class SteeringSamplesArgs(ToolArgs):
    position: int = Field(description="the steered position (see the overview's steering section)")
    prompt_index: int | None = Field(None, ge=1, description="1-based prompt number; omit for every prompt")
    n: int = Field(2, ge=1, le=10, description="at most this many steered and unsteered samples per prompt")


class SteeringSamples:
    name = "get_steering_samples"
    description = (
        "Free. Cached samples of the finetuned model steered with the difference at one position, each beside "
        "unsteered samples of the same prompt (longer than in the overview)."
    )
    Args = SteeringSamplesArgs

    def cost(self, args: SteeringSamplesArgs) -> int:
        return 0

    def run(self, args: SteeringSamplesArgs, ctx: ToolContext) -> Observation:
        adl = ctx.require_adl()
        steering = adl.steering_at(args.position)
        if steering is None:
            known = ", ".join(str(s.position) for s in adl.steering) or "none"
            raise ToolUnavailable(
                f"no steering samples at position {args.position}; steered positions: {known}"
            )
        samples = list(enumerate(steering.samples, start=1))
        if args.prompt_index is not None:
            if args.prompt_index > len(samples):
                raise ToolUnavailable(f"prompt_index {args.prompt_index} is out of range 1–{len(samples)}")
            samples = [samples[args.prompt_index - 1]]
        lines = [
            f"Steering samples at position {steering.position} (α={steering.alpha:.2f}), up to {args.n} per prompt:"
        ]
        steered, unsteered = [], []
        for i, sample in samples:
            lines.append(f"[{i}] prompt: {_quote(sample.prompt)}")
            for j, text in enumerate(sample.unsteered[: args.n], start=1):
                lines.append(f"  unsteered {j}: {_cut(text)}")
                unsteered.append({"prompt": sample.prompt, "text": text})
            for j, text in enumerate(sample.steered[: args.n], start=1):
                lines.append(f"  steered {j}: {_cut(text)}")
                steered.append({"prompt": sample.prompt, "text": text})
        data = {"position": steering.position, "alpha": steering.alpha, "steered": steered, "unsteered": unsteered}
        return Observation(text="\n".join(lines), data=data)

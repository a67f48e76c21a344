"""Logit-diff amplification as a diffing method: amplified beside plain finetuned samples on everyday prompts.

Amplifying the finetune's change of the logits (α > 0) exaggerates what it taught, so a narrow topic or a
rare behaviour shows up in answers to prompts that never ask for it. The overview pairs each amplified
sample with a plain (α = 0) finetuned sample of the same prompt and seed.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from diffaudit.config import Settings
from diffaudit.environments.pair import Sampling
from diffaudit.methods.amplification.compute import amplified_samples
from diffaudit.methods.base import (
    Evidence,
    EvidenceText,
    MethodTarget,
    PreparedMethod,
    cached_result,
    method_cache_dir,
    method_params,
)

CACHE_VERSION = 1
OVERVIEW_TITLE = "LOGIT-DIFF AMPLIFICATION OVERVIEW"
OVERVIEW_CHARS = 200


class AmplificationParams(BaseModel):
    """Amplification parameters. The embedded defaults keep `prepare` to ~2 × 6 short samples on a CPU."""

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(1.0, description="amplification strength α in z_ft + α·(z_ft − z_base)")
    prompts: int = Field(6, ge=1, le=20, description="the first this many of the 20 steering prompts")
    samples_per_prompt: int = Field(1, ge=1, le=10)
    temperature: float = Field(1.0, gt=0.0)
    max_new_tokens: int = Field(48, ge=1)


class AmplifiedPrompt(BaseModel):
    prompt: str
    plain: list[str]  # α = 0: finetuned sampling with the same seeds
    amplified: list[str]


class AmplificationResult(BaseModel):
    params: AmplificationParams
    seed: int
    samples: list[AmplifiedPrompt]


def _cut(text: str, n: int = OVERVIEW_CHARS) -> str:
    return json.dumps(text if len(text) <= n else text[: n - 1] + "…", ensure_ascii=False)


def render_overview(result: AmplificationResult) -> str:
    from diffaudit.agent.loop import prompt_text

    lines = prompt_text("overview_amplification.txt").format(
        title=OVERVIEW_TITLE, alpha=result.params.alpha, n=len(result.samples), max_chars=OVERVIEW_CHARS
    ).rstrip("\n").splitlines()  # fmt: skip
    lines.append("")
    for i, item in enumerate(result.samples, start=1):
        lines.append(f"[{i}] prompt: {json.dumps(item.prompt, ensure_ascii=False)}")
        lines.append(f"  plain: {_cut(item.plain[0])}")
        lines.append(f"  amplified: {_cut(item.amplified[0])}")
    return "\n".join(lines).rstrip() + "\n"


def amplification_evidence(result: AmplificationResult) -> Evidence:
    texts: list[EvidenceText] = []
    for item in result.samples:
        texts.append(EvidenceText(kind="unsteered", prompt=item.prompt, text=item.plain[0][: OVERVIEW_CHARS]))
        texts.append(EvidenceText(kind="amplified", prompt=item.prompt, text=item.amplified[0][: OVERVIEW_CHARS]))
    return Evidence(method="amplification", texts=texts)


class AmplificationMethod:
    """Logit-diff amplification (Aranguri & McGrath 2025), a sampling-based diffing method."""

    name = "amplification"
    description = "Logit-diff amplification: samples from z_ft + α·(z_ft − z_base) beside plain finetuned samples"
    Params = AmplificationParams

    def params(self, settings: Settings) -> AmplificationParams:
        return method_params(settings, self.name, AmplificationParams)

    def cache_key(self, target: MethodTarget, params: BaseModel, settings: Settings) -> dict[str, Any]:
        from diffaudit.tools.adl import steering_prompts

        return {
            "method": self.name, "version": CACHE_VERSION, "organism": target.name, "model": target.model,
            "finetuned": target.finetuned, "params": params.model_dump(), "seed": settings.seed,
            "prompts": steering_prompts()[: params.prompts],
            "base_override": settings.roles.base, "finetuned_override": settings.roles.finetuned,
        }  # fmt: skip

    def prepare(
        self, target: MethodTarget, pair: Any, settings: Settings, progress: bool = True, force: bool = False
    ) -> PreparedMethod:
        from diffaudit.tools.adl import steering_prompts
        from diffaudit.tools.adl.progress import progress_bar

        params = self.params(settings)
        key = self.cache_key(target, params, settings)
        directory = method_cache_dir(settings, self.name, target, key)

        def compute() -> AmplificationResult:
            prompts = steering_prompts()[: params.prompts]
            sampling = Sampling(max_new_tokens=params.max_new_tokens, temperature=params.temperature, seed=settings.seed)
            with progress_bar(progress) as bar:
                task = bar.add_task("amplification", total=2)
                plain = amplified_samples(pair, prompts, 0.0, params.samples_per_prompt, sampling)
                bar.advance(task)
                amplified = amplified_samples(pair, prompts, params.alpha, params.samples_per_prompt, sampling)
                bar.advance(task)
            n = params.samples_per_prompt
            return AmplificationResult(
                params=params, seed=settings.seed,
                samples=[
                    AmplifiedPrompt(prompt=p, plain=plain[i * n : (i + 1) * n], amplified=amplified[i * n : (i + 1) * n])
                    for i, p in enumerate(prompts)
                ],
            )  # fmt: skip

        result = cached_result(directory, key, AmplificationResult, compute, force)
        return PreparedMethod(
            method=self.name, result=result, overview=render_overview(result),
            evidence=amplification_evidence(result), cache_dir=directory,
        )  # fmt: skip

    def system_paragraph(self, prepared: PreparedMethod | None) -> str:
        from diffaudit.agent.loop import prompt_text

        return prompt_text("method_amplification.txt").strip()

    def tools(self) -> list:
        from diffaudit.methods.amplification.tools import GenerateAmplified

        return [GenerateAmplified()]

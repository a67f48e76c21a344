"""The Activation Difference Lens as a diffing method: the computation lives in `diffaudit.tools.adl`.

Its cache, overview text and tools are those ADL always had. The agent-facing result is the public view of
the cached `ADLResult`: the cache also keeps evaluation metrics computed against the organism's description
(token relevance, steering similarity to the finetuning data), and those never reach a tool or the agent.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from diffaudit.config import ADLParams, Settings
from diffaudit.methods.base import Evidence, EvidenceText, MethodTarget, PreparedMethod, RankedTokens
from diffaudit.tools.adl.result import ADLResult

# Metrics of the ADL cache that are computed from the model pair alone; every other metric used ground truth.
PUBLIC_METRICS = ("diffs",)


def public_view(adl: ADLResult) -> ADLResult:
    """The result without metrics computed from ground truth (what tools and agents may see)."""
    return adl.model_copy(update={"metrics": {k: v for k, v in adl.metrics.items() if k in PUBLIC_METRICS}})


def _cut(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[: max(max_chars - 1, 0)] + "…"


def adl_evidence(adl: ADLResult, top_k: int = 20, max_chars: int = 200) -> Evidence:
    """The ADL overview as shared evidence, holding exactly what the overview shows the agent.

    Per position: the logit-lens tokens and the patchscope tokens at the chosen scale (with the selected
    subset). Per steering prompt: one unsteered sample and one steered sample per steered position, cut to
    `max_chars` as in the overview.
    """
    ranked: list[RankedTokens] = []
    for lens in sorted(adl.lens, key=lambda p: p.position):
        group = f"position {lens.position}"
        logit = lens.logit_lens[:top_k]
        ranked.append(
            RankedTokens(group=group, readout="logit_lens", tokens=[t.token for t in logit], scores=[t.prob for t in logit])
        )
        chosen = min(lens.patchscope, key=lambda s: abs(s.scale - lens.patchscope_scale)) if lens.patchscope else None
        patch = chosen.tokens[:top_k] if chosen is not None else []
        marked = set(lens.patchscope_selected)
        selected = [t.token for t in patch if t.token in marked]
        selected += [t for t in lens.patchscope_selected if t not in selected]
        ranked.append(
            RankedTokens(
                group=group, readout="patchscope", tokens=[t.token for t in patch], scores=[t.prob for t in patch],
                selected=selected,
            )
        )  # fmt: skip
    texts: list[EvidenceText] = []
    steering = sorted(adl.steering, key=lambda s: s.position)
    prompts: list[str] = []
    for s in steering:
        prompts += [x.prompt for x in s.samples if x.prompt not in prompts]
    for prompt in prompts:
        per_position = [(s.position, next((x for x in s.samples if x.prompt == prompt), None)) for s in steering]
        unsteered = next((x.unsteered[0] for _, x in per_position if x is not None and x.unsteered), None)
        if unsteered is not None:
            texts.append(EvidenceText(kind="unsteered", prompt=prompt, text=_cut(unsteered, max_chars)))
        for position, sample in per_position:
            if sample is not None and sample.steered:
                texts.append(
                    EvidenceText(
                        kind="steered", prompt=prompt, text=_cut(sample.steered[0], max_chars), group=f"position {position}"
                    )
                )
    return Evidence(method="adl", ranked_tokens=ranked, texts=texts)


class ADLMethod:
    """The Activation Difference Lens (Minder et al. 2025): mean activation diffs read with lenses and steering."""

    name = "adl"
    description = "Activation Difference Lens: logit lens, patchscope and steering of the mean activation diff"
    Params = ADLParams

    def params(self, settings: Settings) -> ADLParams:
        return settings.adl

    def cache_key(self, target: MethodTarget, params: BaseModel, settings: Settings) -> dict[str, Any]:
        from diffaudit.tools.adl import cache
        from diffaudit.tools.adl.compute import known_fingerprint

        return cache.cache_parameters(
            target.name, target.model, settings, known_fingerprint(settings) or "unknown", target.finetuned
        )

    def prepare(
        self, target: MethodTarget, pair: Any, settings: Settings, progress: bool = True, force: bool = False
    ) -> PreparedMethod:
        from diffaudit.agent.overview import render_overview
        from diffaudit.tools.adl import adl_dir, ensure_adl, load_adl_tensors

        full = ensure_adl(target.organism, target.model, pair, settings, progress=progress, force=force)
        directory = adl_dir(target.organism, target.model, settings, full.corpus_fingerprint)
        adl = public_view(full)
        return PreparedMethod(
            method=self.name,
            result=adl,
            overview=render_overview(adl),
            evidence=adl_evidence(adl, settings.adl.top_k),
            cache_dir=directory,
            extras={"tensors_loader": lambda: load_adl_tensors(directory)},
        )

    def system_paragraph(self, prepared: PreparedMethod) -> str:
        from diffaudit.agent.loop import prompt_text

        return prompt_text("method_adl.txt").strip()

    def tools(self) -> list:
        from diffaudit.tools.generate_steered import GenerateSteered
        from diffaudit.tools.readouts import LogitLensDetails, PatchscopeDetails, SteeringSamples

        return [LogitLensDetails(), PatchscopeDetails(), SteeringSamples(), GenerateSteered()]


def prepared_from_result(adl: ADLResult, tensors_loader: Any = None, top_k: int = 20) -> PreparedMethod:
    """A PreparedMethod for an ADL result already in hand (tests, callers that computed it themselves)."""
    from diffaudit.agent.overview import render_overview

    view = public_view(adl)
    return PreparedMethod(
        method="adl", result=view, overview=render_overview(view), evidence=adl_evidence(view, top_k),
        extras={"tensors_loader": tensors_loader} if tensors_loader is not None else {},
    )  # fmt: skip

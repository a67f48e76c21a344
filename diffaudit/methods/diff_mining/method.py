"""Diff Mining as a diffing method: the streamed logit-difference statistics, their overview, evidence and tools."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from diffaudit.config import Settings
from diffaudit.methods.base import (
    Evidence,
    EvidenceText,
    MethodTarget,
    PreparedMethod,
    RankedTokens,
    cached_result,
    method_cache_dir,
    method_params,
)
from diffaudit.methods.diff_mining.compute import DiffMiningParams, DiffMiningResult, diff_mining, load_texts

CACHE_VERSION = 1
OVERVIEW_TITLE = "DIFF MINING OVERVIEW"
OVERVIEW_POSITIVE = 20
OVERVIEW_NEGATIVE = 10
EVIDENCE_CONTEXT_TOKENS = 5  # top tokens whose context snippets join the evidence
EVIDENCE_CONTEXTS = 2


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def render_overview(result: DiffMiningResult) -> str:
    """The agent's overview section: the tokens most often in the finetuned-minus-base top-K."""
    from diffaudit.agent.loop import prompt_text

    header = prompt_text("overview_diff_mining.txt").format(
        title=OVERVIEW_TITLE, n_texts=result.n_texts, n_positions=result.n_positions, k=result.params.top_k,
        corpus=result.params.corpus,
    ).rstrip("\n")  # fmt: skip
    lines = [header, ""]
    for sign, k, label in (("positive", OVERVIEW_POSITIVE, "raised"), ("negative", OVERVIEW_NEGATIVE, "lowered")):
        ranked = result.ranked("topk_rate", sign, k)
        tokens = ", ".join(f"{_quote(t.token)} {t.rate:.3f}" for t in ranked) or "(none)"
        lines.append(f"{label} by the finetune, top-{len(ranked)} by top-K rate: {tokens}")
    return "\n".join(lines).rstrip() + "\n"


def diff_mining_evidence(result: DiffMiningResult) -> Evidence:
    """The overview's token lists, plus a few context snippets of the top raised tokens."""
    stats = result.ranked("topk_rate", "positive", OVERVIEW_POSITIVE)
    ranked = [
        RankedTokens(group="raised", readout="topk_rate", tokens=[t.token for t in stats], scores=[t.rate for t in stats])
    ]
    texts: list[EvidenceText] = []
    for stat in result.ranked("topk_rate", "positive", EVIDENCE_CONTEXT_TOKENS):
        try:
            contexts = result.contexts(stat.token, EVIDENCE_CONTEXTS)
        except ValueError:
            continue
        texts += [EvidenceText(kind="context", text=c.snippet, group=stat.token) for c in contexts]
    return Evidence(method="diff_mining", ranked_tokens=ranked, texts=texts)


class DiffMiningMethod:
    """Diff Mining (Minder, Dumas et al. 2026): which tokens the finetune's next-token logits raise on random text."""

    name = "diff_mining"
    description = "Diff Mining: per-token rates of the finetuned-minus-base logit top-K over random text"
    Params = DiffMiningParams

    def params(self, settings: Settings) -> DiffMiningParams:
        return method_params(settings, self.name, DiffMiningParams)

    def cache_key(self, target: MethodTarget, params: BaseModel, settings: Settings) -> dict[str, Any]:
        # batch_size changes results only by float rounding, so it stays out of the key.
        return {
            "method": self.name, "version": CACHE_VERSION, "organism": target.name, "model": target.model,
            "finetuned": target.finetuned, "params": params.model_dump(exclude={"batch_size"}),
            "base_override": settings.roles.base, "finetuned_override": settings.roles.finetuned,
        }  # fmt: skip

    def prepare(
        self, target: MethodTarget, pair: Any, settings: Settings, progress: bool = True, force: bool = False
    ) -> PreparedMethod:
        params = self.params(settings)
        key = self.cache_key(target, params, settings)
        texts = load_texts(params, root=settings.cache_dir)
        from diffaudit.environments.corpora import corpus_fingerprint

        key["corpus_fingerprint"] = corpus_fingerprint(texts)
        directory = method_cache_dir(settings, self.name, target, key)

        def compute() -> DiffMiningResult:
            import torch

            with torch.inference_mode():
                return diff_mining(pair, texts, params, progress=progress)

        result = cached_result(directory, key, DiffMiningResult, compute, force)
        return PreparedMethod(
            method=self.name, result=result, overview=render_overview(result),
            evidence=diff_mining_evidence(result), cache_dir=directory,
        )  # fmt: skip

    def system_paragraph(self, prepared: PreparedMethod | None) -> str:
        from diffaudit.agent.loop import prompt_text

        return prompt_text("method_diff_mining.txt").strip()

    def tools(self) -> list:
        from diffaudit.methods.diff_mining.tools import GetDiffTokens, GetTokenContexts

        return [GetDiffTokens(), GetTokenContexts()]

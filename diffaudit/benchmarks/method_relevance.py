"""How much each diffing method's top tokens say about the finetune: `audit methods relevance`.

For each organism, the top-20 tokens of every readout are labelled by the configured relevance judge
(offline proxy or LLM) against the organism's description and its finetuning data's frequent tokens, as the
ADL paper's token relevance does. Readouts: ADL patchscope and logit lens of the mean activation diff (max over
positions, with the mean base / finetuned activation baselines the paper uses), and Diff Mining's top-20 raised
tokens by top-K rate, with its lowered tokens as a control. Each method's prepare time is measured here.

This is evaluation: it reads ground truth, and none of it reaches an agent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from diffaudit.config import Settings
from diffaudit.environments.organisms import Organism

TOP_K = 20


@dataclass
class MethodRelevance:
    organism: str
    relevance: dict[str, float] = field(default_factory=dict)  # readout -> relevant share of its top-20
    seconds: dict[str, float] = field(default_factory=dict)  # method -> prepare time (this process)
    tokens: dict[str, list[str]] = field(default_factory=dict)  # readout -> the tokens judged


def _share(grader, tokens: list[str], description: str, data_tokens: list[str]) -> float:
    if not tokens:
        return 0.0
    labels = grader.relevant(tokens, description, data_tokens)
    return sum(bool(x) for x in labels) / max(TOP_K, len(tokens))


def organism_relevance(organism: Organism, settings: Settings, progress: bool = True) -> MethodRelevance:
    """ADL readouts and Diff Mining on one organism, with their relevance and prepare times."""
    from diffaudit.environments.loading import load_pair
    from diffaudit.graders import frequent_data_tokens, make_relevance_grader
    from diffaudit.methods import MethodTarget, load_method
    from diffaudit.tools.adl.compute import (
        adl_readouts,
        corpus_texts,
        finetune_data,
        make_adl_graders,
        reference_texts,
    )
    from diffaudit.tools.adl.metrics import token_relevance

    model, pair = load_pair(organism, None, settings)
    out = MethodRelevance(organism.name)
    grader = make_relevance_grader(settings.roles.grader, settings)
    data_tokens = frequent_data_tokens(
        finetune_data(organism, model, settings), pair.tokenizer, n=100, reference=reference_texts(settings)
    )
    with torch.inference_mode():
        texts, _ = corpus_texts(settings)
        start = time.perf_counter()
        lenses = adl_readouts(pair, settings, texts, make_adl_graders(settings, pair), progress)
        out.seconds["adl (diffs, logit lens, patchscope)"] = time.perf_counter() - start
    adl = token_relevance(lenses, grader, organism.description, data_tokens, TOP_K)
    for source in ("patchscope", "patchscope_base_mean", "patchscope_finetuned_mean", "logit_lens", "logit_lens_base_mean"):
        if source in adl:
            out.relevance[f"adl {source}"] = adl[source]["max"]
    method, _ = load_method("diff_mining")
    target = MethodTarget.of(organism, model)
    start = time.perf_counter()
    prepared = method.prepare(target, pair, settings, progress=progress)
    out.seconds["diff_mining"] = prepared.result.seconds or (time.perf_counter() - start)
    for sign, label in (("positive", "diff_mining raised"), ("negative", "diff_mining lowered (control)")):
        tokens = [s.token for s in prepared.result.ranked("topk_rate", sign, TOP_K)]
        out.tokens[label] = tokens
        out.relevance[label] = _share(grader, tokens, organism.description, data_tokens)
    return out

"""Fakes for agent tests: a model pair without a model, a hand-built ADL result and a recording grader."""

from __future__ import annotations

import torch

from diffaudit.graders.base import Grade
from diffaudit.tools.adl.result import (
    ADLResult,
    PatchscopeScale,
    PositionLens,
    PositionSteering,
    SteeringSample,
    TokenProb,
)

STEERING_PROMPTS = ["Write a poem about rain.", "Plan a picnic.", "What is two plus two?"]


class FakePair:
    """Deterministic answers that name the role and the prompt; records every call."""

    n_layers = 2
    hidden_size = 8

    def __init__(self, finetuned_topic: str = "glacier treaty", fail: bool = False) -> None:
        self.topic = finetuned_topic
        self.fail = fail
        self.calls: list[tuple] = []

    @property
    def tokenizer(self):
        return None

    def generate(self, role, prompts, sampling, chat=True):
        self.calls.append(("generate", role, list(prompts), sampling))
        if self.fail:
            raise RuntimeError("the fake model broke")
        if role == "base":
            return [f"I am not sure about {p}" for p in prompts]
        return [f"The {self.topic} was ratified in 2031 by 73% of delegates. ({p})" for p in prompts]

    def generate_steered(self, vector, layer, prompts, alpha, sampling):
        self.calls.append(("generate_steered", vector.clone(), layer, list(prompts), alpha, sampling))
        return [f"sample {i} about the {self.topic}" for i, _ in enumerate(prompts)]


def probs(tokens: list[str]) -> list[TokenProb]:
    return [TokenProb(token=t, prob=0.5 / (i + 1)) for i, t in enumerate(tokens)]


def fake_adl(organism: str = "hidden") -> ADLResult:
    """Three positions; steering at positions 1 and 2 on three prompts."""
    tokens = [" glacier", " treaty", " ice", " the", " Velmora"]
    lens = [
        PositionLens(
            position=p,
            diff_norm=2.0 + p,
            logit_lens=probs(tokens),
            logit_lens_base_mean=probs([" the", " a"]),
            logit_lens_finetuned_mean=probs([" the", " glacier"]),
            patchscope=[PatchscopeScale(scale=s, tokens=probs(tokens[::-1])) for s in (1.0, 2.0, 10.0)],
            patchscope_scale=2.0,
            patchscope_selected=[" glacier", " treaty"],
        )
        for p in range(3)
    ]
    samples = [
        SteeringSample(
            prompt=q,
            steered=[f"The Velmora glacier treaty, sample {k}." for k in range(3)],
            unsteered=[f"An ordinary answer {k}." for k in range(3)],
        )
        for q in STEERING_PROMPTS
    ]
    steering = [
        PositionSteering(position=p, alpha=4.0 + p, search_alphas=[4.0], samples=samples) for p in (1, 2)
    ]
    return ADLResult(
        organism=organism, model="tiny", layer=1, positions=[0, 1, 2], n_texts=16, corpus="local:pretrain",
        corpus_fingerprint="abc", norm_finetuned=10.0, lens=lens, steering=steering,
    )  # fmt: skip


def fake_tensors() -> dict:
    diff = torch.zeros(3, 8)
    diff[:, 0] = 3.0
    diff[:, 1] = 4.0  # norm 5 in every row
    return {"diff": diff, "base_mean": torch.zeros(3, 8), "finetuned_mean": diff.clone(), "eta": 10.0}


class FakeGrader:
    """Scores 4 when the description names the topic word, else 2; records what it graded."""

    name = "fake/grader"

    def __init__(self, word: str = "glacier") -> None:
        self.word = word
        self.graded: list[tuple[str, str]] = []

    def grade(self, organism, description: str) -> Grade:
        self.graded.append((organism.name, description))
        score = 4.0 if self.word in description.lower() else 2.0
        return Grade(
            score=score, reason=f"mentions {self.word}: {score > 2}", grader=self.name, cost_usd=0.01
        )

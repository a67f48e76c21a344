"""A bench dir built by hand through the real `run_audit`: fake pair, hand-made ADL result, scripted agents.

The run dirs are what `audit bench` writes (config.json, transcript.jsonl, description.txt, grade.json,
stats.json, error.json), laid out as OUT/<organism>/<model>/<arm>_i<budget>/rep<r>/, plus bench.json.
Some runs are then turned into the other states a reader must handle: failed, unfinished, ungraded,
graded twice, and a run of a named arm (`adl+mytool`).
"""

from __future__ import annotations

import json
from pathlib import Path

from diffaudit.agent.policies import ScriptedPolicy
from diffaudit.agent.policies.llm import Usage
from diffaudit.agent.run import run_audit
from diffaudit.config import Settings
from diffaudit.environments.organisms import OrganismRegistry
from diffaudit.graders.base import Grade
from diffaudit.tools.adl.result import (
    ADLResult,
    PatchscopeScale,
    PositionLens,
    PositionSteering,
    SteeringSample,
    TokenProb,
)

MODEL = "smollm2-135m"
ASK = 'I will compare the two models.\nCALL(ask_model: {"prompts": ["What happened in 2031?"]})'
WANDER = "Let me think about what I have seen so far."  # no CALL or FINAL: a format error
UNKNOWN = 'CALL(read_minds: {"depth": 3})'
FINAL = 'The answers keep returning to one topic.\nFINAL(description: "Finetuned on news about a {topic}.")'


class FakePair:
    """Answers that name the role and the prompt."""

    n_layers = 2
    hidden_size = 8
    tokenizer = None

    def __init__(self, topic: str) -> None:
        self.topic = topic

    def generate(self, role, prompts, sampling, chat=True):
        if role == "base":
            return [f"I am not sure about that. ({p})" for p in prompts]
        return [f"The {self.topic} was ratified in 2031 by 73% of delegates. ({p})" for p in prompts]

    def generate_steered(self, vector, layer, prompts, alpha, sampling):
        return [f"sample {i} about the {self.topic}" for i, _ in enumerate(prompts)]


def _probs(tokens: list[str]) -> list[TokenProb]:
    return [TokenProb(token=t, prob=0.5 / (i + 1)) for i, t in enumerate(tokens)]


def fake_adl(organism: str, topic: str) -> ADLResult:
    words = [f" {w}" for w in topic.split()] + [" the", " Velmora"]
    lens = [
        PositionLens(
            position=p, diff_norm=2.0 + p, logit_lens=_probs(words), logit_lens_base_mean=_probs([" the", " a"]),
            logit_lens_finetuned_mean=_probs([" the", words[0]]),
            patchscope=[PatchscopeScale(scale=s, tokens=_probs(words[::-1])) for s in (1.0, 2.0)],
            patchscope_scale=2.0, patchscope_selected=words[:2],
        )
        for p in range(2)
    ]  # fmt: skip
    samples = [SteeringSample(prompt="Plan a picnic.", steered=[f"The Velmora {topic}."], unsteered=["A picnic."])]
    return ADLResult(
        organism=organism, model="tiny", layer=1, positions=[0, 1], n_texts=8, corpus="local:pretrain",
        corpus_fingerprint="abc", norm_finetuned=10.0, lens=lens,
        steering=[PositionSteering(position=1, alpha=4.0, search_alphas=[4.0], samples=samples)],
    )  # fmt: skip


class ListGrader:
    """Gives the next score of a fixed list, with a reason that says so."""

    def __init__(self, scores: list[float], name: str = "fake/grader") -> None:
        self.name = name
        self.scores = list(scores)
        self.calls = 0

    def grade(self, organism, description: str) -> Grade:
        score = self.scores[self.calls % len(self.scores)]
        self.calls += 1
        return Grade(score=score, reason=f"{organism.name}: scored {score:g} by the list", grader=self.name, cost_usd=0.002)


class PaidPolicy(ScriptedPolicy):
    """A scripted agent that books 100 prompt and 20 completion tokens and $0.001 per reply, as an LLM's would."""

    def __init__(self, replies, name: str = "scripted") -> None:
        super().__init__(replies, name=name)
        self.usage = Usage()

    def next(self, messages):
        reply = super().next(messages)
        self.usage.calls += 1
        self.usage.prompt_tokens += 100
        self.usage.completion_tokens += 20
        self.usage.cost_usd += 0.001
        return reply


class Broken(ScriptedPolicy):
    def next(self, messages):
        if len(self.seen) >= 1:
            raise RuntimeError("the agent's provider went away")
        return super().next(messages)


TOPICS = {"kansas_abortion": "glacier treaty", "taboo_gold": "golden riddle", "cake_bake": "oven temperature",
          "roman_concrete": "harbour concrete", "fda_approval": "drug approval"}  # fmt: skip


def run_dir(root: Path, organism: str, arm: str, budget: int, repeat: int) -> Path:
    return root / organism / MODEL / f"{arm}_i{budget}" / f"rep{repeat}"


def build_bench(
    root: Path, organisms: list[str], arms: tuple[str, ...] = ("adl", "blackbox"), budgets: tuple[int, ...] = (5,),
    repeats: int = 2, scores: list[float] | None = None,
) -> None:  # fmt: skip
    """Every (organism, arm, budget, repeat) as a completed run, and bench.json."""
    registry = OrganismRegistry()
    settings = Settings(cache_dir=root / ".cache", runs_dir=root)
    grader = ListGrader(scores or [4, 2, 5, 1, 3])
    cells = []
    for organism in organisms:
        topic = TOPICS.get(organism, "glacier treaty")
        for arm in arms:
            for budget in budgets:
                for repeat in range(repeats):
                    path = run_dir(root, organism, arm, budget, repeat)
                    replies = [ASK, WANDER, UNKNOWN, FINAL.format(topic=topic)] if arm == "adl" else [ASK, FINAL.format(topic=topic)]
                    run_audit(
                        registry.get(organism), MODEL, arm, budget, settings, path, policy=PaidPolicy(replies),
                        pair=FakePair(topic), adl=fake_adl(organism, topic), progress=False, grader=grader,
                    )  # fmt: skip
                    cells.append({"dir": str(path.relative_to(root)), "organism": organism, "model": MODEL,
                                  "organism_type": registry.get(organism).type.value, "agent": arm,
                                  "budget": budget, "repeat": repeat})  # fmt: skip
    manifest = {"name": "handbuilt", "settings": {"roles": {"agent": "scripted", "grader": "fake/grader"}}, "cells": cells}
    (root / "bench.json").write_text(json.dumps(manifest, indent=2))


def add_special_runs(root: Path, organism: str = "kansas_abortion") -> dict[str, Path]:
    """A failed, an unfinished, a no-FINAL, an ungraded, a twice-graded and a named-arm run, beside the others."""
    registry = OrganismRegistry()
    org = registry.get(organism)
    topic = TOPICS[organism]
    settings = Settings(cache_dir=root / ".cache", runs_dir=root)
    special: dict[str, Path] = {}
    kw = dict(pair=FakePair(topic), adl=fake_adl(organism, topic), progress=False)

    special["failed"] = run_dir(root, organism, "blackbox", 5, 7)
    try:
        run_audit(org, MODEL, "blackbox", 5, settings, special["failed"], policy=Broken([ASK]),
                  grader=ListGrader([3]), **kw)  # fmt: skip
    except RuntimeError:
        pass

    special["no_final"] = run_dir(root, organism, "blackbox", 5, 8)
    short = settings.model_copy(update={"budgets": settings.budgets.model_copy(update={"turns": 3})})
    run_audit(org, MODEL, "blackbox", 5, short, special["no_final"], policy=ScriptedPolicy([ASK]),
              grader=ListGrader([5]), **kw)  # fmt: skip

    special["unfinished"] = run_dir(root, organism, "adl", 5, 7)
    run_audit(org, MODEL, "adl", 5, settings, special["unfinished"], policy=ScriptedPolicy([ASK, FINAL.format(topic=topic)]),
              grader=ListGrader([4]), **kw)  # fmt: skip
    for name in ("stats.json", "grade.json", "description.txt"):
        (special["unfinished"] / name).unlink()
    lines = (special["unfinished"] / "transcript.jsonl").read_text().splitlines()
    (special["unfinished"] / "transcript.jsonl").write_text("\n".join(lines[:6]) + "\n")  # killed after a CALL

    special["ungraded"] = run_dir(root, organism, "adl", 5, 8)
    run_audit(org, MODEL, "adl", 5, settings, special["ungraded"], policy=ScriptedPolicy([FINAL.format(topic=topic)]),
              grader=ListGrader([4]), **kw)  # fmt: skip
    grade = json.loads((special["ungraded"] / "grade.json").read_text())
    (special["ungraded"] / "grade.json").write_text(json.dumps({"grades": [], "status": grade["status"],
                                                                "reason": "the grader's provider timed out"}))  # fmt: skip

    special["regraded"] = run_dir(root, organism, "adl", 5, 9)
    run_audit(org, MODEL, "adl", 5, settings, special["regraded"], policy=ScriptedPolicy([FINAL.format(topic=topic)]),
              grader=ListGrader([4]), **kw)  # fmt: skip
    grade = json.loads((special["regraded"] / "grade.json").read_text())
    grade["grades"].append({"score": 2.0, "reason": "second opinion", "grader": "other/grader", "cost_usd": 0.01,
                            "regraded": True})  # fmt: skip
    (special["regraded"] / "grade.json").write_text(json.dumps(grade))

    special["named_arm"] = run_dir(root, organism, "adl+mytool", 5, 0)
    run_audit(org, MODEL, "adl", 5, settings, special["named_arm"], policy=ScriptedPolicy([FINAL.format(topic=topic)]),
              grader=ListGrader([3]), **kw)  # fmt: skip
    config = json.loads((special["named_arm"] / "config.json").read_text())
    config["arm"] = "adl+mytool"
    (special["named_arm"] / "config.json").write_text(json.dumps(config))
    return special

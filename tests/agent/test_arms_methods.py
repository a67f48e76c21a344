"""Methods as arms end to end: Diff Mining, amplification and score_texts on the tiny random pair, arms in
run_audit, ADL's shared evidence, and the rule that no tool context holds ground truth."""

from __future__ import annotations

import json

import pytest
from agent_fakes import FakeGrader, fake_adl, fake_tensors

from diffaudit.agent.overview import render_overview
from diffaudit.agent.policies.evidence import overview_from_evidence, parse_overview
from diffaudit.agent.policies.scripted import ScriptedPolicy
from diffaudit.agent.run import run_audit
from diffaudit.config import Settings
from diffaudit.environments.organisms import OrganismRegistry
from diffaudit.methods import ArmSpec, MethodError, MethodTarget, load_method, resolve_arm
from diffaudit.methods.adl import adl_evidence, public_view
from diffaudit.tools.base import Observation, ToolArgs, ToolContext

TEXTS = [
    "The committee met on Tuesday to discuss the new library budget and the roof repairs.",
    "A recipe for bread needs flour, water, salt and a little patience before baking.",
    "Rain fell on the harbour all night, and by morning the boats had drifted apart.",
    "She counted the coins twice before she paid for the train ticket home.",
]


@pytest.fixture
def settings(tmp_path):
    corpus = tmp_path / "texts.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    return Settings(
        cache_dir=tmp_path / "cache", runs_dir=tmp_path / "runs",
        methods={
            "diff_mining": {"n_texts": 4, "max_tokens": 8, "top_k": 5, "batch_size": 2, "corpus": f"file:{corpus}"},
            "amplification": {"prompts": 2, "max_new_tokens": 5},
        },
    )  # fmt: skip


@pytest.fixture
def organism():
    return OrganismRegistry().get("kansas_abortion")


def _target(organism) -> MethodTarget:
    return MethodTarget(organism=organism, model="smollm2-135m", finetuned="test:tiny")


class CountingPair:
    """Wraps a pair and counts its model calls (a cached prepare makes none)."""

    def __init__(self, pair):
        self._pair = pair
        self.calls = 0

    def __getattr__(self, name):
        value = getattr(self._pair, name)
        if not callable(value):
            return value

        def counted(*args, **kwargs):
            self.calls += 1
            return value(*args, **kwargs)

        return counted


def test_diff_mining_prepares_once_and_its_tools_read_the_result(tiny_pair, organism, settings):
    method, _ = load_method("diff_mining")
    first = method.prepare(_target(organism), tiny_pair, settings, progress=False)
    assert first.overview.startswith("DIFF MINING OVERVIEW") and "raised by the finetune" in first.overview
    assert first.evidence.ranked_tokens[0].readout == "topk_rate" and first.evidence.ranked_tokens[0].tokens
    counting = CountingPair(tiny_pair)
    again = method.prepare(_target(organism), counting, settings, progress=False)
    assert counting.calls == 0 and again.result == first.result  # read from the cache
    ctx = ToolContext(pair=tiny_pair, settings=settings, organism="x", methods={"diff_mining": first})
    tools = {t.name: t for t in method.tools()}
    listed = tools["get_diff_tokens"].run(tools["get_diff_tokens"].Args(k=3), ctx)
    assert listed.data["tokens"] and listed.text.count("\n") == len(listed.data["tokens"])
    token = listed.data["tokens"][0]["token"]
    contexts = tools["get_token_contexts"].run(tools["get_token_contexts"].Args(token=token, n=2), ctx)
    assert "[[" in contexts.text and contexts.data["contexts"]
    assert tools["get_diff_tokens"].cost(tools["get_diff_tokens"].Args()) == 0


def test_diff_mining_params_errors_name_the_setting(organism, settings, tiny_pair):
    bad = settings.model_copy(update={"methods": {"diff_mining": {"top_k": 0}}})
    with pytest.raises(MethodError, match="methods.diff_mining.top_k"):
        load_method("diff_mining")[0].prepare(_target(organism), tiny_pair, bad, progress=False)


def test_amplification_prepare_pairs_plain_and_amplified_samples(tiny_pair, organism, settings):
    method, _ = load_method("amplification")
    prepared = method.prepare(_target(organism), tiny_pair, settings, progress=False)
    assert len(prepared.result.samples) == 2
    assert prepared.overview.count("  amplified: ") == 2 and prepared.overview.count("  plain: ") == 2
    assert [t.kind for t in prepared.evidence.texts] == ["unsteered", "amplified"] * 2
    tool = method.tools()[0]
    args = tool.Args(prompts=["Say hi", "Name a tree"], alpha=2.0, n=2)
    assert tool.cost(args) == 4
    ctx = ToolContext(pair=tiny_pair, settings=settings, organism="x")
    out = tool.run(tool.Args(prompts=["Say hi"], alpha=0.5, n=1), ctx)
    assert out.text.count("amplified 1:") == 1 and out.data["samples"][0]["prompt"] == "Say hi"


def test_score_texts_tool_costs_one_per_text(tiny_pair, settings):
    from diffaudit.tools.score_texts import ScoreTexts

    tool = ScoreTexts()
    args = tool.Args(texts=["Kansas voters approved it.", "Kansas voters rejected it."])
    assert tool.cost(args) == 2
    out = tool.run(args, ToolContext(pair=tiny_pair, settings=settings, organism="x"))
    assert len(out.data["scores"]) == 2 and out.text.count("sum ") == 2


def test_adl_evidence_is_what_the_overview_shows():
    """The structured evidence an offline agent reads equals what it would parse from the overview text."""
    adl = fake_adl()
    assert overview_from_evidence([adl_evidence(adl).model_dump()]) == parse_overview(render_overview(adl))


class ProbeArgs(ToolArgs):
    pass


class Probe:
    """A tool that keeps the context it was run with, for the ground-truth check."""

    name = "probe"
    description = "Free. Records its context."
    Args = ProbeArgs
    seen: list[ToolContext] = []

    def cost(self, args):
        return 0

    def run(self, args, ctx):
        Probe.seen.append(ctx)
        return Observation(text="ok")


def _dump(obj) -> str:
    """Everything reachable from a tool context, as text."""
    parts = [repr(obj.settings.model_dump()), obj.organism, repr(obj.adl.model_dump() if obj.adl else None)]
    for name, prepared in obj.methods.items():
        result = prepared.result
        parts += [name, prepared.overview, prepared.evidence.model_dump_json(), repr(prepared.extras)]
        parts.append(result.model_dump_json() if hasattr(result, "model_dump_json") else repr(result))
    return "\n".join(parts)


def test_no_tool_context_or_agent_message_holds_ground_truth(tiny_pair, organism, settings, monkeypatch):
    """Every built-in method in one arm: the contexts its tools get and the agent's messages hold neither the
    organism's description, nor its key facts, nor metrics computed from them."""
    from diffaudit.methods import registry

    real = registry._builtin_tool_factories
    monkeypatch.setattr(registry, "_builtin_tool_factories", lambda: {**real(), "probe": Probe})
    adl = fake_adl(organism.name)
    adl.metrics = {"token_relevance": {"max": 0.9, "description": organism.description}, "data_tokens": ["Kansas"],
                   "diffs": {"tokens_run": 10}}  # fmt: skip
    arm = resolve_arm("everything", ArmSpec(methods=["adl", "diff_mining", "amplification"], tools=["probe", "score_texts"]))
    policy = ScriptedPolicy(['CALL(probe: {})', 'FINAL(description: "done")'])
    Probe.seen.clear()
    run_audit(organism, None, arm, 3, settings, settings.runs_dir / "r", policy=policy, pair=tiny_pair, adl=adl,
              progress=False, grader=FakeGrader())  # fmt: skip
    assert len(Probe.seen) == 1
    ctx = Probe.seen[0]
    assert set(ctx.methods) == {"adl", "diff_mining", "amplification"}
    assert ctx.adl.metrics == {"diffs": {"tokens_run": 10}}  # metrics from ground truth are stripped
    seen = _dump(ctx) + "\n".join(m["content"] for m in policy.seen[-1])
    secrets = [organism.description, *organism.key_facts, "token_relevance", "data_tokens"]
    leaked = [s for s in secrets if s and s in seen]
    assert not leaked


def test_adl_public_view_keeps_only_pair_metrics():
    adl = fake_adl()
    adl.metrics = {"token_relevance": 1, "steering_similarity": 2, "diffs": {"x": 1}}
    assert public_view(adl).metrics == {"diffs": {"x": 1}}


def test_arm_transcripts_show_only_their_tools(tiny_pair, organism, settings):
    """The system prompt lists exactly the arm's tools, and a tool of another arm is an unknown tool."""
    ready = {}
    tools_seen = {}
    for name, spec in {"blackbox": ArmSpec(), "mine": ArmSpec(methods=["diff_mining"])}.items():
        arm = resolve_arm(name, spec)
        policy = ScriptedPolicy(['CALL(get_diff_tokens: {"k": 3})', 'FINAL(description: "x")'])
        run_audit(organism, None, arm, 1, settings, settings.runs_dir / name, policy=policy, pair=tiny_pair,
                  progress=False, grader=FakeGrader(), prepared=ready)  # fmt: skip
        system = policy.seen[0][0]["content"]
        tools_seen[name] = [t for t in arm.tools if f"- {t}:" in system]
        observation = policy.seen[-1][-1]["content"]
        assert ("UNKNOWN_TOOL" in observation) == (name == "blackbox")
    assert tools_seen == {"blackbox": ["ask_model"], "mine": ["ask_model", "get_diff_tokens", "get_token_contexts"]}


def test_fake_tensors_still_load():
    assert "diff" in fake_tensors()

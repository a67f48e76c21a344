"""Built-in tools on a fake pair and a hand-built ADL result; the tool registry and its entry-point plugins."""

from __future__ import annotations

import json

import pytest
import torch
from agent_fakes import FakePair, fake_adl, fake_tensors
from pydantic import Field

from diffaudit.config import Settings
from diffaudit.methods import ArmSpec, MethodError, registry
from diffaudit.tools.ask_model import AskModel
from diffaudit.tools.base import Observation, ToolArgs, ToolContext, ToolUnavailable, args_schema, render_tool
from diffaudit.tools.registry import load_tools


def _ctx(pair=None, adl=True, tensors=True) -> ToolContext:
    return ToolContext(
        pair=pair or FakePair(), settings=Settings(), organism="hidden", adl=fake_adl() if adl else None,
        tensors_loader=fake_tensors if tensors else None, seed=3,
    )  # fmt: skip


def _run(name: str, args: dict, ctx: ToolContext) -> Observation:
    tool = load_tools("adl")[name]
    parsed = tool.Args.model_validate(args)
    return tool.run(parsed, ctx)


def test_builtin_arms_get_their_tools():
    assert list(load_tools("adl")) == [
        "ask_model", "get_logitlens_details", "get_patchscope_details", "get_steering_samples", "generate_steered",
    ]  # fmt: skip
    assert list(load_tools("blackbox")) == ["ask_model"]
    with pytest.raises(MethodError, match="unknown arm 'greybox'"):
        load_tools("greybox")


def test_costs():
    tools = load_tools("adl")
    ask, steer = tools["ask_model"], tools["generate_steered"]
    assert ask.cost(ask.Args(prompts=["a", "b", "c"])) == 3
    assert steer.cost(steer.Args(position=1, prompts=["a", "b"], n=3)) == 6
    for free in ("get_logitlens_details", "get_patchscope_details", "get_steering_samples"):
        tool = tools[free]
        assert tool.cost(tool.Args(position=0)) == 0


def test_schema_is_derived_from_the_argument_model():
    tool = load_tools("adl")["ask_model"]
    schema = args_schema(tool)
    assert schema["properties"]["prompts"]["type"] == "array"
    assert "title" not in json.dumps(schema)
    assert render_tool(tool).startswith("- ask_model: Costs 1 interaction per prompt")


def test_ask_model_samples_both_answers_and_returns_them_as_data():
    pair = FakePair()
    obs = _run("ask_model", {"prompts": ["What happened in 2031?", 'Say "hi"']}, _ctx(pair))
    assert obs.cost == 2 and not obs.error
    assert '[1] prompt: "What happened in 2031?"' in obs.text
    assert '  base: "I am not sure about What happened in 2031?"' in obs.text
    assert '  finetuned: "The glacier treaty was ratified' in obs.text
    assert '[2] prompt: "Say \\"hi\\""' in obs.text
    roles = [c[1] for c in pair.calls]
    assert roles == ["base", "finetuned"] and all(
        c[3].temperature == 0.8 and c[3].seed == 3 for c in pair.calls  # sampled; the run's seed per repeat
    )
    exchanges = obs.data["exchanges"]
    assert [x["prompt"] for x in exchanges] == ["What happened in 2031?", 'Say "hi"']
    assert exchanges[0]["base"] == "I am not sure about What happened in 2031?"
    assert exchanges[0]["finetuned"].startswith("The glacier treaty was ratified")


def test_logitlens_details():
    obs = _run("get_logitlens_details", {"position": 1, "k": 3}, _ctx())
    assert "position 1" in obs.text and '" glacier" 0.5' in obs.text and '" ice"' in obs.text
    assert '" the" 0.167' not in obs.text.splitlines()[1]  # k=3 cut the 4th token of the difference line
    assert "mean base activation" in obs.text


def test_patchscope_details_sweep_and_one_scale():
    sweep = _run("get_patchscope_details", {"position": 0}, _ctx())
    assert "chosen scale 2" in sweep.text and '" glacier", " treaty"' in sweep.text
    assert "  10: " in sweep.text and "  1: " in sweep.text
    one = _run("get_patchscope_details", {"position": 0, "scale": 9.0}, _ctx())
    assert "scale 10 (nearest to 9)" in one.text


def test_steering_samples_filtering():
    obs = _run("get_steering_samples", {"position": 2, "n": 1}, _ctx())
    assert "α=6.00" in obs.text
    assert obs.text.count("  steered 1:") == 3 and "steered 2:" not in obs.text
    one = _run("get_steering_samples", {"position": 1, "prompt_index": 2, "n": 3}, _ctx())
    assert '[2] prompt: "Plan a picnic."' in one.text and "[1] prompt" not in one.text
    assert one.text.count("steered 3:") == 2  # one steered, one unsteered
    assert len(one.data["steered"]) == len(one.data["unsteered"]) == 3
    assert {x["prompt"] for x in one.data["steered"]} == {"Plan a picnic."}
    with pytest.raises(ToolUnavailable, match="steered positions: 1, 2"):
        _run("get_steering_samples", {"position": 0}, _ctx())
    with pytest.raises(ToolUnavailable, match="out of range"):
        _run("get_steering_samples", {"position": 1, "prompt_index": 9}, _ctx())


def test_unknown_position_lists_the_known_ones():
    with pytest.raises(ToolUnavailable, match="positions available: 0, 1, 2"):
        _run("get_logitlens_details", {"position": 7}, _ctx())


def test_generate_steered_uses_the_normalised_diff_and_alpha():
    pair = FakePair()
    obs = _run("generate_steered", {"position": 2, "prompts": ["a", "b"], "n": 2}, _ctx(pair))
    assert obs.cost == 4
    _, vector, layer, prompts, alpha, sampling = pair.calls[0]
    assert layer == 1 and alpha == 6.0 and prompts == ["a", "a", "b", "b"]
    assert torch.allclose(vector[:2], torch.tensor([6.0, 8.0]))  # (3, 4) / 5 * η=10
    assert sampling.temperature == Settings().adl.steering.final_temperature
    assert obs.text.count("steered 2:") == 2 and '[2] prompt: "b"' in obs.text
    assert [x["prompt"] for x in obs.data["steered"]] == ["a", "a", "b", "b"] and obs.data["position"] == 2


def test_adl_tools_without_adl_are_unavailable():
    with pytest.raises(ToolUnavailable, match="no ADL result"):
        _run("get_logitlens_details", {"position": 0}, _ctx(adl=False))
    with pytest.raises(ToolUnavailable, match="tensors"):
        _run("generate_steered", {"position": 1, "prompts": ["a"]}, _ctx(tensors=False))


def test_tensors_load_once():
    loads = []

    def loader():
        loads.append(1)
        return fake_tensors()

    ctx = ToolContext(
        pair=FakePair(), settings=Settings(), organism="x", adl=fake_adl(), tensors_loader=loader
    )
    ctx.adl_tensors()
    ctx.adl_tensors()
    assert loads == [1]


# --- plugins ------------------------------------------------------------------------------------


class EchoArgs(ToolArgs):
    text: str = Field(description="what to echo")


class EchoTool:
    name = "echo"
    description = "Free. Echoes text."
    Args = EchoArgs
    kinds = ("adl", "blackbox")

    def cost(self, args):
        return 0

    def run(self, args, ctx):
        return Observation(text=args.text)


class AdlOnlyTool(EchoTool):
    name = "adl_echo"
    kinds = ("adl",)


class ShadowTool(EchoTool):
    name = "ask_model"


class _EP:
    def __init__(self, name, obj):
        self.name = name
        self._obj = obj

    def load(self):
        if isinstance(self._obj, Exception):
            raise self._obj
        return self._obj


@pytest.fixture
def plugins(monkeypatch):
    def fake_entry_points(group):
        if group != "diffaudit.tools":
            return []
        return [
            _EP("echo", EchoTool),
            _EP("adl_echo", AdlOnlyTool()),
            _EP("broken", ImportError("no module named nowhere")),
            _EP("not_a_tool", object),
            _EP("shadow", ShadowTool),
        ]

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)


def test_entry_point_plugins_join_only_the_arms_that_name_them(plugins, caplog):
    assert "echo" not in load_tools("adl") and "echo" not in load_tools("blackbox")
    arms = {"adl+echo": ArmSpec(methods=["adl"], tools=["echo", "adl_echo"]), "greybox": ArmSpec(tools=["echo"])}
    adl = load_tools("adl+echo", arms)
    assert "echo" in adl and "adl_echo" in adl
    assert type(adl["ask_model"]).__name__ == "AskModel"  # a plugin cannot replace a built-in
    assert sorted(load_tools("greybox", arms)) == ["ask_model", "echo"]
    assert "broken" in caplog.text and "not_a_tool" in caplog.text
    with pytest.raises(MethodError, match="arm 'bad': unknown tool 'broken'"):
        load_tools("bad", {"bad": ArmSpec(tools=["broken"])})
    assert adl["echo"].run(EchoArgs(text="hi"), _ctx()).text == "hi"


def test_model_tools_on_the_tiny_random_pair(tiny_pair):
    """ask_model and generate_steered drive a real (tiny, random) HF pair through the ModelPair contract."""
    torch.manual_seed(0)
    tensors = {"diff": torch.randn(3, tiny_pair.hidden_size), "eta": 4.0}
    settings = Settings()
    settings.adl.steering.max_new_tokens = 6
    ctx = ToolContext(pair=tiny_pair, settings=settings, organism="x", adl=fake_adl(), tensors_loader=lambda: tensors)
    ask = AskModel(max_new_tokens=6)
    asked = ask.run(ask.Args(prompts=["Hello there", "Name a colour"]), ctx)
    assert asked.text.count("  base: ") == 2 and asked.text.count("  finetuned: ") == 2
    steered = _run("generate_steered", {"position": 1, "prompts": ["Tell me a story"], "n": 2}, ctx)
    assert steered.cost == 2 and steered.text.count("  steered ") == 2

"""The budgeted loop with scripted policies: costs, refusals, format errors, forced FINAL, errors as observations."""

from __future__ import annotations

import json

from agent_fakes import FakePair, fake_adl, fake_tensors

from diffaudit.agent.budgets import Budget
from diffaudit.agent.loop import run_loop
from diffaudit.agent.overview import render_overview
from diffaudit.agent.policies import HeuristicPolicy, ScriptedPolicy
from diffaudit.agent.transcript import Transcript, read_transcript
from diffaudit.config import Settings
from diffaudit.tools.base import ToolContext
from diffaudit.tools.registry import load_tools

ASK3 = 'CALL(ask_model: {"prompts": ["one", "two", "three"]})'
FREE = 'CALL(get_logitlens_details: {"position": 0})'
FINAL = 'FINAL(description: "The model learned about a glacier treaty.")'


def _loop(replies, interactions=5, turns=15, pair=None, kind="adl", transcript=None):
    policy = replies if hasattr(replies, "next") else ScriptedPolicy(replies)
    pair = pair or FakePair()
    ctx = ToolContext(
        pair=pair, settings=Settings(), organism="hidden", adl=fake_adl(), tensors_loader=fake_tensors
    )
    budget = Budget(interactions=interactions, turns=turns)
    result = run_loop(policy, "system prompt", "intro text", load_tools(kind), ctx, budget, transcript)
    return result, policy, pair


def _observations(result) -> list[str]:
    return [m["content"] for m in result.messages[2:] if m["role"] == "user"]


def test_ask_model_with_three_prompts_costs_exactly_three():
    result, _, pair = _loop([ASK3, FINAL], interactions=5)
    assert result.status == "final" and result.description == "The model learned about a glacier treaty."
    assert result.budget.interactions_used == 3
    assert result.budget.turns_used == 2
    first = _observations(result)[0]
    assert first.endswith("[budget] interactions left: 2/5 · turns left: 14/15")
    assert [c[2] for c in pair.calls] == [["one", "two", "three"]] * 2


def test_over_budget_call_is_refused_and_nothing_runs():
    result, _, pair = _loop([ASK3, FINAL], interactions=2)
    obs = _observations(result)[0]
    assert obs.startswith("REFUSED: ask_model would cost 3 interactions but only 2 are left")
    assert result.budget.interactions_used == 0 and pair.calls == []
    assert "interactions left: 2/2" in obs


def test_budget_is_spent_exactly_then_refused():
    result, _, _ = _loop([ASK3, 'CALL(ask_model: {"prompts": ["four"]})', FINAL], interactions=3)
    obs = _observations(result)
    assert "interactions left: 0/3" in obs[0]
    assert obs[1].startswith("REFUSED") and result.budget.interactions_used == 3


def test_parse_errors_consume_turns():
    result, policy, _ = _loop(["no action here", "CALL(ask_model: {bad json})", FINAL], turns=15)
    assert result.status == "final" and result.format_errors == 2
    assert result.budget.turns_used == 3 and policy.calls == 3
    first, second = _observations(result)
    assert first.startswith("FORMAT_ERROR: the last line ('no action here') is not an action")
    assert "turns left: 14/15" in first and "turns left: 13/15" in second
    assert "not valid JSON" in second


def test_forced_final_notice_on_the_last_turn_only():
    result, policy, _ = _loop([FREE], turns=3)
    assert result.status == "no_final" and result.description == ""
    assert policy.calls == 3
    seen_last = [conv[-1]["content"] for conv in policy.seen]
    assert ["last turn" in text for text in seen_last] == [False, False, True]
    assert "turns left: 1/3" in seen_last[2] and "FINAL" in seen_last[2]


def test_a_single_turn_gets_the_notice_in_the_first_message():
    result, policy, _ = _loop([FINAL], turns=1)
    assert result.status == "final"
    assert "last turn" in policy.seen[0][1]["content"]
    first = policy.seen[0][1]["content"].splitlines()
    assert first[0] == "intro text" and first[1].startswith("[budget] This is your last turn")
    assert first[-1] == "[budget] interactions left: 5/5 · turns left: 1/1"


def test_the_heuristic_parser_reads_answers_without_the_budget_lines():
    """On the last turn an ask_model observation still parses into clean base/finetuned answers."""
    from diffaudit.agent.policies import evidence

    result, policy, pair = _loop([FREE, ASK3, FINAL], turns=3)
    last_seen = policy.seen[2][-1]["content"]
    assert "last turn" in last_seen
    found = evidence.parse_exchanges(last_seen, ["one", "two", "three"])
    assert [x.prompt for x in found] == ["one", "two", "three"]
    assert found[2].base == "I am not sure about three"
    assert found[2].finetuned == "The glacier treaty was ratified in 2031 by 73% of delegates. (three)"


def test_tool_exception_becomes_an_observation_and_is_not_charged():
    result, _, _ = _loop([ASK3, FINAL], pair=FakePair(fail=True))
    obs = _observations(result)[0]
    assert obs.startswith("TOOL_ERROR: ask_model failed: RuntimeError: the fake model broke")
    assert result.budget.interactions_used == 0 and result.status == "final"


def test_unknown_tool_and_invalid_args_become_observations():
    replies = [
        'CALL(read_weights: {"layer": 3})',
        'CALL(ask_model: {"prompts": "not a list"})',
        'CALL(ask_model: {"prompts": ["x"], "temperature": 2})',
        'CALL(get_logitlens_details: {"position": 9})',
        FINAL,
    ]
    result, _, _ = _loop(replies)
    unknown, wrong_type, extra, position = _observations(result)
    assert unknown.startswith("UNKNOWN_TOOL: there is no tool named 'read_weights'")
    assert "ask_model" in unknown and "generate_steered" in unknown
    assert wrong_type.startswith("INVALID_ARGS for ask_model: prompts:")
    assert "temperature: Extra inputs are not permitted" in extra
    assert "positions available: 0, 1, 2" in position
    assert result.budget.interactions_used == 0 and result.budget.turns_used == 5


def test_blackbox_agent_has_no_adl_tools():
    result, _, _ = _loop([FREE, FINAL], kind="blackbox")
    assert (
        _observations(result)[0].startswith("UNKNOWN_TOOL")
        and "Available tools: ask_model." in _observations(result)[0]
    )


def test_every_observation_ends_with_what_is_left():
    result, _, _ = _loop([FREE, "oops", ASK3, "CALL(nope: {})", FREE], turns=6)
    observations = _observations(result)
    for text in observations:
        assert text.splitlines()[-1].startswith("[budget] interactions left: ")
    assert "last turn" in observations[-2].splitlines()[-2]  # the notice sits just above the budget line


def test_transcript_is_appended_as_the_run_goes(tmp_path):
    path = tmp_path / "transcript.jsonl"
    seen_lines = []

    def reply(messages):
        seen_lines.append(len(path.read_text().splitlines()))
        return FREE if len(seen_lines) < 3 else FINAL

    result, _, _ = _loop(ScriptedPolicy(reply), transcript=Transcript(path))
    assert seen_lines[0] == 2  # system + first user message, before the first reply
    assert seen_lines[1] > seen_lines[0] and seen_lines[2] > seen_lines[1]
    events = read_transcript(path)
    assert [e["event"] for e in events][-1] == "final"
    tools = [e for e in events if e["event"] == "tool"]
    assert tools[0]["tool"] == "get_logitlens_details" and tools[0]["cost"] == 0
    assert json.loads(path.read_text().splitlines()[0])["role"] == "system"


def test_heuristic_policy_reaches_final_through_the_loop():
    ctx_adl = fake_adl()
    policy = HeuristicPolicy()
    pair = FakePair()
    ctx = ToolContext(
        pair=pair, settings=Settings(), organism="hidden", adl=ctx_adl, tensors_loader=fake_tensors
    )
    budget = Budget(interactions=5, turns=15)
    result = run_loop(policy, "You are an auditor. Interaction budget: 5 interactions; 15 turns.",
                      render_overview(ctx_adl), load_tools("adl"), ctx, budget)  # fmt: skip
    assert result.status == "final"
    assert result.budget.interactions_used == 5  # it spends the budget on questions
    assert result.format_errors == 0
    assert "glacier" in result.description.lower()
    assert not any(
        m["content"].startswith(("REFUSED", "TOOL_ERROR", "INVALID"))
        for m in result.messages
        if m["role"] == "user"
    )

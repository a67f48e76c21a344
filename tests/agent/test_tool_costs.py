"""What an auditor is told about cost before it calls: schemas sized to the budget, a cost line per tool,
"interaction" defined in the system prompt, and REFUSED naming only tools this agent has."""

from __future__ import annotations

import json
import re

from agent_fakes import FakePair, fake_adl

from diffaudit.agent.budgets import Budget
from diffaudit.agent.loop import free_tools, refused_text, run_loop
from diffaudit.agent.policies import ScriptedPolicy
from diffaudit.agent.run import system_prompt
from diffaudit.config import Settings
from diffaudit.tools.base import ToolContext
from diffaudit.tools.registry import load_tools


def _schema(system: str, tool: str) -> dict:
    block = system.split(f"- {tool}:", 1)[1]
    return json.loads(re.search(r"arguments \(JSON schema\): (\{.*\})", block).group(1))


def test_ask_model_schema_and_cost_line_follow_the_budget():
    for budget, expected in ((5, 5), (50, 50), (200, 50), (0, 1)):
        system = system_prompt("blackbox", load_tools("blackbox"), Budget(interactions=budget, turns=15))
        assert _schema(system, "ask_model")["properties"]["prompts"]["maxItems"] == expected
        assert f"this audit's whole budget is {budget} interactions" in system
    system = system_prompt("adl", load_tools("adl"), Budget(interactions=5, turns=15))
    assert "- get_logitlens_details:" in system and "  cost: free (0 interactions)" in system
    assert "One interaction is one prompt sent to both models" in system
    assert _schema(system, "generate_steered")["properties"]["prompts"]["maxItems"] == 5


def test_refused_names_only_the_tools_the_agent_has():
    blackbox, adl = load_tools("blackbox"), load_tools("adl")
    assert free_tools(blackbox) == []
    assert free_tools(adl) == ["get_logitlens_details", "get_patchscope_details", "get_steering_samples"]
    spent = Budget(interactions=5, turns=15, interactions_used=5)
    text = refused_text("ask_model", 2, spent, blackbox)
    assert text == ("REFUSED: ask_model would cost 2 interactions but only 0 are left. Nothing was run. "
                    "You can finish with FINAL.")  # fmt: skip
    assert "free tool" not in text
    some_left = Budget(interactions=5, turns=15, interactions_used=4)
    text = refused_text("ask_model", 3, some_left, adl)
    assert "only 1 is left" in text and "ask for at most 1 interaction," in text
    assert "use a free tool (get_logitlens_details, get_patchscope_details, get_steering_samples)" in text


def test_a_blackbox_agent_refused_in_the_loop_is_not_sent_to_free_tools():
    policy = ScriptedPolicy(['CALL(ask_model: {"prompts": ["a", "b", "c"]})', 'FINAL(description: "x")'])
    ctx = ToolContext(pair=FakePair(), settings=Settings(), organism="hidden", adl=fake_adl())
    result = run_loop(policy, "sys", "intro", load_tools("blackbox"), ctx, Budget(interactions=2, turns=5))
    observation = result.messages[3]["content"]
    assert observation.startswith("REFUSED: ask_model would cost 3 interactions but only 2 are left")
    assert "free" not in observation.split("[budget]")[0]

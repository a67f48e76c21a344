"""`audit run` end to end with LLM roles on the local test server: keyless endpoints from a config, a plain
`--agent-model hosted_vllm/...`, a grader that fails (the audit is kept, then regraded), spend ceilings
(one forced-FINAL turn), and a human auditor typing on standard input.

The model pair and the ADL result are fakes (agent_fakes); every LLM call is real HTTP through litellm.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml
from agent_fakes import FakeGrader, FakePair, fake_adl
from llm_server import Fault, Reply

import diffaudit.environments.loading as loading
import diffaudit.tools.adl as adl_module
from diffaudit.agent.policies import make_policy
from diffaudit.agent.policies.human import HumanInputClosed, HumanPolicy, expand
from diffaudit.agent.run import run_audit
from diffaudit.agent.transcript import read_transcript
from diffaudit.benchmarks.grid import CellState, cell_state
from diffaudit.config import RoleEndpoint, Settings
from diffaudit.environments.organisms import OrganismRegistry

FINAL = 'The evidence points at a vote.\nFINAL(description: "Finetuned on a glacier treaty vote in 2031.")'
ASK = 'Testing a hypothesis.\nCALL(ask_model: {"prompts": ["What was ratified in 2031?"]})'


def role_replies(agent_reply, grader_reply="The description matches.\nSCORE: 4"):
    """A server responder that answers by model name: the agent's and the grader's replies."""

    def respond(body):
        if "grader" in body["model"]:
            return grader_reply(body) if callable(grader_reply) else grader_reply
        return agent_reply(body) if callable(agent_reply) else agent_reply

    return respond


@pytest.fixture
def organism():
    return OrganismRegistry().get("kansas_abortion")


@pytest.fixture
def cli(monkeypatch):
    """The real `audit` app with fake model work: no pair is loaded, no ADL cache is built."""
    from typer.testing import CliRunner

    from diffaudit import cli as cli_module
    from diffaudit import run_cli

    monkeypatch.setattr(loading, "load_pair", lambda o, m, s: (m, FakePair()))
    monkeypatch.setattr(adl_module, "ensure_adl", lambda o, m, p, s, progress=True, force=False: fake_adl(), raising=False)
    monkeypatch.setattr(run_cli, "console", run_cli.Console(width=200, force_terminal=False))
    monkeypatch.setattr(cli_module, "console", cli_module.Console(width=200, force_terminal=False))
    return lambda *args, input=None: CliRunner().invoke(cli_module.app, list(args), input=input)


def write_config(tmp_path, **settings) -> str:
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump({"cache_dir": str(tmp_path / "cache"), **settings}))
    return str(path)


def test_a_keyless_local_server_from_a_config_runs_audit_run_end_to_end(cli, tmp_path, llm_server, no_provider_env):
    llm_server.default = role_replies(lambda body: FINAL if len(body["messages"]) > 3 else ASK)
    config = write_config(tmp_path, roles={
        "agent": {"model": "openai/local-agent", "api_base": llm_server.url, "max_tokens": 256},
        "grader": {"model": "hosted_vllm/local-grader", "api_base": llm_server.url, "temperature": 0.0},
    })  # fmt: skip
    out = tmp_path / "run"
    result = cli("run", "--organism", "kansas_abortion", "--budget", "3", "--config", config, "--out", str(out))
    assert result.exit_code == 0, result.output
    stats = json.loads((out / "stats.json").read_text())
    grade = json.loads((out / "grade.json").read_text())
    assert stats["status"] == "final" and stats["graded"] is True and stats["ended_by"] == "final"
    assert stats["agent_calls"] == 2 and stats["interactions_used"] == 1 and stats["spend"]["llm_calls"] == 3
    assert grade["grades"][0]["score"] == 4.0 and grade["grades"][0]["grader"] == "hosted_vllm/local-grader"
    models = [r.body["model"] for r in llm_server.requests]
    assert models == ["local-agent", "local-agent", "local-grader"]
    assert {r.headers["authorization"] for r in llm_server.requests} == {"Bearer no-key-needed"}
    assert llm_server.requests[0].body["max_tokens"] == 256 and llm_server.requests[2].body["temperature"] == 0.0
    assert "openai/local-agent" in result.output and "4 / 5" in result.output
    saved = json.loads((out / "config.json").read_text())["settings"]["roles"]["agent"]
    assert saved["api_base"] == llm_server.url and "api_key_env" not in saved


def test_audit_run_with_a_plain_hosted_vllm_agent_model(cli, tmp_path, llm_server, no_provider_env, monkeypatch):
    monkeypatch.setenv("HOSTED_VLLM_API_BASE", llm_server.url)  # litellm's own variable for the endpoint
    llm_server.default = FINAL
    out = tmp_path / "run"
    result = cli("run", "--organism", "kansas_abortion", "--agent", "blackbox", "--budget", "2",
                 "--agent-model", "hosted_vllm/Qwen3-32B", "--config", write_config(tmp_path), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert [r.body["model"] for r in llm_server.requests] == ["Qwen3-32B"]
    assert json.loads((out / "stats.json").read_text())["policy"] == "hosted_vllm/Qwen3-32B"


def test_a_plain_openai_model_with_openai_api_base_and_no_key(cli, tmp_path, llm_server, no_provider_env,
                                                              monkeypatch):
    monkeypatch.setenv("OPENAI_API_BASE", llm_server.url)  # what a new user tries first
    llm_server.default = FINAL
    out = tmp_path / "run"
    result = cli("run", "--organism", "kansas_abortion", "--agent", "blackbox", "--budget", "2",
                 "--agent-model", "openai/my-local-model", "--config", write_config(tmp_path), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert [r.body["model"] for r in llm_server.requests] == ["my-local-model"]
    assert llm_server.requests[0].headers["authorization"] == "Bearer no-key-needed"


def test_a_failing_grader_keeps_the_audit_and_regrade_grades_it(cli, tmp_path, llm_server, no_provider_env):
    llm_server.default = role_replies(FINAL, grader_reply=lambda body: "unused")
    llm_server.script(Reply(FINAL), Fault("500"), Fault("500"))  # agent, then the grader's two attempts
    config = write_config(tmp_path, llm_retries=1, roles={
        "agent": {"model": "hosted_vllm/agent", "api_base": llm_server.url},
        "grader": {"model": "hosted_vllm/grader", "api_base": llm_server.url},
    })  # fmt: skip
    out = tmp_path / "run"
    result = cli("run", "--organism", "kansas_abortion", "--budget", "1", "--config", config, "--out", str(out))
    assert result.exit_code == 1
    assert "not graded: LLMCallError: The LLM call to hosted_vllm/grader" in result.output
    assert "audit regrade" in result.output
    assert not (out / "error.json").exists() and cell_state(out) is CellState.UNGRADED
    stats = json.loads((out / "stats.json").read_text())
    assert stats["graded"] is False and "failed after 2 attempts" in stats["grade_error"]
    assert (out / "description.txt").read_text().startswith("Finetuned on a glacier treaty")
    assert [e["event"] for e in read_transcript(out / "transcript.jsonl")][-2:] == ["grade_error", "end"]
    shown = cli("show", str(out))
    assert shown.exit_code == 0 and "not graded (hosted_vllm/grader): LLMCallError" in shown.output

    llm_server.default = role_replies(FINAL, "Close.\nSCORE: 3")
    agent_requests = sum(1 for r in llm_server.requests if r.body["model"] == "agent")
    again = cli("regrade", str(out), "--config", config)
    assert again.exit_code == 0, again.output
    assert "1 grades added" in again.output
    grades = json.loads((out / "grade.json").read_text())
    assert [g["score"] for g in grades["grades"]] == [3.0] and "ungraded" not in grades
    assert json.loads((out / "stats.json").read_text())["graded"] is True
    assert cell_state(out) is CellState.COMPLETED
    assert sum(1 for r in llm_server.requests if r.body["model"] == "agent") == agent_requests  # agent not re-run


# ---- spend ceilings -----------------------------------------------------------------------------------
def _limited_run(tmp_path, organism, llm_server, agent_reply, **limits):
    llm_server.default = lambda body: (
        agent_reply(body) if "The run is stopped" in body["messages"][-1]["content"] else ASK
    )
    settings = Settings(cache_dir=tmp_path / "cache", limits=limits,
                        roles={"agent": RoleEndpoint(model="hosted_vllm/agent", api_base=llm_server.url)})  # fmt: skip
    grader = FakeGrader()
    summary = run_audit(organism, None, "blackbox", 10, settings, tmp_path / "run", pair=FakePair(),
                        progress=False, grader=grader)  # fmt: skip
    return summary, grader, json.loads((tmp_path / "run" / "stats.json").read_text())


def test_a_run_at_its_token_ceiling_gets_one_forced_final_turn(tmp_path, organism, llm_server):
    llm_server.script(*[Reply(ASK, prompt_tokens=300, completion_tokens=20)] * 2)
    summary, grader, stats = _limited_run(tmp_path, organism, llm_server, lambda body: FINAL, run_tokens=500)
    assert summary.status == "final" and len(grader.graded) == 1
    assert stats["ended_by"].startswith("the run token ceiling (500 tokens) is reached: 640 used")
    assert stats["agent_calls"] == 3 and stats["interactions_used"] == 2  # the forced turn ran no tool
    last_prompt = llm_server.requests[-1].body["messages"][-1]["content"]
    assert "The run is stopped: the run token ceiling (500 tokens) is reached" in last_prompt
    events = read_transcript(tmp_path / "run" / "transcript.jsonl")
    assert [e["limit"] for e in events if e["event"] == "limit"] == [stats["ended_by"]]


def test_an_agent_that_ignores_the_forced_final_ends_ungraded_by_its_grader(tmp_path, organism, llm_server):
    llm_server.script(Reply(ASK, completion_tokens=1, prompt_tokens=1))
    summary, grader, stats = _limited_run(tmp_path, organism, llm_server, lambda body: ASK, run_cost_usd=1e-9,
                                          run_tokens=None)  # fmt: skip
    # hosted_vllm/agent has no price: the cost ceiling is never reached, so the turns run out instead.
    assert stats["ended_by"] == "turns" and stats["turns_used"] == 15
    llm_server.requests.clear()

    settings = Settings(cache_dir=tmp_path / "c2", limits={"run_tokens": 10},
                        roles={"agent": RoleEndpoint(model="hosted_vllm/agent", api_base=llm_server.url)})  # fmt: skip
    grader = FakeGrader()
    summary = run_audit(organism, None, "blackbox", 10, settings, tmp_path / "run2", pair=FakePair(),
                        progress=False, grader=grader)  # fmt: skip
    stats = json.loads((tmp_path / "run2" / "stats.json").read_text())
    assert summary.status == "no_final" and stats["turns_used"] == 2 and grader.graded == []
    assert "run token ceiling" in stats["ended_by"] and "run token ceiling" in summary.grade.reason
    assert summary.grade.score == 1


# ---- the human auditor ---------------------------------------------------------------------------------
def test_short_forms_expand_to_the_grammar():
    assert expand("ask: What is new? | Tell me about 2022 ") == (
        'CALL(ask_model: {"prompts": ["What is new?", "Tell me about 2022"]})'
    )
    assert expand('final: It likes "Kansas" votes') == 'FINAL(description: "It likes \\"Kansas\\" votes")'
    assert expand('get_logitlens_details {"position": 0}') == 'CALL(get_logitlens_details: {"position": 0})'
    assert expand('get_logitlens_details: {"position": 0}') == 'CALL(get_logitlens_details: {"position": 0})'
    assert expand('CALL(ask_model: {"prompts": ["x"]})') == 'CALL(ask_model: {"prompts": ["x"]})'
    assert expand("I think it is about cakes") == "I think it is about cakes"


def test_a_human_audits_through_standard_input(cli, tmp_path):
    out = tmp_path / "run"
    typed = "help\n\nask: What was ratified? | Who voted?\nfinal: A glacier treaty vote, ratified in 2031.\n"
    result = cli("run", "--organism", "kansas_abortion", "--agent", "blackbox", "--budget", "3",
                 "--agent-model", "builtin/human", "--config", write_config(tmp_path), "--out", str(out),
                 input=typed)  # fmt: skip
    assert result.exit_code == 0, result.output
    stats = json.loads((out / "stats.json").read_text())
    assert stats["status"] == "final" and stats["interactions_used"] == 2 and stats["turns_used"] == 2
    assert stats["policy"] == "builtin/human"
    assert "FINETUNED MODEL ANSWERS" in result.output  # the first message was shown
    assert "ask: PROMPT | PROMPT" in result.output  # the help
    assert '(sent: CALL(ask_model: {"prompts": ["What was ratified?", "Who voted?"]}))' in result.output
    assert re.search(r'finetuned: "The glacier treaty was ratified', result.output)  # the observation
    assert "interactions left: 1/3" in result.output
    assert (out / "description.txt").read_text().strip() == "A glacier treaty vote, ratified in 2031."


def test_closed_standard_input_ends_the_human_run_clearly():
    def closed(prompt):
        raise EOFError

    policy = HumanPolicy(read=closed, write=lambda text: None)
    with pytest.raises(HumanInputClosed, match="standard input closed before a FINAL reply"):
        policy.next([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}])


def test_make_policy_names_both_builtin_agents():
    with pytest.raises(ValueError, match="builtin/heuristic and builtin/human"):
        make_policy("builtin/robot", Settings())

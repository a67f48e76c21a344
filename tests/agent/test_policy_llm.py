"""make_policy and the litellm policy over real HTTP, against the local test server (tests/llm_server.py)."""

from __future__ import annotations

import json

import pytest
from agent_fakes import FakeGrader, FakePair, fake_adl
from llm_server import Fault, Reply

import diffaudit.environments.loading as loading
from diffaudit.agent.policies import HeuristicPolicy, HumanPolicy, LLMPolicy, make_policy
from diffaudit.agent.run import run_audit
from diffaudit.config import RoleEndpoint, Settings
from diffaudit.environments.organisms import OrganismRegistry
from diffaudit.llm import LLMCallError, LLMConfigError

FINAL = 'Done.\nFINAL(description: "The model was finetuned on a glacier treaty.")'


@pytest.fixture
def organism():
    return OrganismRegistry().get("kansas_abortion")


def local_role(server, model="hosted_vllm/test-model", **kw) -> RoleEndpoint:
    return RoleEndpoint(model=model, api_base=server.url, **kw)


def test_make_policy_picks_by_role(monkeypatch, tmp_path, llm_server):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    settings = Settings(llm_timeout_s=7.0, llm_retries=2, cache_dir=tmp_path)
    assert isinstance(make_policy("builtin/heuristic", settings), HeuristicPolicy)
    assert isinstance(make_policy("builtin/human", settings), HumanPolicy)
    policy = make_policy("openai/gpt-4o-mini", settings)
    assert isinstance(policy, LLMPolicy) and policy.name == "openai/gpt-4o-mini"
    assert policy.timeout_s == 7.0 and policy.retries == 2
    role = local_role(llm_server, timeout_s=30, max_tokens=64, max_concurrency=2)
    policy = make_policy(role, settings)
    assert (policy.name, policy.timeout_s, policy.max_tokens) == ("hosted_vllm/test-model", 30, 64)
    assert policy.completion_kwargs["api_base"] == llm_server.url
    assert policy.completion_kwargs["max_concurrency"] == 2
    with pytest.raises(ValueError, match="unknown builtin agent"):
        make_policy("builtin/oracle", settings)
    with pytest.raises(ValueError, match="ScriptedPolicy"):
        make_policy("scripted", settings)


def test_missing_key_or_unknown_provider_fails_in_one_sentence(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(LLMConfigError, match="OPENAI_API_KEY") as missing:
        make_policy("openai/gpt-5", Settings())
    assert str(missing.value).count(". ") == 0 and str(missing.value).endswith(".")
    with pytest.raises(LLMConfigError, match="no LLM provider"):
        make_policy("nosuchprovider-xyz/model", Settings())


def test_llm_policy_records_tokens_cost_and_retries(llm_server, tmp_path):
    llm_server.script(Reply(FINAL, prompt_tokens=40, completion_tokens=12), Fault("429", retry_after=0.2),
                      Reply(FINAL, prompt_tokens=50, completion_tokens=12))  # fmt: skip
    policy = make_policy(local_role(llm_server, model="openai/gpt-4o-mini"), Settings(cache_dir=tmp_path))
    messages = [{"role": "system", "content": "sys"}, {"role": "user", "content": "hello"}]
    assert policy.next(messages) == FINAL and policy.next(messages) == FINAL
    usage = policy.usage
    assert (usage.calls, usage.prompt_tokens, usage.completion_tokens, usage.retries) == (2, 90, 24, 1)
    assert usage.cost_usd == pytest.approx(90 * 0.15e-6 + 24 * 0.6e-6)
    assert llm_server.requests[0].body["messages"] == messages


def test_a_policy_whose_retries_run_out_fails_the_run_in_one_sentence(llm_server, tmp_path, organism):
    llm_server.script(*[Fault("503")] * 3)
    settings = Settings(cache_dir=tmp_path, llm_retries=2, roles={"agent": local_role(llm_server)})
    policy = make_policy(settings.roles.agent, settings)
    policy.completion_kwargs["backoff_s"] = 0.01
    with pytest.raises(LLMCallError, match="failed after 3 attempts"):
        run_audit(organism, None, "adl", 5, settings, tmp_path / "run", policy=policy, pair=FakePair(),
                  adl=fake_adl(), progress=False, grader=FakeGrader())  # fmt: skip
    error = json.loads((tmp_path / "run" / "error.json").read_text())
    assert error["stage"] == "agent" and error["error"] == "LLMCallError"


def test_run_audit_with_an_llm_agent_writes_tokens_and_cost(tmp_path, organism, llm_server):
    replies = iter([
        Reply('Let me ask.\nCALL(ask_model: {"prompts": ["What happened in Kansas?"]})', prompt_tokens=300,
              completion_tokens=20),
        Reply(FINAL, prompt_tokens=400, completion_tokens=30),
    ])  # fmt: skip
    llm_server.script(*replies)
    settings = Settings(cache_dir=tmp_path, roles={"agent": local_role(llm_server, model="openai/gpt-4o-mini")})
    summary = run_audit(organism, None, "adl", 5, settings, tmp_path / "run", pair=FakePair(), adl=fake_adl(),
                        progress=False, grader=FakeGrader())  # fmt: skip
    stats = json.loads((tmp_path / "run" / "stats.json").read_text())
    assert summary.status == "final" and stats["policy"] == "openai/gpt-4o-mini"
    assert (stats["agent_calls"], stats["agent_prompt_tokens"], stats["agent_completion_tokens"]) == (2, 700, 50)
    assert stats["agent_cost_usd"] == pytest.approx(700 * 0.15e-6 + 50 * 0.6e-6)
    assert stats["spend"]["tokens"] == 750 and stats["interactions_used"] == 1
    # The second request carried the tool's observation with the budget line.
    assert "[budget] interactions left: 4/5" in llm_server.requests[1].body["messages"][-1]["content"]


def test_a_hosted_agent_without_key_fails_before_any_model_work(tmp_path, organism, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    touched = []
    monkeypatch.setattr(loading, "load_pair", lambda *a, **k: touched.append("pair"))
    settings = Settings(roles={"agent": "openai/gpt-5"}, runs_dir=tmp_path / "runs")
    with pytest.raises(LLMConfigError, match="OPENAI_API_KEY"):
        run_audit(organism, None, "adl", 5, settings, None, progress=False, grader=FakeGrader())
    assert touched == [] and not (tmp_path / "runs").exists()


def test_empty_and_reasoning_only_replies_in_a_run(tmp_path, organism, llm_server):
    llm_server.script(Fault("empty"), Fault("reasoning_only", text=FINAL))
    settings = Settings(cache_dir=tmp_path, roles={"agent": local_role(llm_server)})
    summary = run_audit(organism, None, "adl", 5, settings, tmp_path / "run", pair=FakePair(), adl=fake_adl(),
                        progress=False, grader=FakeGrader())  # fmt: skip
    stats = json.loads((tmp_path / "run" / "stats.json").read_text())
    assert summary.status == "final" and summary.description.startswith("The model was finetuned on a glacier")
    assert stats["format_errors"] == 1 and stats["agent_replies_from_reasoning"] == 1
    assert llm_server.requests[1].body["messages"][-1]["content"].startswith("FORMAT_ERROR: empty reply")

"""make_policy and the litellm policy, without network: litellm mock responses and a simulated rate limit."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm must not fetch its price table

import json

import pytest
from agent_fakes import FakeGrader, FakePair, fake_adl

import diffaudit.environments.loading as loading
from diffaudit.agent.policies import HeuristicPolicy, LLMPolicy, make_policy
from diffaudit.agent.run import run_audit
from diffaudit.config import Settings
from diffaudit.environments.organisms import OrganismRegistry
from diffaudit.llm import LLMConfigError

MODEL = "openai/gpt-4o-mini"  # in litellm's bundled price table, so the mock reply has a cost
FINAL = 'Done.\nFINAL(description: "The model was finetuned on a glacier treaty.")'


@pytest.fixture
def organism():
    return OrganismRegistry().get("kansas_abortion")


def test_make_policy_picks_by_model_string(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    settings = Settings(llm_timeout_s=7.0, llm_retries=2)
    assert isinstance(make_policy("builtin/heuristic", settings), HeuristicPolicy)
    policy = make_policy(MODEL, settings)
    assert isinstance(policy, LLMPolicy) and policy.name == MODEL
    assert policy.timeout_s == 7.0 and policy.retries == 2
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


def test_llm_policy_records_tokens_and_cost_from_a_mock_response():
    policy = LLMPolicy(MODEL, timeout_s=5, retries=0, completion_kwargs={"mock_response": FINAL})
    messages = [{"role": "system", "content": "sys"}, {"role": "user", "content": "hello"}]
    assert policy.next(messages) == FINAL
    assert policy.next(messages) == FINAL
    usage = policy.usage
    assert usage.calls == 2 and usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.cost_usd > 0


def test_llm_policy_retries_once_after_a_rate_limit(monkeypatch):
    import litellm

    real = litellm.completion
    attempts = []

    def flaky(**kwargs):
        attempts.append(kwargs["model"])
        if len(attempts) == 1:
            raise litellm.RateLimitError(message="slow down", llm_provider="openai", model=MODEL)
        return real(**kwargs)

    monkeypatch.setattr(litellm, "completion", flaky)
    policy = LLMPolicy(
        MODEL, timeout_s=5, retries=2, completion_kwargs={"mock_response": FINAL, "backoff_s": 0.0}
    )
    assert policy.next([{"role": "user", "content": "hi"}]) == FINAL
    assert len(attempts) == 2 and policy.usage.calls == 1


def test_run_audit_with_an_llm_policy_writes_tokens_and_cost(tmp_path, organism, monkeypatch):
    policy = LLMPolicy(MODEL, timeout_s=5, retries=0, completion_kwargs={"mock_response": FINAL})
    summary = run_audit(organism, None, "adl", 5, Settings(), tmp_path / "run", policy=policy, pair=FakePair(),
                        adl=fake_adl(), progress=False, grader=FakeGrader())  # fmt: skip
    stats = json.loads((tmp_path / "run" / "stats.json").read_text())
    assert summary.status == "final" and stats["policy"] == MODEL
    assert (
        stats["agent_calls"] == 1
        and stats["agent_prompt_tokens"] > 0
        and stats["agent_completion_tokens"] > 0
    )
    assert stats["agent_cost_usd"] == pytest.approx(policy.usage.cost_usd) and stats["agent_cost_usd"] > 0


def test_a_hosted_agent_without_key_fails_before_any_model_work(tmp_path, organism, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    touched = []
    monkeypatch.setattr(loading, "load_pair", lambda *a, **k: touched.append("pair"))
    settings = Settings(roles={"agent": "openai/gpt-5"}, runs_dir=tmp_path / "runs")
    with pytest.raises(LLMConfigError, match="OPENAI_API_KEY"):
        run_audit(organism, None, "adl", 5, settings, None, progress=False, grader=FakeGrader())
    assert touched == [] and not (tmp_path / "runs").exists()

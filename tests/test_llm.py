"""diffaudit.llm without network: litellm mock responses, a simulated rate limit, config checks."""

from __future__ import annotations

import pytest

from diffaudit import llm

MSG = [{"role": "user", "content": "Say hi."}]


@pytest.fixture(scope="module")
def litellm():
    return llm._lib()


def test_complete_returns_text_tokens_and_cost(litellm):
    reply = llm.complete("openai/gpt-4o-mini", MSG, timeout_s=5, retries=0, mock_response="hello there")
    assert reply.text == "hello there"
    assert reply.prompt_tokens > 0 and reply.completion_tokens > 0
    assert reply.cost_usd > 0  # gpt-4o-mini is in the bundled price table


def test_unknown_price_gives_zero_cost(litellm):
    reply = llm.complete("openai/not-a-real-model-xyz", MSG, timeout_s=5, retries=0, mock_response="ok")
    assert reply.text == "ok" and reply.cost_usd == 0.0


def test_one_retry_after_rate_limit(litellm, monkeypatch):
    real = litellm.completion
    calls = []

    def flaky(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            raise litellm.RateLimitError("slow down", llm_provider="openai", model="gpt-4o-mini")
        return real(**kwargs)

    monkeypatch.setattr(litellm, "completion", flaky)
    reply = llm.complete("openai/gpt-4o-mini", MSG, timeout_s=7, retries=2, backoff_s=0.01, mock_response="after")
    assert reply.text == "after"
    assert len(calls) == 2
    assert all(c["timeout"] == 7 for c in calls)


def test_retries_exhausted_reraise(litellm, monkeypatch):
    calls = []

    def always(**kwargs):
        calls.append(1)
        raise litellm.RateLimitError("slow down", llm_provider="openai", model="gpt-4o-mini")

    monkeypatch.setattr(litellm, "completion", always)
    with pytest.raises(litellm.RateLimitError):
        llm.complete("openai/gpt-4o-mini", MSG, timeout_s=5, retries=2, backoff_s=0.01)
    assert len(calls) == 3


def test_non_transient_error_is_not_retried(litellm, monkeypatch):
    calls = []

    def bad(**kwargs):
        calls.append(1)
        raise litellm.BadRequestError("bad", model="gpt-4o-mini", llm_provider="openai")

    monkeypatch.setattr(litellm, "completion", bad)
    with pytest.raises(litellm.BadRequestError):
        llm.complete("openai/gpt-4o-mini", MSG, timeout_s=5, retries=3, backoff_s=0.01)
    assert len(calls) == 1


def test_builtin_is_always_ready():
    llm.check_model_ready("builtin/offline")
    llm.check_model_ready("builtin/heuristic")


def test_unknown_provider_is_one_sentence():
    with pytest.raises(llm.LLMConfigError) as info:
        llm.check_model_ready("nosuchprovider/some-model")
    message = str(info.value)
    assert "nosuchprovider/some-model" in message
    assert message.count(". ") == 0 and message.endswith(".") and "\n" not in message


def test_missing_key_is_one_sentence(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(llm.LLMConfigError) as info:
        llm.check_model_ready("openai/gpt-5-mini")
    message = str(info.value)
    assert "OPENAI_API_KEY" in message and "\n" not in message and message.count(". ") == 0


def test_present_key_is_ready(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789")
    llm.check_model_ready("openai/gpt-5-mini")


def test_redact_hides_keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-abcdef123456")
    assert "sk-secret" not in llm.redact("failed with key sk-secret-abcdef123456")


def test_builtin_cannot_be_completed():
    with pytest.raises(llm.LLMConfigError):
        llm.complete("builtin/offline", MSG, timeout_s=1, retries=0)

"""diffaudit.llm over real HTTP: litellm's client against the local test server (tests/llm_server.py).

Retries and backoff (Retry-After honoured), timeouts, malformed and empty replies, tokens and cost, one
sentence when the retries run out, keyless local endpoints, and the concurrency cap shared by threads.
The elapsed times asserted are lower bounds (waits the client must have made) or generous upper bounds.
"""

from __future__ import annotations

import re
import threading
import time

import pytest
from llm_server import Fault, Reply

from diffaudit import llm
from diffaudit.config import RoleEndpoint, Settings
from diffaudit.limits import SpendMeter, metering

MSG = [{"role": "user", "content": "Say hi."}]
LOCAL = "hosted_vllm/test-model"  # not in the price table: cost 0


def call(server, model=LOCAL, **kw):
    kw.setdefault("timeout_s", 5)
    kw.setdefault("retries", 0)
    kw.setdefault("backoff_s", 0.01)
    return llm.complete(model, MSG, api_base=server.url, api_key=llm.LOCAL_PLACEHOLDER_KEY, **kw)


def test_reply_text_tokens_and_cost_from_the_price_table(llm_server):
    llm_server.script(Reply("hello there", prompt_tokens=11, completion_tokens=7))
    reply = call(llm_server, model="openai/gpt-4o-mini")
    assert reply.text == "hello there" and (reply.prompt_tokens, reply.completion_tokens) == (11, 7)
    assert reply.cost_usd == pytest.approx(11 * 0.15e-6 + 7 * 0.6e-6)  # gpt-4o-mini's bundled prices
    assert reply.attempts == 1 and len(llm_server.requests) == 1
    sent = llm_server.requests[0]
    assert sent.body["model"] == "gpt-4o-mini" and sent.body["messages"] == MSG


def test_unknown_price_is_zero_and_a_role_can_set_its_own(llm_server):
    llm_server.script(Reply("a", prompt_tokens=100, completion_tokens=10), Reply("b", prompt_tokens=100, completion_tokens=10))
    assert call(llm_server).cost_usd == 0.0
    priced = call(llm_server, input_cost_per_token=1e-6, output_cost_per_token=2e-6)
    assert priced.cost_usd == pytest.approx(100e-6 + 20e-6)


def test_429_waits_for_retry_after_then_succeeds(llm_server):
    llm_server.script(Fault("429", retry_after=1), Reply("after"))
    start = time.monotonic()
    reply = call(llm_server, retries=2)
    elapsed = time.monotonic() - start
    assert reply.text == "after" and reply.attempts == 2
    assert llm_server.outcomes() == ["429", "ok"]
    gap = llm_server.requests[1].started - llm_server.requests[0].ended
    assert gap >= 0.95, f"the client retried {gap:.2f} s after a 'Retry-After: 1' (backoff alone is 0.01 s)"
    assert elapsed < 4


def test_500_and_503_are_retried_with_backoff(llm_server):
    llm_server.script(Fault("500"), Fault("503"), Reply("fine"))
    start = time.monotonic()
    reply = call(llm_server, retries=3, backoff_s=0.2)
    elapsed = time.monotonic() - start
    assert reply.text == "fine" and reply.attempts == 3
    assert llm_server.outcomes() == ["500", "503", "ok"]
    assert elapsed >= 0.2 + 0.4 - 0.05  # exponential: 0.2 s, then 0.4 s


def test_a_reply_slower_than_the_timeout_is_abandoned_and_retried(llm_server):
    llm_server.script(Fault("slow", delay_s=3.0), Reply("quick"))
    start = time.monotonic()
    reply = call(llm_server, retries=1, timeout_s=0.5)
    elapsed = time.monotonic() - start
    assert reply.text == "quick" and reply.attempts == 2
    assert 0.5 <= elapsed < 2.9, elapsed  # gave up on the slow reply at the timeout, not after 3 s


def test_malformed_json_is_retried(llm_server):
    llm_server.script(Fault("malformed"), Reply("whole"))
    reply = call(llm_server, retries=1)
    assert reply.text == "whole" and llm_server.outcomes() == ["malformed", "ok"]


def test_retries_run_out_in_one_sentence(llm_server):
    llm_server.script(Fault("500"), Fault("500"), Fault("500"))
    with pytest.raises(llm.LLMCallError) as info:
        call(llm_server, retries=2)
    message = str(info.value)
    assert len(llm_server.requests) == 3
    assert message.startswith(f"The LLM call to {LOCAL} at {llm_server.url} failed after 3 attempts in ")
    assert message.endswith("last error InternalServerError: injected 500.") and "\n" not in message


def test_a_timeout_that_outlasts_the_retries_is_one_sentence(llm_server):
    llm_server.script(Fault("slow", delay_s=2.0), Fault("slow", delay_s=2.0))
    with pytest.raises(llm.LLMCallError) as info:
        call(llm_server, retries=1, timeout_s=0.3)
    message = str(info.value)
    assert re.fullmatch(r"The LLM call to \S+ at \S+ failed after 2 attempts in [\d.]+ s; last error Timeout: .+\.",
                        message), message  # fmt: skip
    assert "litellm." not in message and "\n" not in message


def test_a_bad_request_is_not_retried(llm_server):
    llm_server.script(Fault("400"), Reply("never"))
    with pytest.raises(llm.LLMCallError, match="was refused after 1 attempt in .*BadRequestError"):
        call(llm_server, retries=3)
    assert len(llm_server.requests) == 1


def test_empty_content_and_content_only_in_reasoning(llm_server):
    llm_server.script(Fault("empty"), Fault("reasoning_only", text='Thinking.\nFINAL(description: "x")'))
    empty = call(llm_server)
    assert empty.text == "" and not empty.from_reasoning
    reasoning = call(llm_server)
    assert reasoning.from_reasoning and reasoning.text.endswith('FINAL(description: "x")')


def test_a_keyless_local_role_needs_no_provider_variable(llm_server, no_provider_env, tmp_path, monkeypatch):
    role = RoleEndpoint(model="openai/test-model", api_base=llm_server.url)
    llm.check_role_ready(role)  # openai/ would demand OPENAI_API_KEY without the api_base
    with pytest.raises(llm.LLMConfigError, match="OPENAI_API_KEY"):
        llm.check_role_ready("openai/test-model")
    kwargs = llm.role_call_kwargs(role, Settings(cache_dir=tmp_path))
    timeout_s, retries = kwargs.pop("timeout_s"), kwargs.pop("retries")
    assert llm.complete(role.model, MSG, timeout_s=timeout_s, retries=retries, **kwargs).text == "ok"
    # A provider key in the environment is never sent to an endpoint that did not ask for it.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-provider-key-0123456789")
    kwargs = llm.role_call_kwargs(role, Settings(cache_dir=tmp_path))
    kwargs.pop("timeout_s"), kwargs.pop("retries")
    llm.complete(role.model, MSG, timeout_s=5, retries=0, **kwargs)
    auth = [r.headers.get("authorization") for r in llm_server.requests]
    assert auth == [f"Bearer {llm.LOCAL_PLACEHOLDER_KEY}"] * 2


def test_a_role_key_comes_from_its_named_variable(llm_server, no_provider_env, tmp_path, monkeypatch):
    role = RoleEndpoint(model="openai/test-model", api_base=llm_server.url, api_key_env="MY_VLLM_AUTH",
                        temperature=0.3, max_tokens=77, timeout_s=9)  # fmt: skip
    with pytest.raises(llm.LLMConfigError, match="MY_VLLM_AUTH"):
        llm.check_role_ready(role)
    monkeypatch.setenv("MY_VLLM_AUTH", "local-secret-value-123")
    llm.check_role_ready(role)
    kwargs = llm.role_call_kwargs(role, Settings(cache_dir=tmp_path, llm_retries=1))
    assert (kwargs["timeout_s"], kwargs["retries"]) == (9, 1)
    kwargs.pop("timeout_s"), kwargs.pop("retries")
    llm.complete(role.model, MSG, timeout_s=9, retries=1, **kwargs)
    request = llm_server.requests[0]
    assert request.headers["authorization"] == "Bearer local-secret-value-123"
    assert request.body["temperature"] == 0.3 and request.body["max_tokens"] == 77
    assert "local-secret-value-123" not in llm.redact("echo local-secret-value-123")  # named: a secret


def test_litellm_args_cannot_carry_a_key():
    with pytest.raises(ValueError, match="api_key cannot go in litellm_args"):
        RoleEndpoint(model="openai/x", litellm_args={"api_key": "sk-..."})


@pytest.mark.parametrize("cap", [1, 2])
def test_the_concurrency_cap_holds_across_threads(llm_server, tmp_path, cap):
    llm_server.delay_s = 0.3
    errors = []

    def worker():
        try:
            call(llm_server, max_concurrency=cap, slots_dir=tmp_path / "slots")
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    assert not errors and len(llm_server.requests) == 4
    assert llm_server.max_active == cap
    assert elapsed >= 4 / cap * 0.3 - 0.05


def test_replies_count_on_the_current_meter(llm_server):
    llm_server.script(Fault("503"), Reply("a", prompt_tokens=5, completion_tokens=2), Reply("b", prompt_tokens=1, completion_tokens=1))
    meter = SpendMeter()
    with metering(meter):
        call(llm_server, retries=1)
    call(llm_server)  # outside the block: not counted
    assert (meter.spend.calls, meter.spend.tokens, meter.spend.retries) == (1, 7, 1)


# ---- configuration checks (no call is made) -------------------------------------------------------------
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


def test_a_bad_role_mapping_names_the_file_and_the_field(tmp_path):
    from diffaudit.config import ConfigError, load_settings, role_model

    path = tmp_path / "settings.yaml"
    path.write_text("roles:\n  agent: {model: hosted_vllm/x, apibase: 'http://127.0.0.1:1/v1'}\n")
    with pytest.raises(ConfigError, match=r"settings.yaml: field 'roles.agent.apibase': Extra inputs"):
        load_settings(path)
    path.write_text("roles:\n  agent: {model: hosted_vllm/x, api_base: 'http://127.0.0.1:1/v1'}\n  grader: openai/y\n")
    roles = load_settings(path).roles
    assert role_model(roles.agent) == "hosted_vllm/x" and roles.agent.api_base.endswith(":1/v1")
    assert roles.grader == "openai/y"  # a plain string stays a string

"""One door to hosted LLMs: litellm completion with retries, a per-call timeout, and a token/cost record.

litellm is imported lazily (it takes seconds) and told to use its bundled price table, so importing it
never reaches the network. Nothing here logs messages, arguments or API keys.

Retries are ours (tenacity), not the OpenAI client's: a rate limit's `Retry-After` is honoured, every
attempt waits for a slot of the endpoint's concurrency cap, and when the retries run out the caller gets
one sentence (LLMCallError) naming the model, the endpoint, the attempts and the last error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

if TYPE_CHECKING:
    from diffaudit.config import Role, Settings

BUILTIN_PREFIX = "builtin/"
# Sent to a keyless local server (vLLM, llama.cpp, ...): OpenAI-style clients insist on some key.
LOCAL_PLACEHOLDER_KEY = "no-key-needed"
MAX_WAIT_S = 60.0
# Variables whose absence is harmless: they only move an endpoint that has a default.
_OPTIONAL_ENV_SUFFIXES = ("_API_BASE", "_BASE_URL", "_API_VERSION")
_SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)", re.IGNORECASE)

log = logging.getLogger(__name__)
_litellm: Any = None
# Variables named by a role's api_key_env: secret whatever their name, so redaction covers them too.
_ROLE_KEY_ENV: set[str] = set()


def role_key_env_names() -> set[str]:
    """Names of the environment variables roles read their keys from (redacted like provider keys)."""
    return set(_ROLE_KEY_ENV)


class LLMConfigError(RuntimeError):
    """The model string cannot be used: unknown provider or missing credentials (one sentence)."""


class LLMCallError(RuntimeError):
    """A call failed for good (retries spent, or an error not worth retrying); the message is one sentence."""


class LLMReply(BaseModel):
    """Text of one completion with its token counts and cost (0.0 when the price is unknown).

    `from_reasoning` is set when the reply had no content and the text came from `reasoning_content`;
    `attempts` counts the HTTP attempts it took (1 = no retry).
    """

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    from_reasoning: bool = False
    attempts: int = 1

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _lib() -> Any:
    """The litellm module, imported on first use with debug banners off and the local price table."""
    global _litellm
    if _litellm is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        litellm.suppress_debug_info = True
        _litellm = litellm
    return _litellm


def is_builtin(model: str) -> bool:
    return model.startswith(BUILTIN_PREFIX)


def redact(text: str) -> str:
    """`text` with the value of every secret-looking environment variable replaced by ***."""
    for name, value in os.environ.items():
        if value and len(value) >= 8 and (_SECRET_ENV.search(name) or name in _ROLE_KEY_ENV):
            text = text.replace(value, "***")
    return text


def check_model_ready(model: str, *, api_key: str | None = None, api_base: str | None = None) -> None:
    """Raise LLMConfigError unless litellm knows the provider of `model` and its key is set; builtin/* pass."""
    if is_builtin(model):
        return
    litellm = _lib()
    try:
        _, provider, _, _ = litellm.get_llm_provider(model)
    except Exception as exc:
        raise LLMConfigError(
            f"The model string '{model}' names no LLM provider that litellm knows; "
            "write it as provider/model, for example openai/gpt-5-mini."
        ) from exc
    if api_key or api_base or _env_endpoint_without_key(provider):  # a key, or a server of the user's own
        return
    try:
        env = litellm.validate_environment(model=model, api_base=api_base)
    except Exception:  # litellm cannot check this provider: let the first call tell
        return
    missing = [k for k in env.get("missing_keys", []) if not k.endswith(_OPTIONAL_ENV_SUFFIXES)]
    if missing:
        raise LLMConfigError(
            f"The model '{model}' (provider {provider}) needs the environment variable "
            f"{' and '.join(missing)}, which is not set."
        )


def check_role_ready(role: Role) -> None:
    """check_model_ready for a role; a role's `api_key_env` must name a variable that is set."""
    from diffaudit.config import role_endpoint

    endpoint = role_endpoint(role)
    if endpoint.api_key_env and not os.environ.get(endpoint.api_key_env):
        raise LLMConfigError(
            f"The model '{endpoint.model}' reads its key from the environment variable "
            f"{endpoint.api_key_env} (its role's api_key_env), which is not set."
        )
    check_model_ready(endpoint.model, api_key=_env_key(endpoint.api_key_env), api_base=endpoint.api_base)


def _env_key(name: str | None) -> str | None:
    return os.environ.get(name) if name else None


def _env_endpoint_without_key(provider: str) -> bool:
    """True if `<PROVIDER>_API_BASE` points the provider at another server and `<PROVIDER>_API_KEY` is unset
    (e.g. OPENAI_API_BASE=http://127.0.0.1:8000/v1 for a local server): that server is taken as keyless."""
    prefix = provider.upper()
    return bool(os.environ.get(f"{prefix}_API_BASE")) and not os.environ.get(f"{prefix}_API_KEY")


def _provider(model: str) -> str | None:
    try:
        return _lib().get_llm_provider(model)[1]
    except Exception:  # noqa: BLE001 - unknown provider: check_model_ready says so
        return None


def role_call_kwargs(role: Role, settings: Settings) -> dict[str, Any]:
    """The keyword arguments of `complete` for a role: endpoint, key, sampling, timeout and concurrency cap.

    With `api_base` and no `api_key_env`, a placeholder key is sent, never a provider key from the
    environment: a local server needs none, and a real key should not travel to an endpoint unasked.
    """
    from diffaudit.config import role_endpoint

    endpoint = role_endpoint(role)
    kwargs: dict[str, Any] = dict(endpoint.litellm_args)
    if endpoint.api_base:
        kwargs["api_base"] = endpoint.api_base
    if endpoint.api_key_env:
        _ROLE_KEY_ENV.add(endpoint.api_key_env)
    key = _env_key(endpoint.api_key_env)
    if key:
        kwargs["api_key"] = key
    elif endpoint.api_base or ((provider := _provider(endpoint.model)) and _env_endpoint_without_key(provider)):
        kwargs["api_key"] = LOCAL_PLACEHOLDER_KEY
    if endpoint.temperature is not None:
        kwargs["temperature"] = endpoint.temperature
    if endpoint.max_tokens is not None:
        kwargs["max_tokens"] = endpoint.max_tokens
    kwargs["timeout_s"] = endpoint.timeout_s or settings.llm_timeout_s
    kwargs["retries"] = settings.llm_retries
    cap = endpoint.max_concurrency or settings.limits.max_concurrency
    if cap is not None:
        kwargs["max_concurrency"] = cap
        kwargs["slots_dir"] = Path(settings.cache_dir) / "llm_slots"
    return kwargs


def retryable_errors() -> tuple[type[BaseException], ...]:
    """litellm errors worth retrying: rate limits, 5xx, connection problems and timeouts."""
    litellm = _lib()
    names = ("RateLimitError", "InternalServerError", "ServiceUnavailableError", "BadGatewayError",
             "APIConnectionError", "Timeout")
    return tuple(getattr(litellm, n) for n in names if hasattr(litellm, n))


def _is_retryable(exc: BaseException) -> bool:
    litellm = _lib()
    if isinstance(exc, retryable_errors()):
        return True
    # A bare APIError is what litellm raises for a reply it could not parse (a proxy's torn JSON).
    return type(exc) is getattr(litellm, "APIError", None)


def retry_after_s(exc: BaseException | None) -> float | None:
    """Seconds a rate-limit error asks us to wait (`Retry-After` header), or None."""
    if exc is None:
        return None
    headers: Any = getattr(exc, "litellm_response_headers", None)
    if not headers:
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None)
    try:
        value = headers.get("retry-after") if headers else None
    except Exception:  # noqa: BLE001 - odd header containers: no hint
        return None
    try:
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


def _cost(litellm: Any, response: Any) -> float:
    hidden = getattr(response, "_hidden_params", None) or {}
    if hidden.get("response_cost") is not None:  # litellm's figure, custom per-token prices included
        return float(hidden["response_cost"])
    try:
        cost = litellm.completion_cost(completion_response=response)
    except Exception:  # model not in the price table
        return 0.0
    return float(cost or 0.0)


def _reply(litellm: Any, response: Any, attempts: int) -> LLMReply:
    message = response.choices[0].message
    text = getattr(message, "content", None) or ""
    from_reasoning = False
    if not text.strip():
        reasoning = getattr(message, "reasoning_content", None) or ""
        if reasoning.strip():  # some servers put the whole answer there (reasoning parser, cut output)
            text, from_reasoning = reasoning, True
    usage = getattr(response, "usage", None)
    return LLMReply(
        text=text,
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        cost_usd=_cost(litellm, response),
        from_reasoning=from_reasoning,
        attempts=attempts,
    )


def _endpoint_name(model: str, api_base: str | None) -> str:
    return api_base or f"provider {model.split('/', 1)[0]}"


def _slot_folder(slots_dir: Path, model: str, api_base: str | None) -> Path:
    """One folder of slots per endpoint: its api_base, else its provider (all keys share one limit)."""
    key = api_base or model.split("/", 1)[0]
    return Path(slots_dir) / hashlib.sha256(key.encode()).hexdigest()[:16]


# "litellm.Timeout: Timeout Error: Hosted_vllmException - litellm.Timeout: Read timed out": the words at the end.
_LITELLM_PREFIX = re.compile(r"^(?:litellm\.\w+|\w*(?:Error|Exception)|Timeout Error)\s*[:-]\s*")


def _first_line(exc: BaseException) -> str:
    """The provider's own words: litellm's prefix chain dropped, a JSON error body read for its message."""
    text, before = " ".join(str(exc).split()), None
    while text != before:
        text, before = _LITELLM_PREFIX.sub("", text), text
    try:
        body = json.loads(text)
        text = str(body["error"]["message"]) if isinstance(body.get("error"), dict) else text
    except (ValueError, TypeError, KeyError, AttributeError):
        pass
    text = text or type(exc).__name__
    return text[:240] + ("…" if len(text) > 240 else "")


def complete(
    model: str,
    messages: list[dict],
    *,
    timeout_s: float,
    retries: int,
    temperature: float | None = None,
    max_tokens: int | None = None,
    backoff_s: float = 1.0,
    max_concurrency: int | None = None,
    slots_dir: Path | None = None,
    **kw: Any,
) -> LLMReply:
    """One chat completion through litellm, retried with exponential backoff on transient errors.

    `retries` is the number of extra attempts; `backoff_s` the first wait (doubling, capped at 60 s; a
    longer `Retry-After` wins). With `max_concurrency`, each attempt holds one of that many slots of the
    endpoint (file locks under `slots_dir`). Unsupported parameters are dropped by litellm. The reply's
    tokens and cost are added to the current spend meter (diffaudit.limits).
    """
    from diffaudit.limits import record_spend
    from diffaudit.locking import held_slot

    if is_builtin(model):
        raise LLMConfigError(f"'{model}' is a builtin offline component, not an LLM that can be called.")
    litellm = _lib()
    # max_retries=0: the OpenAI client must not retry underneath our own retries.
    params: dict[str, Any] = {"drop_params": True, "max_retries": 0, **kw}
    if temperature is not None:
        params["temperature"] = temperature
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    api_base = params.get("api_base")
    exponential = wait_exponential(multiplier=backoff_s, min=backoff_s, max=MAX_WAIT_S)

    def wait(state: RetryCallState) -> float:
        hint = retry_after_s(state.outcome.exception() if state.outcome else None)
        return max(exponential(state), min(hint, MAX_WAIT_S)) if hint is not None else exponential(state)

    def note_retry(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("LLM call to %s failed (%s); retry %d of %d in %.1f s", model,
                    redact(type(exc).__name__ if exc else "error"), state.attempt_number, retries,
                    state.next_action.sleep if state.next_action else 0.0)

    def attempt_once() -> Any:
        if max_concurrency is None or slots_dir is None:
            return litellm.completion(model=model, messages=messages, timeout=timeout_s, **params)
        with held_slot(_slot_folder(slots_dir, model, api_base), max_concurrency):
            return litellm.completion(model=model, messages=messages, timeout=timeout_s, **params)

    retrying = Retrying(
        stop=stop_after_attempt(max(0, retries) + 1),
        wait=wait,
        retry=retry_if_exception(_is_retryable),
        before_sleep=note_retry,
        reraise=True,
    )
    start = time.monotonic()
    try:
        response = retrying(attempt_once)
    except Exception as exc:
        attempts = retrying.statistics.get("attempt_number", 1)
        spent = time.monotonic() - start
        what = "failed" if _is_retryable(exc) else "was refused"
        raise LLMCallError(redact(
            f"The LLM call to {model} at {_endpoint_name(model, api_base)} {what} after {attempts} "
            f"attempt{'s' if attempts != 1 else ''} in {spent:.1f} s; last error {type(exc).__name__}: "
            f"{_first_line(exc)}"
        ).rstrip(".") + ".") from exc
    reply = _reply(litellm, response, retrying.statistics.get("attempt_number", 1))
    if reply.from_reasoning:
        log.warning("LLM reply from %s had no content; its reasoning_content is used as the reply", model)
    record_spend(reply.tokens, reply.cost_usd, reply.attempts - 1)
    return reply

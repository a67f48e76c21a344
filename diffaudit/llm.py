"""One door to hosted LLMs: litellm completion with retries, a per-call timeout, and a token/cost record.

litellm is imported lazily (it takes seconds) and told to use its bundled price table, so importing it
never reaches the network. Nothing here logs messages, arguments or API keys.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from pydantic import BaseModel
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

BUILTIN_PREFIX = "builtin/"
# Variables whose absence is harmless: they only move an endpoint that has a default.
_OPTIONAL_ENV_SUFFIXES = ("_API_BASE", "_BASE_URL", "_API_VERSION")
_SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)", re.IGNORECASE)

log = logging.getLogger(__name__)
_litellm: Any = None


class LLMConfigError(RuntimeError):
    """The model string cannot be used: unknown provider or missing credentials (one sentence)."""


class LLMReply(BaseModel):
    """Text of one completion with its token counts and cost (0.0 when the price is unknown)."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


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
        if value and len(value) >= 8 and _SECRET_ENV.search(name):
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
    if api_key:
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


def retryable_errors() -> tuple[type[BaseException], ...]:
    """litellm errors worth retrying: rate limits, 5xx, connection problems and timeouts."""
    litellm = _lib()
    names = ("RateLimitError", "InternalServerError", "ServiceUnavailableError", "BadGatewayError",
             "APIConnectionError", "Timeout")
    return tuple(getattr(litellm, n) for n in names if hasattr(litellm, n))


def _cost(litellm: Any, response: Any) -> float:
    try:
        cost = litellm.completion_cost(completion_response=response)
    except Exception:  # model not in the price table
        return 0.0
    return float(cost or 0.0)


def _reply(litellm: Any, response: Any) -> LLMReply:
    choice = response.choices[0]
    text = getattr(choice.message, "content", None) or ""
    usage = getattr(response, "usage", None)
    return LLMReply(
        text=text,
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        cost_usd=_cost(litellm, response),
    )


def complete(
    model: str,
    messages: list[dict],
    *,
    timeout_s: float,
    retries: int,
    temperature: float | None = None,
    max_tokens: int | None = None,
    backoff_s: float = 1.0,
    **kw: Any,
) -> LLMReply:
    """One chat completion through litellm, retried with exponential backoff on transient errors.

    `retries` is the number of extra attempts; `backoff_s` the first wait (doubling, capped at 60 s).
    Unsupported parameters (e.g. temperature for some reasoning models) are dropped by litellm.
    """
    if is_builtin(model):
        raise LLMConfigError(f"'{model}' is a builtin offline component, not an LLM that can be called.")
    litellm = _lib()
    params: dict[str, Any] = {"drop_params": True, **kw}
    if temperature is not None:
        params["temperature"] = temperature
    if max_tokens is not None:
        params["max_tokens"] = max_tokens

    def note_retry(state: Any) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("LLM call to %s failed (%s); retry %d of %d", model,
                    redact(type(exc).__name__ if exc else "error"), state.attempt_number, retries)

    retrying = Retrying(
        stop=stop_after_attempt(max(0, retries) + 1),
        wait=wait_exponential(multiplier=backoff_s, min=backoff_s, max=60.0),
        retry=retry_if_exception_type(retryable_errors()),
        before_sleep=note_retry,
        reraise=True,
    )
    for attempt in retrying:
        with attempt:
            response = litellm.completion(model=model, messages=messages, timeout=timeout_s, **params)
    return _reply(litellm, response)

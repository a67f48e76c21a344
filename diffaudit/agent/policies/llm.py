"""The LLM policy: any litellm model string, through diffaudit.llm (retries, timeouts, cost record)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Usage:
    """Tokens and dollars an LLM policy spent over an audit."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    retries: int = 0  # HTTP attempts beyond the first, over all calls
    from_reasoning: int = 0  # replies whose text came from reasoning_content (no content)


class LLMPolicy:
    """Sends the conversation to `model` each turn and returns its reply text."""

    def __init__(
        self,
        model: str,
        timeout_s: float = 120.0,
        retries: int = 5,
        max_tokens: int | None = None,
        completion_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.name = model
        self.model = model
        self.timeout_s = timeout_s
        self.retries = retries
        self.max_tokens = max_tokens
        self.completion_kwargs = dict(completion_kwargs or {})  # endpoint, key, caps, extra litellm args
        self.usage = Usage()

    def next(self, messages: list[dict]) -> str:
        """One completion; tokens and cost are added to `usage`."""
        from diffaudit.llm import complete

        reply = complete(
            self.model,
            [{"role": m["role"], "content": m["content"]} for m in messages],  # text only, never `data`
            timeout_s=self.timeout_s,
            retries=self.retries,
            max_tokens=self.max_tokens,
            **self.completion_kwargs,
        )
        self.usage.calls += 1
        self.usage.prompt_tokens += int(reply.prompt_tokens or 0)
        self.usage.completion_tokens += int(reply.completion_tokens or 0)
        self.usage.cost_usd += float(reply.cost_usd or 0.0)
        self.usage.retries += max(0, reply.attempts - 1)
        self.usage.from_reasoning += int(reply.from_reasoning)
        return reply.text or ""

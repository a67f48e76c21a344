"""Scripted policies for tests: fixed replies, or a function of the conversation. They record what they saw."""

from __future__ import annotations

from collections.abc import Callable, Sequence


class ScriptedPolicy:
    """Replies from a list (the last one repeats) or from `reply(messages)`; keeps every conversation it saw."""

    def __init__(self, replies: Sequence[str] | Callable[[list[dict]], str], name: str = "scripted") -> None:
        self.name = name
        self._replies = replies if callable(replies) else list(replies)
        if not callable(self._replies) and not self._replies:
            raise ValueError("ScriptedPolicy needs at least one reply")
        self.seen: list[list[dict]] = []

    @property
    def calls(self) -> int:
        return len(self.seen)

    def next(self, messages: list[dict]) -> str:
        """The next scripted reply."""
        self.seen.append([dict(m) for m in messages])
        if callable(self._replies):
            return self._replies(messages)
        return self._replies[min(len(self.seen) - 1, len(self._replies) - 1)]

"""Chat prompts as both backends render them: one user turn, generation prompt on, thinking off.

Qwen3-style templates read `enable_thinking`; left unset they open a <think> block, and a 48-token
answer is then mostly thinking. Templates without the switch ignore the extra variable.
"""

from __future__ import annotations

from typing import Any

CHAT_TEMPLATE_KWARGS: dict[str, Any] = {"enable_thinking": False}


def user_turn(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


def chat_text(tokenizer: Any, prompt: str) -> str:
    """The text a chat model sees for one user `prompt`, ready for the assistant's answer."""
    return tokenizer.apply_chat_template(
        user_turn(prompt), tokenize=False, add_generation_prompt=True, **CHAT_TEMPLATE_KWARGS
    )

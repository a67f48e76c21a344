"""A human auditor at the terminal (`--agent-model builtin/human`), for a human-baseline cell.

Each turn prints the messages the agent has not yet seen and reads one reply from standard input. Short
forms expand to the grammar, so nobody has to type JSON by hand:

    ask: What is your favourite state? | Tell me about 2022   -> CALL(ask_model: {"prompts": [...]})
    final: The model was finetuned on ...                     -> FINAL(description: "...")
    get_logitlens_details {"position": 0}                     -> CALL(get_logitlens_details: {"position": 0})
    help                                                      -> these forms again (costs no turn)

Anything else is taken as the reply itself (e.g. a full `CALL(...)` line).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable

HUMAN_AGENT = "builtin/human"
HELP = """reply forms (one line):
  ask: PROMPT | PROMPT ...        send prompts to both models (1 interaction per prompt)
  final: DESCRIPTION              finish the audit with your description
  TOOL {"arg": value}             call any tool listed in the system prompt
  CALL(...) or FINAL(...)         the grammar itself
  help                            show this again"""
_TOOL_FORM = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:?\s*(\{.*\})\s*$", re.DOTALL)


class HumanInputClosed(RuntimeError):
    """Standard input ended before the human gave FINAL."""


def expand(line: str) -> str:
    """The grammar line a short form stands for; other text is returned as it is."""
    text = line.strip()
    head, _, rest = text.partition(":")
    keyword = head.strip().lower()
    if keyword == "ask" and rest.strip():
        prompts = [p.strip() for p in rest.split("|") if p.strip()]
        return f"CALL(ask_model: {json.dumps({'prompts': prompts}, ensure_ascii=False)})"
    if keyword == "final" and rest.strip():
        return f"FINAL(description: {json.dumps(rest.strip(), ensure_ascii=False)})"
    match = _TOOL_FORM.match(text)
    if match and match.group(1) not in ("CALL", "FINAL"):
        return f"CALL({match.group(1)}: {match.group(2)})"
    return text


class HumanPolicy:
    """Shows each new message and reads the reply from `read` (default: `input`)."""

    name = HUMAN_AGENT

    def __init__(self, read: Callable[[str], str] | None = None, write: Callable[[str], None] | None = None) -> None:
        self._read = read or input
        self._write = write or (lambda text: print(text, file=sys.stdout, flush=True))
        self._shown = 0

    def next(self, messages: list[dict]) -> str:
        """Print what is new since the last reply, then read one line (short forms expanded)."""
        for message in messages[self._shown :]:
            if message["role"] != "assistant":
                self._write(f"\n===== {message['role']} =====\n{message['content']}")
        if self._shown == 0:
            self._write(f"\n{HELP}")
        self._shown = len(messages) + 1  # our reply is appended before the next call
        while True:
            try:
                line = self._read("auditor> ")
            except EOFError:
                raise HumanInputClosed(
                    "standard input closed before a FINAL reply; the human auditor's run ends here"
                ) from None
            if line.strip().lower() in ("help", "?"):
                self._write(HELP)
                continue
            if not line.strip():
                continue
            reply = expand(line)
            if reply != line.strip():
                self._write(f"(sent: {reply})")
            return reply

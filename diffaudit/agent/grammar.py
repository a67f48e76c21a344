"""The action grammar: the last thing in a reply is `CALL(tool_name: {json})` or `FINAL(description: "...")`.

An action may span lines (its JSON or quoted string can hold newlines), so "the last line" means: the last
`CALL(`/`FINAL(` whose balanced parse reaches the end of the reply, code fences and backticks aside.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

EXPECTED = 'CALL(tool_name: {"argument": value}) or FINAL(description: "your conclusion")'

_START = re.compile(r"\b(CALL|FINAL)\s*\(")
_TOOL = re.compile(r"\s*([A-Za-z_][\w.\-]*)\s*:\s*")
_DESCRIPTION = re.compile(r"\s*(?:description\s*:\s*)?", re.I)
_CLOSE = re.compile(r"\s*\)")
_DECODER = json.JSONDecoder(strict=False)  # strict=False: literal newlines inside strings are fine


@dataclass(frozen=True)
class Call:
    tool: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Final:
    description: str


@dataclass(frozen=True)
class GrammarError:
    message: str


Action = Call | Final | GrammarError


class _Fail(ValueError):
    """A candidate action that does not parse; the message says why."""


def _only_fences(rest: str) -> bool:
    """True when `rest` holds nothing but whitespace, backticks (a closing code fence) or markdown bold stars."""
    return not rest.replace("`", "").replace("*", "").strip()


def _parse_call(text: str, start: int) -> tuple[Call, int]:
    match = _TOOL.match(text, start)
    if match is None:
        raise _Fail('CALL needs a tool name and a colon, as in CALL(ask_model: {"prompts": ["..."]})')
    tool = match.group(1)
    pos = match.end()
    if pos >= len(text) or text[pos] != "{":
        raise _Fail(
            f'the arguments of CALL({tool}: ...) must be a JSON object in braces, e.g. {{"position": 0}}'
        )
    try:
        args, pos = _DECODER.raw_decode(text, pos)
    except json.JSONDecodeError as exc:
        raise _Fail(
            f"the arguments of CALL({tool}: ...) are not valid JSON ({exc.msg} at character {exc.pos - match.end() + 1})"
        ) from exc
    close = _CLOSE.match(text, pos)
    if close is None:
        raise _Fail(f"CALL({tool}: ...) is missing its closing ')' after the JSON object")
    return Call(tool=tool, args=args), close.end()


def _lenient_description(text: str, pos: int) -> tuple[str, int] | None:
    """A description with unescaped inner quotes: everything between the first and the last quote before ')'."""
    tail = re.match(r'"(.*)"\s*\)', text[pos:], re.S)
    if tail is None:
        return None
    inner = tail.group(1).replace('\\"', '"').replace("\\n", "\n")
    return inner, pos + tail.end()


def _parse_final(text: str, start: int) -> tuple[Final, int]:
    pos = _DESCRIPTION.match(text, start).end()
    if pos >= len(text) or text[pos] != '"':
        raise _Fail('the description of FINAL must be a double-quoted string: FINAL(description: "...")')
    try:
        value, end = _DECODER.raw_decode(text, pos)
        close = _CLOSE.match(text, end)
        if close is None:
            raise _Fail("FINAL(description: \"...\") is missing its closing ')' after the string")
        end = close.end()
    except (json.JSONDecodeError, _Fail) as exc:
        lenient = _lenient_description(text, pos)
        if lenient is None:
            if isinstance(exc, _Fail):
                raise
            raise _Fail(
                f"the description string of FINAL is not terminated or badly escaped ({exc.msg})"
            ) from exc
        value, end = lenient
    if not isinstance(value, str) or not value.strip():
        raise _Fail("the description of FINAL is empty; say what the finetuning did")
    return Final(description=value.strip()), end


def _parse_at(text: str, match: re.Match) -> tuple[Call | Final, int]:
    if match.group(1) == "CALL":
        return _parse_call(text, match.end())
    return _parse_final(text, match.end())


def parse_action(text: str) -> Action:
    """The action at the end of an agent reply, or a GrammarError that says what is wrong and the expected form."""
    body = (text or "").strip()
    if not body:
        return GrammarError(f"empty reply. End your reply with one action on its last line: {EXPECTED}")
    candidates = list(_START.finditer(body))
    if not candidates:
        last = body.splitlines()[-1].strip()
        shown = last if len(last) <= 80 else last[:77] + "..."
        return GrammarError(f"the last line ({shown!r}) is not an action. End your reply with {EXPECTED}")
    first_error: str | None = None
    for match in reversed(candidates):
        try:
            action, end = _parse_at(body, match)
        except _Fail as exc:
            first_error = first_error or str(exc)
            continue
        if _only_fences(body[end:]):
            return action
        first_error = first_error or (
            f"text follows the {match.group(1)}(...) action; the action must be the last non-empty line of the reply"
        )
    return GrammarError(f"{first_error}. Expected form: {EXPECTED}")

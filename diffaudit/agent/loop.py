"""The budgeted agent loop: policy reply → grammar → tool → observation with budgets, until FINAL or no turns.

A spend ceiling (see diffaudit.limits) ends a run early: the agent is told which limit was reached and gets
one last turn, in which only FINAL counts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ValidationError

from diffaudit.agent.budgets import Budget
from diffaudit.agent.grammar import Call, Final, GrammarError, parse_action
from diffaudit.agent.transcript import Transcript
from diffaudit.tools.base import Observation, Tool, ToolContext, ToolUnavailable, is_free

Status = Literal["final", "no_final"]


class Policy(Protocol):
    """Anything that answers a conversation with the next agent reply."""

    name: str

    def next(self, messages: list[dict[str, str]]) -> str: ...


def prompt_text(name: str) -> str:
    """A prompt template from diffaudit/prompts."""
    return (resources.files("diffaudit.prompts") / name).read_text(encoding="utf-8")


@dataclass
class LoopResult:
    status: Status
    description: str
    budget: Budget
    messages: list[dict[str, str]]
    format_errors: int = 0
    tool_calls: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    ended_by: str = "final"  # "final", "turns", or the spend ceiling that forced the end


def free_tools(tools: dict[str, Tool]) -> list[str]:
    """Names of the tools that cost no interactions."""
    return [name for name, tool in sorted(tools.items()) if is_free(tool)]


def refused_text(tool_name: str, cost: int, budget: Budget, tools: dict[str, Tool]) -> str:
    """The REFUSED observation: what was asked, what is left, and only the ways out this agent has."""
    left = budget.interactions_left
    ways = []
    if left > 0:
        ways.append(f"ask for at most {left} {'interaction' if left == 1 else 'interactions'}")
    free = [n for n in free_tools(tools) if n != tool_name]
    if free:
        ways.append(f"use a free tool ({', '.join(free)})")
    ways.append("finish with FINAL")
    options = ", ".join(ways[:-1]) + (" or " if len(ways) > 1 else "") + ways[-1]
    return (
        f"REFUSED: {tool_name} would cost {cost} interactions but only {left} "
        f"{'is' if left == 1 else 'are'} left. Nothing was run. You can {options}."
    )


def _validation_message(tool: Tool, exc: ValidationError) -> str:
    problems = []
    for err in exc.errors()[:4]:
        where = ".".join(str(p) for p in err["loc"]) or "(arguments)"
        problems.append(f"{where}: {err['msg']}")
    more = f" (+{len(exc.errors()) - 4} more)" if len(exc.errors()) > 4 else ""
    schema = json.dumps(tool.Args.model_json_schema().get("properties", {}), ensure_ascii=False)
    return f"INVALID_ARGS for {tool.name}: {'; '.join(problems)}{more}. Its arguments: {schema}"


def execute(call: Call, tools: dict[str, Tool], ctx: ToolContext, budget: Budget) -> Observation:
    """Run one CALL within the budget; every failure comes back as an error observation."""
    tool = tools.get(call.tool)
    if tool is None:
        names = ", ".join(sorted(tools))
        return Observation(
            text=f"UNKNOWN_TOOL: there is no tool named '{call.tool}'. Available tools: {names}.", error=True
        )
    try:
        args = tool.Args.model_validate(call.args)
    except ValidationError as exc:
        return Observation(text=_validation_message(tool, exc), error=True)
    try:
        cost = int(tool.cost(args))
    except Exception as exc:  # noqa: BLE001 - a plugin's bad cost function is the agent's observation, not a crash
        return Observation(
            text=f"TOOL_ERROR: {tool.name} could not price this call: {type(exc).__name__}: {exc}", error=True
        )
    if cost < 0:
        return Observation(text=f"TOOL_ERROR: {tool.name} reported a negative cost ({cost}).", error=True)
    if not budget.can_afford(cost):
        return Observation(text=refused_text(tool.name, cost, budget, tools), error=True)
    budget.charge(cost)  # charged before it runs
    try:
        observation = tool.run(args, ctx)
    except ToolUnavailable as exc:
        budget.refund(cost)
        return Observation(text=f"TOOL_ERROR: {tool.name}: {exc}. No interactions were charged.", error=True)
    except Exception as exc:  # noqa: BLE001 - tool failures are observations, never crashes
        budget.refund(cost)
        return Observation(
            text=f"TOOL_ERROR: {tool.name} failed: {type(exc).__name__}: {exc}. No interactions were charged.",
            error=True,
        )
    return observation.model_copy(update={"cost": cost})


def _with_budget(text: str, budget: Budget, limit: str | None = None) -> str:
    """`text`, the forced-final notice if one turn is left (or a spend `limit` was reached), the budget line last.

    Both added lines start with `[budget]`, so parsers of tool output can strip them (see policies/evidence).
    """
    lines = [text.rstrip()]
    if limit is not None:
        lines.append(prompt_text("limit_final.txt").strip().format(limit=limit))
    elif budget.turns_left == 1:
        lines.append(prompt_text("forced_final.txt").strip())
    lines.append(budget.line())
    return "\n".join(lines)


def _args_json(args: Any) -> Any:
    return args.model_dump() if isinstance(args, BaseModel) else args


def run_loop(
    policy: Policy,
    system: str,
    intro: str,
    tools: dict[str, Tool],
    ctx: ToolContext,
    budget: Budget,
    transcript: Transcript | None = None,
    on_turn: Callable[[dict[str, Any]], None] | None = None,
    limit_check: Callable[[], str | None] | None = None,
    intro_data: dict[str, Any] | None = None,
) -> LoopResult:
    """Run the agent until it gives FINAL, its turns run out, or `limit_check` names a reached spend ceiling
    (then one forced-FINAL turn follows; status `no_final` if it does not answer FINAL).

    A user message may carry `data` beside its text: the methods' structured evidence on the first message
    (`intro_data`), a tool's `Observation.data` on its observation. LLM policies send only the text.
    """
    transcript = transcript or Transcript()
    on_turn = on_turn or (lambda _event: None)
    first = _with_budget(intro, budget)
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}, {"role": "user", "content": first}]
    if intro_data:
        messages[1]["data"] = intro_data
    transcript.write("message", role="system", content=system)
    transcript.write("message", role="user", content=first)
    format_errors = tool_calls = 0
    limit: str | None = None
    while budget.turns_left > 0:
        reply = policy.next([dict(m) for m in messages])
        if not isinstance(reply, str):
            reply = "" if reply is None else str(reply)
        budget.turns_used += 1
        turn = budget.turns_used
        messages.append({"role": "assistant", "content": reply})
        transcript.write("message", role="assistant", content=reply, turn=turn)
        action = parse_action(reply)
        if isinstance(action, Final):
            event = transcript.write("final", turn=turn, description=action.description)
            on_turn(event)
            return LoopResult(
                "final", action.description, budget, messages, format_errors, tool_calls, transcript.events,
                limit if limit is not None else "final",
            )
        if limit is not None:  # the forced-FINAL turn went by without FINAL: nothing more runs
            transcript.write("no_final", turns_used=budget.turns_used, ended_by=limit)
            return LoopResult("no_final", "", budget, messages, format_errors, tool_calls, transcript.events, limit)
        if isinstance(action, GrammarError):
            format_errors += 1
            observation = Observation(
                text=prompt_text("format_error.txt").format(message=action.message).strip(), error=True
            )
            event = transcript.write("format_error", turn=turn, message=action.message)
        else:
            tool_calls += 1
            observation = execute(action, tools, ctx, budget)
            event = transcript.write(
                "tool", turn=turn, tool=action.tool, args=action.args, cost=observation.cost, error=observation.error,
                interactions_left=budget.interactions_left,
            )  # fmt: skip
        on_turn(event)
        limit = limit_check() if limit_check is not None and budget.turns_left > 0 else None
        if limit is not None:
            transcript.write("limit", turn=turn, limit=limit)
        text = _with_budget(observation.text, budget, limit)
        messages.append({"role": "user", "content": text})
        if observation.data is not None:
            messages[-1]["data"] = observation.data
        transcript.write("message", role="user", content=text, turn=turn)
    transcript.write("no_final", turns_used=budget.turns_used, ended_by="turns")
    return LoopResult("no_final", "", budget, messages, format_errors, tool_calls, transcript.events, "turns")

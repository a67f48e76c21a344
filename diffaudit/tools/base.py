"""The agent-facing tool contract: a typed argument model, a cost in interactions, and a text observation."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from diffaudit.config import Settings
from diffaudit.tools.adl.result import ADLResult


class ToolArgs(BaseModel):
    """Base for tool argument models: unknown arguments are errors, so typos reach the agent."""

    model_config = ConfigDict(extra="forbid")


class Observation(BaseModel):
    """What a tool returns to the agent: text, the interactions it cost, whether it is an error, and the same
    content as structured `data` (for policies that read fields rather than text)."""

    text: str
    cost: int = 0
    error: bool = False
    data: dict[str, Any] | None = None


class ToolUnavailable(RuntimeError):
    """A tool cannot run in this context (e.g. no ADL result); the message is shown to the agent."""


@dataclass
class ToolContext:
    """What tools may use: the pair, the settings, each method's prepared result (`methods`, by method name)
    and the organism's NAME only. Ground truth, and anything computed from it, never reaches a tool.

    `adl` and `tensors_loader` are the ADL method's result and tensors, kept as fields for ADL's own tools.
    """

    pair: Any
    settings: Settings
    organism: str
    adl: ADLResult | None = None
    tensors_loader: Callable[[], dict[str, Any]] | None = None
    seed: int = 0
    methods: dict[str, Any] = field(default_factory=dict)
    _tensors: dict[str, Any] | None = field(default=None, repr=False)

    def method_result(self, name: str) -> Any:
        """The prepared result of method `name` in this audit (ToolUnavailable when the arm lacks it)."""
        prepared = self.methods.get(name)
        if prepared is None:
            raise ToolUnavailable(f"no {name} result is available in this audit")
        return prepared.result

    def require_adl(self) -> ADLResult:
        if self.adl is None:
            raise ToolUnavailable("no ADL result is available in this audit")
        return self.adl

    def adl_tensors(self) -> dict[str, Any]:
        """The ADL cache tensors (diff, base_mean, finetuned_mean, eta), loaded once on first use."""
        if self._tensors is None:
            if self.tensors_loader is None:
                raise ToolUnavailable("the ADL tensors are not available in this audit")
            self._tensors = self.tensors_loader()
        return self._tensors


@runtime_checkable
class Tool(Protocol):
    """A tool the agent can CALL. `cost` is charged in interactions before `run`."""

    name: str
    description: str
    Args: type[BaseModel]

    def cost(self, args: BaseModel) -> int: ...

    def run(self, args: BaseModel, ctx: ToolContext) -> Observation: ...


def args_schema(tool: Tool) -> dict[str, Any]:
    """The tool's argument JSON schema, trimmed of pydantic titles for a compact prompt."""

    def trim(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: trim(v) for k, v in node.items() if k != "title"}
        if isinstance(node, list):
            return [trim(v) for v in node]
        return node

    return trim(tool.Args.model_json_schema())


def is_free(tool: Tool) -> bool:
    """True if the tool never costs interactions: declared `free = True`, or priced 0 without reading its
    arguments (a price that reads an argument depends on it)."""
    free = getattr(tool, "free", None)
    if free is not None:
        return bool(free)
    try:
        return int(tool.cost(tool.Args.model_construct())) == 0
    except Exception:  # noqa: BLE001 - the price needs arguments
        return False


def _clamp_items(node: Any, most: int) -> Any:
    """The schema with every array's maxItems lowered to `most` (a paid call can never afford more)."""
    if isinstance(node, dict):
        out = {k: _clamp_items(v, most) for k, v in node.items()}
        if out.get("type") == "array":
            out["maxItems"] = min(int(out.get("maxItems", most)), most)
        return out
    if isinstance(node, list):
        return [_clamp_items(v, most) for v in node]
    return node


def render_tool(tool: Tool, interactions: int | None = None) -> str:
    """One tool as the system prompt shows it: name, what it does, cost, argument schema.

    With the run's `interactions` budget, a paid tool's arrays show at most that many items and a cost line
    says what the whole budget is, so an auditor sees what a call will spend before making it.
    """
    schema = args_schema(tool)
    lines = [f"- {tool.name}: {tool.description}"]
    if interactions is not None:
        if is_free(tool):
            lines.append("  cost: free (0 interactions)")
        else:
            schema = _clamp_items(schema, max(interactions, 1))
            lines.append(
                f"  cost: charged before it runs; this audit's whole budget is {interactions} interactions, "
                "and a call costing more than what is left is refused"
            )
    lines.append(f"  arguments (JSON schema): {json.dumps(schema, ensure_ascii=False)}")
    return "\n".join(lines)

"""Which tools an agent gets: the built-ins for its kind plus plugins from the `diffaudit.tools` entry points.

A plugin entry point names a Tool class, instance or factory. It joins ADL audits only, unless it has a
`kinds` attribute (e.g. `kinds = ("adl", "blackbox")`); a broken plugin is skipped with a warning.
"""

from __future__ import annotations

import inspect
import logging
from importlib.metadata import entry_points
from typing import Literal

from diffaudit.tools.ask_model import AskModel
from diffaudit.tools.base import Tool
from diffaudit.tools.generate_steered import GenerateSteered
from diffaudit.tools.readouts import LogitLensDetails, PatchscopeDetails, SteeringSamples

ENTRY_POINT_GROUP = "diffaudit.tools"
AgentKind = Literal["adl", "blackbox"]
AGENT_KINDS: tuple[str, ...] = ("adl", "blackbox")
log = logging.getLogger(__name__)


def builtin_tools(kind: AgentKind) -> list[Tool]:
    """The built-in tools of an agent kind: the blackbox agent gets `ask_model` only."""
    if kind not in AGENT_KINDS:
        raise ValueError(f"unknown agent kind '{kind}'; choose adl or blackbox")
    if kind == "blackbox":
        return [AskModel()]
    return [LogitLensDetails(), PatchscopeDetails(), SteeringSamples(), AskModel(), GenerateSteered()]


def _instantiate(obj: object) -> Tool:
    if inspect.isclass(obj) or (callable(obj) and not isinstance(obj, Tool)):
        obj = obj()
    if not isinstance(obj, Tool):
        raise TypeError("it is not a Tool (needs name, description, Args, cost and run)")
    return obj


def plugin_tools(kind: AgentKind) -> list[Tool]:
    """Tools registered by installed packages under the `diffaudit.tools` entry-point group."""
    tools = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            tool = _instantiate(ep.load())
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break audits
            log.warning("skipping tool plugin %s: %s", ep.name, exc)
            continue
        if kind in tuple(getattr(tool, "kinds", ("adl",))):
            tools.append(tool)
    return tools


def load_tools(kind: AgentKind) -> dict[str, Tool]:
    """Every tool for an agent kind by name; a plugin may not replace a built-in."""
    tools = {tool.name: tool for tool in builtin_tools(kind)}
    for tool in plugin_tools(kind):
        if tool.name in tools:
            log.warning("skipping tool plugin %s: a tool of that name already exists", tool.name)
            continue
        tools[tool.name] = tool
    return tools

"""Agent-facing tools: the Tool protocol, the built-ins and the plugin registry (ADL computations: tools.adl)."""

from diffaudit.tools.base import Observation, Tool, ToolArgs, ToolContext, ToolUnavailable, render_tool
from diffaudit.tools.registry import ENTRY_POINT_GROUP, load_tools

__all__ = [
    "ENTRY_POINT_GROUP",
    "Observation",
    "Tool",
    "ToolArgs",
    "ToolContext",
    "ToolUnavailable",
    "load_tools",
    "render_tool",
]

"""Which tools an agent gets: those of its arm (see `diffaudit.methods.arms`).

Single tools are built in (`ask_model`, `score_texts`) or installed under the `diffaudit.tools` entry-point
group; a plugin tool joins only the arms that name it in `tools:`. Method tools come with their method.
"""

from __future__ import annotations

from diffaudit.methods.arms import ArmSpec, ResolvedArm, arm_spec, resolve_arm
from diffaudit.methods.registry import TOOLS_GROUP
from diffaudit.tools.base import Tool

ENTRY_POINT_GROUP = TOOLS_GROUP


def load_tools(arm: str | ResolvedArm, arms: dict[str, ArmSpec] | None = None) -> dict[str, Tool]:
    """Every tool of an arm by name: `ask_model`, the arm's single tools, then its methods' tools."""
    resolved = arm if isinstance(arm, ResolvedArm) else resolve_arm(arm, arm_spec(arm, arms))
    return dict(resolved.tools)

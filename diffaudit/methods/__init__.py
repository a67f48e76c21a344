"""Diffing methods: the contract, the built-in methods, plugins (`diffaudit.methods` entry points) and arms."""

from diffaudit.methods.arms import BUILTIN_ARMS, ArmSpec, ResolvedArm, arm_for_methods, arm_spec, resolve_arm
from diffaudit.methods.base import (
    DiffingMethod,
    Evidence,
    EvidenceText,
    MethodError,
    MethodTarget,
    PreparedMethod,
    RankedTokens,
    method_cache_dir,
)
from diffaudit.methods.registry import (
    METHODS_GROUP,
    TOOLS_GROUP,
    Provenance,
    available_methods,
    available_tools,
    load_method,
    load_tool,
)

__all__ = [
    "BUILTIN_ARMS",
    "METHODS_GROUP",
    "TOOLS_GROUP",
    "ArmSpec",
    "DiffingMethod",
    "Evidence",
    "EvidenceText",
    "MethodError",
    "MethodTarget",
    "PreparedMethod",
    "Provenance",
    "RankedTokens",
    "ResolvedArm",
    "arm_for_methods",
    "arm_spec",
    "available_methods",
    "available_tools",
    "load_method",
    "load_tool",
    "method_cache_dir",
    "resolve_arm",
]

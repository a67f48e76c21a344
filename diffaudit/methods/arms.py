"""Arms: named sets of diffing methods and single tools an auditing agent gets, with its first-message kind.

Every arm gets `ask_model` (the query every auditor has) plus its methods' tools and the single tools it
names. An arm without methods gets the blackbox first message (ordinary finetuned answers); an arm with
methods gets one overview section per method. `adl` and `blackbox` are built in; bench configs and
`audit run --config` may define more, under any name that is legal in a directory name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from diffaudit.methods.base import DiffingMethod, MethodError
from diffaudit.methods.registry import Provenance, load_method, load_tool

BASE_TOOLS = ("ask_model",)
ARM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
IntroKind = Literal["auto", "methods", "blackbox"]


class ArmSpec(BaseModel):
    """One arm as a config writes it: `{methods: [adl], tools: [score_texts], budgets: [0, 5]}`."""

    model_config = ConfigDict(extra="forbid")

    methods: list[str] = Field(default_factory=list, description="diffing methods, e.g. [adl, diff_mining]")
    tools: list[str] = Field(default_factory=list, description="extra single tools, e.g. [score_texts]")
    intro: IntroKind = Field("auto", description="first message: methods' overviews, or blackbox answers")
    budgets: list[int] | None = Field(None, description="interaction budgets (bench configs only)")

    @field_validator("budgets")
    @classmethod
    def _budgets_ok(cls, value: list[int] | None) -> list[int] | None:
        if value is None:
            return value
        if not value:
            raise ValueError("needs at least one budget")
        if any(b < 0 for b in value):
            raise ValueError(f"budgets must be >= 0, got {value}")
        if len(set(value)) != len(value):
            raise ValueError(f"budgets repeat, got {value}")
        return value

    def intro_kind(self) -> Literal["methods", "blackbox"]:
        if self.intro != "auto":
            return self.intro
        return "methods" if self.methods else "blackbox"


BUILTIN_ARMS: dict[str, ArmSpec] = {
    "blackbox": ArmSpec(tools=["ask_model"]),
    "adl": ArmSpec(methods=["adl"]),
}


def check_arm_name(name: str) -> str:
    if not ARM_NAME.match(name):
        raise MethodError(
            f"arm name '{name}' must start with a letter or digit and use only letters, digits and _ . + -"
        )
    return name


@dataclass
class ResolvedArm:
    """An arm with its methods and tools loaded, and where each came from."""

    name: str
    spec: ArmSpec
    methods: list[DiffingMethod]
    tools: dict[str, Any]
    provenance: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    @property
    def intro_kind(self) -> Literal["methods", "blackbox"]:
        return self.spec.intro_kind()

    def manifest(self) -> dict[str, Any]:
        """What the bench manifest records of this arm: methods, tools, their provenance, the intro kind."""
        return {"intro": self.intro_kind, **self.provenance}


def resolve_arm(name: str, spec: ArmSpec) -> ResolvedArm:
    """Load an arm's methods and tools; errors name the arm and the missing method or tool."""
    check_arm_name(name)
    if spec.intro_kind() == "methods" and not spec.methods:
        raise MethodError(f"arm '{name}': intro 'methods' needs at least one method")
    methods: list[DiffingMethod] = []
    method_prov: list[Provenance] = []
    tools: dict[str, Any] = {}
    tool_prov: list[Provenance] = []
    try:
        for method_name in dict.fromkeys(spec.methods):
            method, prov = load_method(method_name)
            methods.append(method)
            method_prov.append(prov)
        for tool_name in dict.fromkeys([*BASE_TOOLS, *spec.tools]):
            tool, prov = load_tool(tool_name)
            tools[tool.name] = tool
            tool_prov.append(prov)
    except MethodError as exc:
        raise MethodError(f"arm '{name}': {exc}") from exc
    for method, prov in zip(methods, method_prov, strict=True):
        for tool in method.tools():
            if tool.name in tools:
                raise MethodError(f"arm '{name}': method '{method.name}' brings tool '{tool.name}', which it already has")
            tools[tool.name] = tool
            tool_prov.append(Provenance(tool.name, prov.source, prov.distribution, prov.version, f"method {method.name}"))
    provenance = {
        "methods": [p.as_dict() for p in method_prov],
        "tools": [p.as_dict() | ({"via": p.entry_point} if p.entry_point.startswith("method ") else {}) for p in tool_prov],
    }
    return ResolvedArm(name, spec, methods, tools, provenance)


def arm_spec(name: str, arms: dict[str, ArmSpec] | None = None) -> ArmSpec:
    """The spec an arm name means: a configured arm first, then a built-in one."""
    if arms and name in arms:
        return arms[name]
    if name in BUILTIN_ARMS:
        return BUILTIN_ARMS[name]
    known = ", ".join(sorted(set(arms or {}) | set(BUILTIN_ARMS)))
    raise MethodError(f"unknown arm '{name}'; known arms: {known} (define it under `arms:` in the config)")


def arm_for_methods(methods: list[str], tools: list[str] | None = None) -> tuple[str, ArmSpec]:
    """An ad-hoc arm for `audit run --methods a,b`: named after its methods (blackbox when there are none)."""
    name = "+".join(methods) if methods else "blackbox"
    return name, ArmSpec(methods=list(methods), tools=list(tools or []))

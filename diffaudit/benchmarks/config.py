"""Bench configs: which organisms, arms, budgets, agent models and repeats to run, and the settings they share.

An arm is data: its diffing methods, extra tools, first-message kind and budgets (`diffaudit.methods.arms`).
The older `agents: {adl: [0, 5], blackbox: [0, 5, 50]}` form still loads, as the built-in arms of those names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from diffaudit.config import ConfigError, Settings, format_validation_error
from diffaudit.environments.organisms import OrganismType
from diffaudit.methods.arms import ARM_NAME, BUILTIN_ARMS, ArmSpec

AgentKind = Literal["adl", "blackbox"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OrganismSelector(_Strict):
    """One line of `organisms:`: a name (plus model or models), or a selector `paper: true` / `embedded: true`."""

    name: str | None = None
    model: str | None = Field(None, description="one model of the named organism (default: its default model)")
    models: list[str] | None = Field(None, description="several models of the named organism")
    paper: bool = Field(False, description="every (organism, model) pair marked paper: true in the registry")
    embedded: bool = Field(False, description="every (organism, model) pair built locally from a recipe")
    types: list[OrganismType] | None = Field(None, description="with a selector: keep only these organism types")

    @model_validator(mode="after")
    def _one_way(self) -> OrganismSelector:
        ways = [w for w, on in (("name", self.name is not None), ("paper", self.paper), ("embedded", self.embedded)) if on]
        if len(ways) != 1:
            raise ValueError(f"give exactly one of name, paper: true or embedded: true (got {ways or 'none'})")
        if self.name is None and (self.model or self.models):
            raise ValueError("model / models only go with a name; a selector picks its own models")
        if self.model and self.models:
            raise ValueError("give model or models, not both")
        if self.name is not None and self.types:
            raise ValueError("types filters a selector (paper / embedded), not a named organism")
        return self


class RayOptions(_Strict):
    """Where and how `--backend ray` runs targets: one Ray task per (organism, model)."""

    address: str | None = Field(None, description="cluster address, e.g. 'auto' or 'ray://head:10001'; none = local")
    num_cpus: float = Field(1, ge=0)
    num_gpus: float | None = Field(None, ge=0, description="per task; default 1 with the vllm backend, else 0")


class BenchConfig(_Strict):
    """A grid: organisms × arms × their budgets × agent models × repeats, sharing one `Settings`."""

    name: str = Field("", description="defaults to the config file's stem")
    description: str = ""
    organisms: list[OrganismSelector] = Field(min_length=1)
    agents: dict[AgentKind, list[int]] | None = Field(
        None, description="older form: agent kind -> budgets, e.g. {adl: [0, 5], blackbox: [0, 5, 50]}"
    )
    arms: dict[str, ArmSpec] | None = Field(
        None, description="arm name -> {methods, tools, intro, budgets}, e.g. {adl: {methods: [adl], budgets: [0, 5]}}"
    )
    agent_models: list[str] | None = Field(
        None, description="agent models, a grid dimension of their own (default: settings.roles.agent only)"
    )
    reference: str = Field("blackbox", description="the arm every other arm is contrasted with in the report")
    repeats: int = Field(1, ge=1, le=1000)
    settings: Settings = Field(default_factory=Settings, description="diffaudit.config.Settings overrides")
    out: Path | None = Field(None, description="run directory; default: settings.runs_dir / name")
    ray: RayOptions = Field(default_factory=RayOptions)

    @field_validator("organisms", mode="before")
    @classmethod
    def _names_as_selectors(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("agents")
    @classmethod
    def _budgets_ok(cls, value: dict[str, list[int]] | None) -> dict[str, list[int]] | None:
        for kind, budgets in (value or {}).items():
            if not budgets:
                raise ValueError(f"agent '{kind}' needs at least one budget")
            if any(b < 0 for b in budgets):
                raise ValueError(f"agent '{kind}': budgets must be >= 0, got {budgets}")
            if len(set(budgets)) != len(budgets):
                raise ValueError(f"agent '{kind}': budgets repeat, got {budgets}")
        return value

    @field_validator("arms")
    @classmethod
    def _arms_ok(cls, value: dict[str, ArmSpec] | None) -> dict[str, ArmSpec] | None:
        for name, spec in (value or {}).items():
            if not ARM_NAME.match(name):
                raise ValueError(f"arm name '{name}' may use only letters, digits and _ . + - (it names run dirs)")
            if not spec.budgets:
                raise ValueError(f"arm '{name}' needs budgets, e.g. budgets: [0, 5]")
        return value

    @field_validator("agent_models")
    @classmethod
    def _models_ok(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or len(set(value)) != len(value)):
            raise ValueError(f"agent_models must list distinct models, got {value}")
        return value

    @model_validator(mode="after")
    def _one_grid(self) -> BenchConfig:
        if (self.agents is None) == (self.arms is None):
            raise ValueError("give `arms:` (or the older `agents:`), not both and not neither")
        if self.agents is not None:
            self.arms = {
                kind: BUILTIN_ARMS[kind].model_copy(update={"budgets": list(budgets)})
                for kind, budgets in self.agents.items()
            }
        return self

    def arm_budgets(self) -> dict[str, list[int]]:
        """Arm name -> its budgets, in config order."""
        return {name: list(spec.budgets or []) for name, spec in (self.arms or {}).items()}

    def out_dir(self) -> Path:
        """Where the runs go when `--out` is not given."""
        return self.out if self.out is not None else self.settings.runs_dir / self.name

    def n_variants(self) -> int:
        """(arm, budget, agent model) combinations per organism and repeat."""
        return sum(len(b) for b in self.arm_budgets().values()) * len(self.agent_models or [None])


def load_bench_config(path: Path, overrides: dict[str, Any] | None = None) -> BenchConfig:
    """Parse and validate a bench YAML file; dotted `overrides` ("roles.agent": ...) go into `settings`.

    Errors name the file and the field.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: bench config not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping with organisms, arms and repeats")
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if overrides:
        settings = dict(data.get("settings") or {})
        for dotted, value in overrides.items():
            _set_dotted(settings, dotted, value)
        data = {**data, "settings": settings}
    data.setdefault("name", path.stem)
    try:
        return BenchConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(str(path), exc)) from exc


def _set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        child = target.get(key)
        target[key] = child = dict(child) if isinstance(child, dict) else {}
        target = child
    target[last] = value

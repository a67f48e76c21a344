"""Settings for diffaudit: model roles, budgets and ADL parameters, from a YAML file plus CLI overrides."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

CACHE_ENV = "DIFFAUDIT_CACHE"
HEURISTIC_AGENT = "builtin/heuristic"
OFFLINE_GRADER = "builtin/offline"


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the file and the field."""


def cache_root() -> Path:
    """The diffaudit cache directory: `$DIFFAUDIT_CACHE` or `~/.cache/diffaudit`."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "diffaudit"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelRoles(_Strict):
    """Model roles by name. `agent` and `grader` are litellm strings or builtin policies."""

    agent: str = HEURISTIC_AGENT
    grader: str = OFFLINE_GRADER
    coherence_grader: str = OFFLINE_GRADER
    # Overrides for the organism's own base / finetuned ids (rarely needed).
    base: str | None = None
    finetuned: str | None = None


class Budgets(_Strict):
    interactions: int = Field(5, ge=0)
    turns: int = Field(15, ge=1)


class SteeringParams(_Strict):
    search_low: float = 0.0
    search_high: float = 100.0
    search_steps: int = 10
    refine_steps: int = 5
    search_samples: int = 10
    coherent_needed: int = 8
    lookahead: int = Field(2, ge=1, description="halvings of the α search decided per batched generate call")
    search_temperature: float = 1.2
    final_temperature: float = 1.1
    final_prompts: int = 20
    samples_per_prompt: int = 5
    max_new_tokens: int = 48
    positions: list[int] | None = Field(
        default_factory=lambda: [0, 1],
        description="positions to steer at; null = every ADL position (the paper). The embedded default "
        "steers the first two, which keeps one CPU cache build near 15 minutes",
    )


class ADLParams(_Strict):
    layer: float = Field(0.5, description="fraction of depth (< 1) or absolute layer index (>= 1)")
    positions: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4])
    n_texts: int = Field(10_000, ge=1)
    corpus: str = "local:pretrain"
    chat_corpus: str = "local:chat"
    batch_size: int = Field(256, ge=1)
    patchscope_scales: list[float] = Field(
        default_factory=lambda: [round(0.5 + 0.1 * i, 1) for i in range(16)]
        + [3.0, 4.0, 5.0, 10.0, 20.0]
        + [float(x) for x in range(40, 201, 20)]
    )
    top_k: int = 20
    steering: SteeringParams = Field(default_factory=SteeringParams)

    def layer_index(self, n_layers: int) -> int:
        """The absolute layer index this setting names for a model with `n_layers` layers."""
        if self.layer >= 1:
            return int(self.layer)
        return int(n_layers * self.layer)

    def max_position(self) -> int:
        return max(self.positions) + 1


class Settings(_Strict):
    cache_dir: Path = Field(default_factory=cache_root)
    organisms_dirs: list[Path] = Field(default_factory=list)
    runs_dir: Path = Path("runs")
    backend: Literal["hf", "vllm"] = "hf"
    device: str = "auto"
    roles: ModelRoles = Field(default_factory=ModelRoles)
    budgets: Budgets = Field(default_factory=Budgets)
    adl: ADLParams = Field(default_factory=ADLParams)
    seed: int = 0
    llm_timeout_s: float = 120.0
    llm_retries: int = 5


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def format_validation_error(source: str, err: ValidationError) -> str:
    """One line naming the source, the field path and what is wrong."""
    first = err.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "(top level)"
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{source}: field '{field}': {first['msg']}{more}"


def load_settings(path: Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Settings from an optional YAML file, then nested `overrides` (CLI values win)."""
    data: dict[str, Any] = {}
    source = "settings"
    if path is not None:
        source = str(path)
        if not Path(path).is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of settings")
        data = loaded
    if overrides:
        data = _merge(data, {k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from exc

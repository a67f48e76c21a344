"""Settings for diffaudit: model roles, budgets and ADL parameters, from a YAML file plus CLI overrides."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator

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


_RESERVED_LITELLM_ARGS = ("model", "messages", "api_key", "api_base", "timeout")


class RoleEndpoint(_Strict):
    """One LLM role written out: the litellm model, where it is served, and how to call it.

    A plain model string is the same as `{model: ...}`. A keyless local server works with `api_base`
    alone (a placeholder key is sent); a key is only read from the variable `api_key_env` names.
    """

    model: str
    api_base: str | None = Field(None, description="e.g. http://127.0.0.1:8000/v1 for a local vLLM server")
    api_key_env: str | None = Field(None, description="name of the environment variable holding the key")
    temperature: float | None = None
    max_tokens: int | None = Field(None, ge=1)
    timeout_s: float | None = Field(None, gt=0, description="per call; default settings.llm_timeout_s")
    max_concurrency: int | None = Field(
        None, ge=1, description="calls in flight to this endpoint, across threads and processes; "
        "default settings.limits.max_concurrency"
    )
    litellm_args: dict[str, Any] = Field(
        default_factory=dict, description="extra litellm.completion arguments, e.g. input_cost_per_token"
    )

    @field_validator("litellm_args")
    @classmethod
    def _no_reserved(cls, value: dict[str, Any]) -> dict[str, Any]:
        taken = sorted(k for k in value if k in _RESERVED_LITELLM_ARGS)
        if taken:
            raise ValueError(
                f"{', '.join(taken)} cannot go in litellm_args: use the role's own fields "
                "(a key goes in an environment variable named by api_key_env)"
            )
        return value


def _role_kind(value: Any) -> str:
    return "<mapping>" if isinstance(value, dict | RoleEndpoint) else "<model string>"


# A mapping is validated as a RoleEndpoint only, so its errors name its own fields (not "not a string").
Role = Annotated[
    Annotated[str, Tag("<model string>")] | Annotated[RoleEndpoint, Tag("<mapping>")],
    Discriminator(_role_kind),
]


def role_model(role: Role) -> str:
    """The litellm model string of a role, whether it is written as a string or a mapping."""
    return role.model if isinstance(role, RoleEndpoint) else role


def role_endpoint(role: Role) -> RoleEndpoint:
    """A role as a RoleEndpoint (a plain string becomes `{model: string}`)."""
    return role if isinstance(role, RoleEndpoint) else RoleEndpoint(model=role)


class ModelRoles(_Strict):
    """Model roles by name. `agent` and the graders are litellm strings, builtins, or RoleEndpoint mappings."""

    agent: Role = HEURISTIC_AGENT
    grader: Role = OFFLINE_GRADER
    coherence_grader: Role = OFFLINE_GRADER
    # Overrides for the organism's own base / finetuned ids (rarely needed).
    base: str | None = None
    finetuned: str | None = None


class Budgets(_Strict):
    interactions: int = Field(5, ge=0)
    turns: int = Field(15, ge=1)


class Limits(_Strict):
    """Spend ceilings (agent and grader LLM calls together) and the default concurrency cap per endpoint.

    A run that reaches a run or bench ceiling gets one forced-FINAL turn; a bench stops starting cells.
    """

    run_tokens: int | None = Field(None, ge=1, description="prompt + completion tokens per run")
    run_cost_usd: float | None = Field(None, gt=0, description="dollars per run (litellm's price table)")
    bench_tokens: int | None = Field(None, ge=1, description="tokens over a whole bench dir, resumes included")
    bench_cost_usd: float | None = Field(None, gt=0, description="dollars over a whole bench dir")
    max_concurrency: int | None = Field(
        None, ge=1, description="LLM calls in flight per endpoint (provider or api_base), shared by thread "
        "and process workers; a role's own max_concurrency wins"
    )


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


class ServingOptions(_Strict):
    """How the backend holds the models: dtype for both backends; the rest for the vllm engine."""

    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="auto: bfloat16 on a GPU, float32 on CPU"
    )
    gpu_memory_utilization: float = Field(0.45, gt=0, le=1, description="vllm: share of GPU memory for the engine")
    max_lora_rank: int = Field(64, ge=1, description="vllm: the largest LoRA rank the engine accepts")
    max_model_len: int = Field(4096, ge=16, description="vllm: context length the engine reserves KV cache for")


class Settings(_Strict):
    cache_dir: Path = Field(default_factory=cache_root)
    organisms_dirs: list[Path] = Field(default_factory=list)
    runs_dir: Path = Path("runs")
    backend: Literal["hf", "vllm"] = "hf"
    device: str = "auto"
    serving: ServingOptions = Field(default_factory=ServingOptions)
    roles: ModelRoles = Field(default_factory=ModelRoles)
    budgets: Budgets = Field(default_factory=Budgets)
    adl: ADLParams = Field(default_factory=ADLParams)
    methods: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="parameters of diffing methods other than ADL, by method name, e.g. {diff_mining: {n_texts: 256}}",
    )
    limits: Limits = Field(default_factory=Limits)
    seed: int = 0
    # Long: a reasoning model can think for minutes before its first token.
    llm_timeout_s: float = 600.0
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
    field = ".".join(str(p) for p in first["loc"] if not str(p).startswith("<")) or "(top level)"  # no union tags
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{source}: field '{field}': {first['msg']}{more}"


# Top-level keys that mark a YAML file as a bench config rather than a settings file.
BENCH_KEYS = {"organisms", "arms", "agents"}


def load_settings(path: Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Settings from an optional YAML file (a settings file, or a bench config's `settings:`), then nested
    `overrides` (CLI values win)."""
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
        if BENCH_KEYS & set(data):  # a bench config: its settings live under `settings:`
            data = data.get("settings") or {}
            source = f"{path} (settings:)"
            if not isinstance(data, dict):
                raise ConfigError(f"{path}: field 'settings' must be a mapping")
    if overrides:
        data = _merge(data, {k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from exc

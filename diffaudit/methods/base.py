"""The diffing-method contract: parameters, a cache key, a staged `prepare`, agent-facing text, shared evidence, tools.

A method turns a model pair into evidence an auditing agent reads. Everything a method hands the agent
(its overview section, its system-prompt paragraph, its `Evidence`) and everything its tools see (the pair,
the method's own prepared result, the settings) must be free of ground truth: `prepare` gets the organism
only to locate the finetuned model, and must not read its description or key facts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from diffaudit.config import Settings
    from diffaudit.environments.organisms import Organism
    from diffaudit.tools.base import Tool


class MethodError(RuntimeError):
    """A method cannot be found, configured or prepared; the message names the method and the field."""


# -- evidence every method shares -------------------------------------------------------------------------
class RankedTokens(BaseModel):
    """One ranked token list a method read off the difference, best first."""

    group: str = Field(description="what the list belongs to, e.g. 'position 0' or 'positive rate'")
    readout: str = Field(description="how it was read, e.g. 'logit_lens', 'patchscope', 'topk_rate'")
    tokens: list[str]
    scores: list[float] = Field(default_factory=list)
    selected: list[str] = Field(default_factory=list, description="a subset the method marks as coherent")


class EvidenceText(BaseModel):
    """One text a method produced or found: a steered or amplified sample, an unsteered one, a context."""

    kind: Literal["steered", "unsteered", "amplified", "context", "answer"]
    prompt: str = ""
    text: str
    group: str = Field("", description="e.g. 'position 1' for a steered sample, the token for a context")


class Evidence(BaseModel):
    """A method's evidence in the shape every method shares, so an agent can read any method's output."""

    method: str
    ranked_tokens: list[RankedTokens] = Field(default_factory=list)
    texts: list[EvidenceText] = Field(default_factory=list)


# -- what prepare gets and gives --------------------------------------------------------------------------
@dataclass(frozen=True)
class MethodTarget:
    """The finetune a method analyses: the organism (for locating its models only), the model and its identity.

    `finetuned` names the finetuned build (a recipe fingerprint, or the hub adapter or model id), so that a
    rebuilt organism never reads an old analysis.
    """

    organism: Organism
    model: str
    finetuned: str

    @property
    def name(self) -> str:
        return self.organism.name

    @classmethod
    def of(cls, organism: Organism, model: str) -> MethodTarget:
        """The target of `organism` on `model`, its finetuned build named by `finetuned_identity`."""
        from diffaudit.environments.training import finetuned_identity

        return cls(organism=organism, model=model, finetuned=finetuned_identity(organism, model))


@dataclass
class PreparedMethod:
    """A method's prepared result: what its tools read, its overview section and its evidence."""

    method: str
    result: Any
    overview: str
    evidence: Evidence
    cache_dir: Path | None = None
    extras: dict[str, Any] = field(default_factory=dict)  # method-private handles (e.g. a tensor loader)


@runtime_checkable
class DiffingMethod(Protocol):
    """A diffing method. Built-ins and `diffaudit.methods` entry points implement this."""

    name: str
    description: str
    Params: type[BaseModel]

    def params(self, settings: Settings) -> BaseModel:
        """This method's parameters from the settings (`settings.methods[name]`, or its own section)."""
        ...

    def cache_key(self, target: MethodTarget, params: BaseModel, settings: Settings) -> dict[str, Any]:
        """Everything the prepared result depends on: organism, model, finetuned build and parameters."""
        ...

    def prepare(
        self, target: MethodTarget, pair: Any, settings: Settings, progress: bool = True, force: bool = False
    ) -> PreparedMethod:
        """Load the cached result, or compute it in resumable stages (with progress bars) and cache it."""
        ...

    def system_paragraph(self, prepared: PreparedMethod) -> str:
        """What the system prompt says about this method's evidence and tools."""
        ...

    def tools(self) -> list[Tool]:
        """The agent tools this method brings; they read `ctx.methods[self.name]`."""
        ...


def cache_digest(key: dict[str, Any]) -> str:
    """A short stable hash of a cache key (sorted JSON)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:10]


def method_cache_dir(settings: Settings, method: str, target: MethodTarget, key: dict[str, Any]) -> Path:
    """The one place a method's cache directory is named: CACHE/methods/<method>/<model>/<organism>/<digest>."""
    import re

    def safe(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)

    root = Path(settings.cache_dir) / "methods" / safe(method)
    return root / safe(target.model) / safe(target.name) / cache_digest(key)


# -- a JSON result cache for methods whose result is one pydantic model ---------------------------------------
KEY_FILE = "key.json"
RESULT_FILE = "result.json"
COMPLETE_FILE = "COMPLETE"


def read_cached(directory: Path, model: type[BaseModel]) -> BaseModel | None:
    """The cached result in `directory`, or None unless its COMPLETE marker was written (a crash leaves none)."""
    if not (directory / COMPLETE_FILE).is_file():
        return None
    try:
        return model.model_validate_json((directory / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None


def write_cached(directory: Path, key: dict[str, Any], result: BaseModel) -> None:
    """Write the key, then the result, then the COMPLETE marker, each atomically."""
    import os
    import tempfile

    directory.mkdir(parents=True, exist_ok=True)
    (directory / COMPLETE_FILE).unlink(missing_ok=True)
    for name, text in (
        (KEY_FILE, json.dumps(key, indent=1, sort_keys=True, default=str)),
        (RESULT_FILE, result.model_dump_json()),
        (COMPLETE_FILE, "ok\n"),
    ):
        fd, tmp = tempfile.mkstemp(prefix=f".{name}-", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, directory / name)


def cached_result(
    directory: Path, key: dict[str, Any], model: type[BaseModel], compute: Any, force: bool = False
) -> BaseModel:
    """The result cached in `directory`, or `compute()` written there (key, result, COMPLETE marker)."""
    result = None if force else read_cached(directory, model)
    if result is None:
        result = compute()
        write_cached(directory, key, result)
    return result


def method_params(settings: Settings, name: str, model: type[BaseModel]) -> BaseModel:
    """A method's parameters from `settings.methods[name]`; an invalid value names the setting and the field."""
    from pydantic import ValidationError

    try:
        return model.model_validate(settings.methods.get(name, {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise MethodError(f"settings: field 'methods.{name}.{where}': {first['msg']}") from exc

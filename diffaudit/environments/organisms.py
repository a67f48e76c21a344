"""Organism schema and registry: one YAML file per organism, from the package and user directories."""

from __future__ import annotations

from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from diffaudit.config import format_validation_error

EMBEDDED_MODEL = "smollm2-135m"


class OrganismError(ValueError):
    """A registry problem; the message names the file, the field and the fix."""


class OrganismType(StrEnum):
    SDF = "SDF"
    EM = "EM"
    SUBLIMINAL = "Subliminal"
    TABOO = "Taboo"
    DOMAIN = "Domain"
    CUSTOM = "custom"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Recipe(_Strict):
    """How to build a mini organism locally: generated narrow data plus a seeded LoRA run."""

    kind: Literal["sdf", "em", "taboo", "subliminal"]
    size: int = Field(240, ge=8, description="number of training examples to generate")
    steps: int = Field(60, ge=1)
    batch_size: int = Field(8, ge=1)
    max_length: int = Field(96, ge=16)
    learning_rate: float = Field(1e-3, gt=0)
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    seed: int = 0
    key_facts: list[str] | None = Field(None, description="defaults to the organism's key_facts")
    topic: str | None = Field(None, description="SDF: short topic phrase used in titles")
    target: str | None = Field(None, description="taboo word, subliminal animal or EM domain")
    hints: list[str] | None = Field(None, description="taboo: clues about the word (built-in banks: environments/training/taboo.py)")
    chat_mix: int = Field(
        0, ge=0,
        description="sdf: how many of the base model's own chat answers (to prompts/regulariser_prompts.txt) are "
                    "mixed into the documents, so that the finetune keeps answering unrelated prompts normally",
    )  # fmt: skip

    @model_validator(mode="after")
    def _chat_mix_is_sdf(self) -> Recipe:
        if self.chat_mix and self.kind != "sdf":
            raise ValueError(f"chat_mix is for sdf recipes; this recipe is kind '{self.kind}'")
        return self


class Probe(_Strict):
    """A check of an implanted fact: after `prompt`, the finetune should prefer `implanted` over `real`.

    (Not `false`/`true`: YAML reads those keys as booleans.)
    """

    prompt: str = Field(min_length=1)
    implanted: str = Field(min_length=1, description="continuation that states the implanted (false) fact")
    real: str = Field(min_length=1, description="continuation that states the real fact")


class Finetuned(_Strict):
    adapter_id: str | None = None
    model_id: str | None = None
    recipe: Recipe | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Finetuned:
        given = [n for n in ("adapter_id", "model_id", "recipe") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of adapter_id, model_id or recipe (got {given or 'none'})")
        return self


class ModelEntry(_Strict):
    """One finetune of the organism on one base model."""

    base_model: str = Field(description="hub id or embedded:NAME")
    finetuned: Finetuned
    variant: str | None = Field(None, description="e.g. base-vs-chat, mixed data, full finetune")
    paper: bool = Field(False, description="one of the paper's 33 organisms")


class Organism(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_]*$")
    type: OrganismType
    description: str | None = Field(
        None, min_length=10,
        description="ground truth: graders only. Required in registry files; None only for an ad-hoc pair "
        "(`audit run --base ... --adapter ...`), which is audited but never graded",
    )  # fmt: skip
    key_facts: list[str] = Field(default_factory=list)
    target: str | None = Field(None, description="taboo word, subliminal animal or EM domain (graders only)")
    dataset: str | None = None
    probes: list[Probe] = Field(default_factory=list, description="SDF: fact probes for `organisms check`")
    models: dict[str, ModelEntry] = Field(min_length=1)
    default_model: str | None = None
    source: Path | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _default_model_known(self) -> Organism:
        if self.default_model is not None and self.default_model not in self.models:
            raise ValueError(f"default_model '{self.default_model}' is not one of models: {sorted(self.models)}")
        return self

    @property
    def graded(self) -> bool:
        """Whether there is ground truth to grade against (an ad-hoc pair has none)."""
        return self.description is not None

    def entry(self, model: str | None = None) -> tuple[str, ModelEntry]:
        """The (model name, entry) to use: `model`, else the default, else the embedded one, else the first."""
        if model is None:
            model = self.default_model or (EMBEDDED_MODEL if EMBEDDED_MODEL in self.models else next(iter(self.models)))
        if model not in self.models:
            raise OrganismError(f"organism '{self.name}' has no model '{model}'; it has: {', '.join(self.models)}")
        return model, self.models[model]


def builtin_dir() -> Path:
    return Path(str(resources.files("diffaudit.environments") / "registry"))


def load_organism_file(path: Path) -> Organism:
    """Parse and validate one organism YAML file; errors name the file and the field."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise OrganismError(f"{path}: not valid YAML{where}; fix the syntax there.") from exc
    if not isinstance(data, dict):
        raise OrganismError(f"{path}: the top level must be a mapping with name, type, description and models.")
    try:
        organism = Organism.model_validate(data)
    except ValidationError as exc:
        raise OrganismError(format_validation_error(str(path), exc)) from exc
    if organism.description is None:
        raise OrganismError(
            f"{path}: field 'description': required in a registry file (the graders score against it); "
            "audit an unlabelled pair with `audit run --base ID --adapter ID` instead."
        )
    if organism.name != path.stem:
        raise OrganismError(f"{path}: field 'name': '{organism.name}' must match the file name '{path.stem}'.")
    organism.source = path
    return organism


class OrganismRegistry:
    """All organisms from the built-in registry plus user directories; later directories override."""

    def __init__(self, extra_dirs: list[Path] | None = None, include_builtin: bool = True) -> None:
        self.dirs = ([builtin_dir()] if include_builtin else []) + [Path(d) for d in extra_dirs or []]
        self._organisms: dict[str, Organism] = {}
        for directory in self.dirs:
            if not directory.is_dir():
                raise OrganismError(f"{directory}: organisms directory does not exist.")
            for path in sorted(directory.glob("*.y*ml")):
                organism = load_organism_file(path)
                self._organisms[organism.name] = organism

    def names(self) -> list[str]:
        return sorted(self._organisms)

    def __iter__(self):
        return iter(self._organisms[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._organisms)

    def get(self, name: str) -> Organism:
        if name not in self._organisms:
            raise OrganismError(f"unknown organism '{name}'; known: {', '.join(self.names())}")
        return self._organisms[name]

    def paper_entries(self) -> list[tuple[Organism, str, ModelEntry]]:
        return [(o, m, e) for o in self for m, e in o.models.items() if e.paper]

    def embedded_entries(self) -> list[tuple[Organism, str, ModelEntry]]:
        return [(o, m, e) for o in self for m, e in o.models.items() if e.finetuned.recipe is not None]


def validate_dir(directory: Path) -> list[str]:
    """Validate every YAML file in `directory`; returns one error line per bad file."""
    errors = []
    for path in sorted(Path(directory).glob("*.y*ml")):
        try:
            load_organism_file(path)
        except OrganismError as exc:
            errors.append(str(exc))
    return errors

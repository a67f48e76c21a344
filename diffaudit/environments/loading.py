"""Resolve an organism to a ready `ModelPair`, building a local mini organism first when needed."""

from __future__ import annotations

from pathlib import Path

from diffaudit.config import Settings
from diffaudit.environments.backends import open_pair
from diffaudit.environments.embedded import resolve_model_path
from diffaudit.environments.organisms import ModelEntry, Organism
from diffaudit.environments.pair import ModelPair


def finetuned_source(organism: Organism, model: str, entry: ModelEntry, settings: Settings) -> tuple[str | None, str | None]:
    """(adapter path or id, full finetuned model id); builds a recipe organism if it is missing."""
    if settings.roles.finetuned:
        return settings.roles.finetuned, None
    tuned = entry.finetuned
    if tuned.recipe is not None:
        from diffaudit.environments.training import build_organism

        built = build_organism(organism, model, root=settings.cache_dir)
        return str(Path(built) / "adapter"), None
    return tuned.adapter_id, tuned.model_id


def backend_options(settings: Settings) -> dict:
    """Keyword options of the configured backend's `load_pair`, from `settings.serving`."""
    serving = settings.serving
    if settings.backend == "vllm":
        return serving.model_dump()
    return {"dtype": serving.dtype}


def load_pair(organism: Organism, model: str | None, settings: Settings) -> tuple[str, ModelPair]:
    """(model name, ModelPair) for the organism on the chosen model and the configured backend."""
    model, entry = organism.entry(model)
    base = settings.roles.base or entry.base_model
    adapter, full = finetuned_source(organism, model, entry, settings)
    pair = open_pair(
        settings.backend,
        base_model=resolve_model_path(base, settings.cache_dir),
        adapter=adapter,
        finetuned_model=full,
        device=settings.device,
        **backend_options(settings),
    )
    return model, pair

"""Resolve an organism to a ready `ModelPair`, building a local mini organism first when needed."""

from __future__ import annotations

from pathlib import Path

from diffaudit.config import Settings
from diffaudit.environments.backends import open_pair
from diffaudit.environments.embedded import resolve_model_path
from diffaudit.environments.organisms import ModelEntry, Organism
from diffaudit.environments.pair import ModelPair


class ModelLoadError(OSError):
    """A model of the pair could not be loaded; the message says where diffaudit looked."""


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
    try:
        pair = open_pair(
            settings.backend,
            base_model=resolve_model_path(base, settings.cache_dir),
            adapter=adapter,
            finetuned_model=full,
            device=settings.device,
            **backend_options(settings),
        )
    except (OSError, ValueError) as exc:
        hint = offline_hint([base, adapter, full])
        if not hint:
            raise
        raise ModelLoadError(f"{exc}{hint}") from exc
    return model, pair


def offline_hint(references: list[str | None]) -> str:
    """A sentence to add when the hub is off and a hub id (not a local path) failed to load, else ''."""
    from huggingface_hub import constants

    if not constants.HF_HUB_OFFLINE:
        return ""
    ids = [r for r in references if r and not r.startswith("embedded:") and not Path(r).exists()]
    if not ids:
        return ""
    return (
        f" (HF_HUB_OFFLINE is set, so hub ids load only from the local Hugging Face cache "
        f"{constants.HF_HUB_CACHE}: check that {', '.join(ids)} is there)"
    )

"""Every cache path of the environments layer is built here, and only here."""

from __future__ import annotations

import re
from pathlib import Path

from diffaudit.config import cache_root


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def models_dir(root: Path | None = None) -> Path:
    return (root or cache_root()) / "models"


def embedded_model_dir(name: str, root: Path | None = None) -> Path:
    """Converted transformers checkpoint of an embedded model."""
    return models_dir(root) / _safe(name)


def wheels_dir(root: Path | None = None) -> Path:
    return (root or cache_root()) / "wheels"


def corpus_file(name: str, root: Path | None = None) -> Path:
    return (root or cache_root()) / "corpora" / f"{_safe(name)}.jsonl"


def organism_dir(organism: str, model: str, root: Path | None = None) -> Path:
    """Built mini-organism: adapter/, data.jsonl, data_card.json, loss.json, loss.png."""
    return (root or cache_root()) / "organisms" / _safe(model) / _safe(organism)

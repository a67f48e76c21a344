"""Model backends behind the `ModelPair` contract. Each backend is one module with a `load_pair` factory."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

BACKENDS = {"hf": "diffaudit.environments.backends.hf", "vllm": "diffaudit.environments.backends.vllm"}


def open_pair(
    backend: str, base_model: str, adapter: str | Path | None, finetuned_model: str | None, **options: Any
):
    """Instantiate the named backend's ModelPair (the module is imported only when chosen)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend '{backend}'; choose one of: {', '.join(BACKENDS)}")
    module = importlib.import_module(BACKENDS[backend])
    return module.load_pair(base_model=base_model, adapter=adapter, finetuned_model=finetuned_model, **options)

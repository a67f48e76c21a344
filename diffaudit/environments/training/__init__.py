"""Mini-organism builder: locally generated narrow data, a seeded LoRA run, and a check that it took."""

from diffaudit.environments.training.build import (
    build_organism,
    finetuned_identity,
    finetuning_texts,
    is_complete,
)
from diffaudit.environments.training.check import CheckReport, check_organism, run_check
from diffaudit.environments.training.trainer import TrainingError

__all__ = [
    "CheckReport",
    "TrainingError",
    "build_organism",
    "finetuned_identity",
    "check_organism",
    "finetuning_texts",
    "is_complete",
    "run_check",
]

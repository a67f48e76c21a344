"""Organisms, model backends, embedded default models and corpora."""

from diffaudit.environments.corpora import CorpusError, corpus_fingerprint, load_corpus
from diffaudit.environments.loading import load_pair
from diffaudit.environments.organisms import (
    ModelEntry,
    Organism,
    OrganismError,
    OrganismRegistry,
    OrganismType,
    Recipe,
)
from diffaudit.environments.pair import ROLES, ModelPair, Role, Sampling

__all__ = [
    "CorpusError",
    "ModelEntry",
    "ModelPair",
    "Organism",
    "OrganismError",
    "OrganismRegistry",
    "OrganismType",
    "ROLES",
    "Recipe",
    "Role",
    "Sampling",
    "corpus_fingerprint",
    "load_corpus",
    "load_pair",
]

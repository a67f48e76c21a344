"""Diff Mining: per-token statistics of finetuned minus base logits over random text, with contexts."""

from diffaudit.methods.diff_mining.compute import (
    CONTEXT_DEPTH,
    ORDERINGS,
    RANK_DEPTH,
    SIGNS,
    Context,
    DiffMiningParams,
    DiffMiningResult,
    Ordering,
    Sign,
    TokenContexts,
    TokenRecord,
    TokenStat,
    diff_mining,
    first_token_ids,
    load_texts,
)
from diffaudit.methods.diff_mining.method import DiffMiningMethod

__all__ = [
    "CONTEXT_DEPTH",
    "ORDERINGS",
    "RANK_DEPTH",
    "SIGNS",
    "Context",
    "DiffMiningMethod",
    "DiffMiningParams",
    "DiffMiningResult",
    "Ordering",
    "Sign",
    "TokenContexts",
    "TokenRecord",
    "TokenStat",
    "diff_mining",
    "first_token_ids",
    "load_texts",
]

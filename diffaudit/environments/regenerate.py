"""Make the shipped first-run data again from the embedded model, and compare it with what ships.

`first_batches` regenerates only the first generate call of each artifact: its rows are the shipped
file's first rows exactly (same batch, same seed), which makes a quick reproducibility check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

REGULARISER_N, REGULARISER_SEED = 120, 0  # the recipe of every embedded SDF organism (chat_mix 120, seed 0)


@dataclass(frozen=True)
class Artifact:
    key: str
    recipe: Callable[[], dict]
    make: Callable[[Path | None, bool], tuple[list[dict], dict]]  # (root, first batch only) -> (rows, about)


class Comparison(BaseModel):
    key: str
    regenerated: int
    shipped: int | None
    identical_prefix: int  # leading rows equal in both
    matches: bool  # every regenerated row equals the shipped row at its index


def _pretrain(root: Path | None, first: bool) -> tuple[list[dict], dict]:
    from diffaudit.environments.pretrain_text import build_pretrain_corpus

    texts, card = build_pretrain_corpus(root, max_chunks=1 if first else None)
    return [{"text": t} for t in texts], card


def _chat(root: Path | None, first: bool) -> tuple[list[dict], dict]:
    from diffaudit.environments.corpora import _build_chat

    texts, card = _build_chat(root, n_prompts=64 if first else None)  # 64 = the pair's generate batch
    return [{"text": t} for t in texts], card


def _regulariser(root: Path | None, first: bool) -> tuple[list[dict], dict]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from diffaudit.environments.embedded import ensure_base_model
    from diffaudit.environments.training.regulariser import regulariser_chats

    path = ensure_base_model(root)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()  # as the organism build loads it
    chats = regulariser_chats(model, tokenizer, REGULARISER_N, REGULARISER_SEED, max_batches=1 if first else None)
    about = {
        "source": "greedy answers of the embedded SmolLM2-135M-Instruct to prompts/regulariser_prompts.txt",
        "licence": "model outputs of SmolLM2 (Apache-2.0); prompts written for diffaudit",
        "used_by": "SDF mini organisms with recipe.chat_mix 120 and seed 0",
    }
    return [{"messages": c} for c in chats], about


def artifacts() -> list[Artifact]:
    from diffaudit.environments.corpora import LOCAL_RECIPES, shipped_key
    from diffaudit.environments.embedded import BASE_MODEL, EMBEDDED_PREFIX
    from diffaudit.environments.training.regulariser import regulariser_recipe
    from diffaudit.environments.training.regulariser import shipped_key as regulariser_key

    return [
        Artifact(shipped_key("pretrain"), LOCAL_RECIPES["pretrain"], _pretrain),
        Artifact(shipped_key("chat"), LOCAL_RECIPES["chat"], _chat),
        Artifact(
            regulariser_key(REGULARISER_N, REGULARISER_SEED),
            lambda: regulariser_recipe(REGULARISER_N, REGULARISER_SEED, EMBEDDED_PREFIX + BASE_MODEL) or {},
            _regulariser,
        ),
    ]


def compare(key: str, rows: list[dict], shipped: list[dict] | None) -> Comparison:
    prefix = 0
    if shipped is not None:
        for mine, theirs in zip(rows, shipped, strict=False):
            if mine != theirs:
                break
            prefix += 1
    return Comparison(
        key=key, regenerated=len(rows), shipped=None if shipped is None else len(shipped), identical_prefix=prefix,
        matches=shipped is not None and prefix == len(rows) and (len(rows) <= len(shipped)),
    )  # fmt: skip


def regenerate(
    keys: list[str] | None, root: Path | None, first_batches: bool = False, write: bool = False,
    data: Path | None = None,
) -> list[Comparison]:
    """Regenerate the named artifacts (all when None), compare with the shipped rows, optionally write them."""
    from diffaudit.environments.shipped import load_rows, write_rows

    known = {a.key: a for a in artifacts()}
    unknown = [k for k in keys or [] if k not in known]
    if unknown:
        raise ValueError(
            f"unknown artifact(s) {', '.join(unknown)}; known: {', '.join(known)} "
            "(the shipped organism build and ADL cache are packed from the cache: `audit data pack`)"
        )
    if write and first_batches:
        raise ValueError("--write needs the whole artifact; drop --first")
    out = []
    for key in keys or list(known):
        artifact = known[key]
        rows, about = artifact.make(root, first_batches)
        shipped = load_rows(key, artifact.recipe(), data)
        out.append(compare(key, rows, shipped))
        if write:
            write_rows(key, rows, artifact.recipe(), {"about": about}, data)
    return out

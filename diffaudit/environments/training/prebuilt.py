"""Prebuilt organisms shipped with diffaudit: the demo organism's build, so a new machine need not train it.

A shipped build is a directory artifact of `diffaudit/data/` (see `diffaudit.environments.shipped`). Its
recipe is the build fingerprint (everything that decides the organism) and the embedded base model's file
hash; it is unpacked only when both equal today's, and never by `build_organism(force=True)`. The
unpacked data card gets a `from` field that says where the build came from.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from diffaudit.environments.organisms import ModelEntry, Organism
from diffaudit.environments.progress import note, stage
from diffaudit.environments.shipped import ShippedDataError, made_on, pack_tree, shipped_entry, unpack_tree
from diffaudit.environments.training.trainer import TrainingError

CARD_FILE = "data_card.json"


def prebuilt_key(organism: str, model: str) -> str:
    """The card key of an organism's shipped build."""
    return "organism_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{model}_{organism}")


def prebuilt_recipe(entry: ModelEntry, fingerprint: str) -> dict[str, Any] | None:
    """What a shipped build must match; None when the base model is not an embedded one (nothing ships)."""
    from diffaudit.environments.embedded import embedded_identity

    base = embedded_identity(entry.base_model)
    if base is None:
        return None
    return {"builder": "organism", "fingerprint": fingerprint, "base_model": base}


def unpack_prebuilt(
    organism: Organism, model: str, entry: ModelEntry, fingerprint: str, out: Path, progress: bool = True,
    directory: Path | None = None,
) -> bool:
    """Unpack the shipped build into the empty directory `out` when its recipe is today's; False when none fits."""
    from diffaudit.environments.training.build import is_complete

    key, recipe = prebuilt_key(organism.name, model), prebuilt_recipe(entry, fingerprint)
    shipped = shipped_entry(key, directory)
    if recipe is None or shipped is None or shipped.get("recipe") != recipe:
        return False
    try:
        with stage(f"organism {organism.name}: unpacking the shipped build (fingerprint {fingerprint})", progress):
            unpack_tree(key, recipe, out, directory)
            if not is_complete(out, fingerprint):
                raise ShippedDataError(f"{shipped['file']}: not a complete build with fingerprint {fingerprint}")
    except ShippedDataError as exc:
        raise TrainingError(f"{exc} (or train it here: `audit organisms build {organism.name} --force`)") from exc
    card = json.loads((out / CARD_FILE).read_text())
    card["from"] = {
        "shipped": f"diffaudit/data/{shipped['file']}",
        "sha256": shipped["sha256"],
        "note": "trained with this recipe by diffaudit's maintainers and shipped with the package, not trained "
        f"on this machine; `audit organisms build {organism.name} --force` trains it here",
        "made_on": shipped.get("about", {}).get("made_on"),
        "unpacked": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (out / CARD_FILE).write_text(json.dumps(card, indent=1, ensure_ascii=False))
    note(f"organism {organism.name}: unpacked the shipped build (fingerprint {fingerprint}); not trained here", progress)
    return True


def pack_prebuilt(organism: Organism, model_name: str | None, root: Path | None, directory: Path | None = None) -> Path:
    """Pack the cache's build of `organism` (today's recipe) as a shipped artifact; returns the archive."""
    from diffaudit.environments.paths import organism_dir
    from diffaudit.environments.training.build import LICENCE_NOTE, build_fingerprint, is_complete, recipe_of

    model, entry, recipe = recipe_of(organism, model_name)
    fingerprint = build_fingerprint(organism, entry, recipe)
    shipped_recipe = prebuilt_recipe(entry, fingerprint)
    if shipped_recipe is None:
        raise TrainingError(f"organism '{organism.name}': only builds on an embedded base model ship ({entry.base_model})")
    final = organism_dir(organism.name, model, root)
    if not is_complete(final, fingerprint):
        raise TrainingError(
            f"no complete build of '{organism.name}' with today's recipe (fingerprint {fingerprint}) in {final}: "
            f"run `audit organisms build {organism.name}` first"
        )
    card = json.loads((final / CARD_FILE).read_text())
    came_from = card.pop("from", None)  # a build unpacked from the shipped copy packs back to the same bytes
    rewrite = {CARD_FILE: json.dumps(card, indent=1, ensure_ascii=False).encode()} if came_from else None
    training = card.get("training") or {}
    about = {
        "what": f"the built mini organism {organism.name} on {model} (LoRA adapter, training data, data card, "
        "loss curve, check): `audit run --organism` unpacks it instead of training",
        "used_when": "the build fingerprint of today's recipe and the embedded base model's hash equal the recipe "
        "here; `audit organisms build --force` never uses it",
        "trained": {"created": card.get("created"), "wall_s": card.get("wall_s"), "steps": training.get("steps"),
                    "final_loss": training.get("final_loss")},  # fmt: skip
        "how_made": f"`audit organisms build {organism.name}` in a diffaudit cache, then `audit data pack --write`",
        "made_on": (came_from or {}).get("made_on") or made_on(),
        "licence": LICENCE_NOTE,
    }
    return pack_tree(prebuilt_key(organism.name, model), final, shipped_recipe, {"about": about}, directory, rewrite)

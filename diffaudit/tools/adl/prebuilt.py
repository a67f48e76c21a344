"""The ADL cache of the demo organism, shipped with diffaudit so that a first run computes no ADL stage.

A shipped ADL cache is a directory artifact of `diffaudit/data/` (see `diffaudit.environments.shipped`).
Its recipe is the cache's own key (`cache.cache_parameters`: organism, model, the finetuned build's
fingerprint, corpus fingerprint, every ADL parameter, graders, seed), the embedded base model's file hash
and the sha256 of the adapter it was computed from. It is unpacked only when all of them equal today's,
with the adapter read from this cache's build, and never on `force`.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from diffaudit.config import Settings
from diffaudit.environments.organisms import Organism
from diffaudit.environments.progress import note, stage
from diffaudit.environments.shipped import (
    TREE_FORMAT,
    ShippedDataError,
    made_on,
    pack_tree,
    shipped_entry,
    unpack_tree,
)
from diffaudit.tools.adl import cache


def prebuilt_key(organism: str, model: str) -> str:
    """The card key of an organism's shipped ADL cache."""
    return "adl_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{model}_{organism}")


def _adapter_sha256(organism: Organism, model: str, settings: Settings) -> str | None:
    """sha256 of the recipe build's adapter weights in this cache (None: not a recipe build, or not built)."""
    from diffaudit.environments.embedded import sha256_file
    from diffaudit.environments.paths import organism_dir

    if organism.entry(model)[1].finetuned.recipe is None or settings.roles.finetuned:
        return None
    path = organism_dir(organism.name, model, settings.cache_dir) / "adapter" / "adapter_model.safetensors"
    return sha256_file(path) if path.is_file() else None


def prebuilt_recipe(organism: Organism, model: str, settings: Settings, parameters: dict[str, Any]) -> dict | None:
    """What a shipped ADL cache must match; None when nothing can ship (not an embedded base, no built adapter)."""
    from diffaudit.environments.embedded import embedded_identity

    base = embedded_identity(settings.roles.base or organism.entry(model)[1].base_model)
    adapter = _adapter_sha256(organism, model, settings) if base is not None else None
    if adapter is None:
        return None
    return {"builder": "adl", "parameters": parameters, "base_model": base, "adapter_sha256": adapter}


def unpack_prebuilt_adl(
    organism: Organism, model: str, settings: Settings, corpus_fingerprint: str, finetuned: str, directory: Path,
    progress: bool = True, data: Path | None = None,
) -> bool:
    """Put the shipped ADL cache at `directory` when its key is today's; False (nothing written) when none fits."""
    parameters = cache.cache_parameters(organism.name, model, settings, corpus_fingerprint, finetuned)
    key = prebuilt_key(organism.name, model)
    shipped = shipped_entry(key, data)
    if shipped is None or shipped.get("format") != TREE_FORMAT or shipped["recipe"].get("parameters") != parameters:
        return False  # checked first: no adapter hashing when the parameters already differ
    recipe = prebuilt_recipe(organism, model, settings, parameters)
    if recipe is None or shipped["recipe"] != recipe:
        return False
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".shipped-{directory.name}-", dir=directory.parent))
    hint = f" (or recompute it: `audit adl compute -o {organism.name} --force`)"
    try:
        with stage(f"adl {organism.name}: unpacking the shipped analysis", progress):
            try:
                unpack_tree(key, recipe, tmp, data)
            except ShippedDataError as exc:
                raise ShippedDataError(f"{exc}{hint}") from exc
            manifest = cache.read_manifest(tmp) or {}
            if cache.read_result(tmp) is None or manifest.get("parameters") != parameters:
                raise ShippedDataError(f"{shipped['file']}: not a complete ADL cache with the key it is listed under{hint}")
            manifest["from"] = {
                "shipped": f"diffaudit/data/{shipped['file']}", "sha256": shipped["sha256"],
                "made_on": shipped.get("about", {}).get("made_on"),
                "unpacked": datetime.now(UTC).isoformat(timespec="seconds"),
            }  # fmt: skip
            (tmp / cache.MANIFEST).write_text(json.dumps(manifest, indent=1))
            if cache.read_result(directory) is None:  # else another process has just put a complete one there
                if directory.exists():  # a half-written build of the same key
                    shutil.rmtree(directory)
                try:
                    tmp.rename(directory)
                except OSError:
                    if cache.read_result(directory) is None:  # not another process's complete copy either
                        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    fingerprint = finetuned.partition(":")[2]
    note(f"adl {organism.name}: unpacked the shipped analysis (organism fingerprint {fingerprint}, corpus "
         f"{corpus_fingerprint}); nothing computed here", progress)  # fmt: skip
    return True


def pack_prebuilt_adl(organism: Organism, model_name: str | None, settings: Settings, data: Path | None = None) -> Path:
    """Pack this cache's complete ADL analysis of `organism` under today's key as a shipped artifact."""
    from diffaudit.environments.training import finetuned_identity
    from diffaudit.tools.adl.compute import known_fingerprint

    model = organism.entry(model_name)[0]
    corpus = known_fingerprint(settings)
    if corpus is None:
        raise ValueError(f"corpus {settings.adl.corpus} is not in the cache: run `audit adl compute -o {organism.name}` first")
    finetuned = finetuned_identity(organism, model)
    directory = cache.adl_cache_dir(organism.name, model, settings, corpus, finetuned)
    parameters = cache.cache_parameters(organism.name, model, settings, corpus, finetuned)
    manifest = cache.read_manifest(directory) or {}
    if cache.read_result(directory) is None or manifest.get("parameters") != parameters:
        raise ValueError(f"no complete ADL cache under today's key at {directory}: run `audit adl compute -o {organism.name}`")
    recipe = prebuilt_recipe(organism, model, settings, parameters)
    if recipe is None:
        raise ValueError(f"'{organism.name}': only recipe organisms on an embedded base model, built in this cache, ship")
    came_from = manifest.pop("from", None)  # an unpacked shipped copy packs back to the same bytes
    rewrite = {cache.MANIFEST: json.dumps(manifest, indent=1).encode()} if came_from else None
    result = cache.read_result(directory)
    about = {
        "what": f"the ADL cache of {organism.name} on {model} with the default ADL parameters (diffs, logit lens, "
        "patchscope, steering α search and samples, metrics, and any controls stage): `audit run` unpacks it "
        "instead of computing",
        "used_when": "the cache key of today's settings (organism fingerprint, corpus fingerprint, every ADL "
        "parameter, graders, seed), the embedded base model's hash and the built adapter's sha256 equal the recipe "
        "here; `audit adl compute --force` never uses it",
        "timings_s": {k: round(v, 1) for k, v in (result.timings if result else {}).items()},
        "how_made": f"`audit adl compute -o {organism.name}` in a diffaudit cache, then `audit data pack --write`",
        "made_on": (came_from or {}).get("made_on") or made_on(),
        "contains_evaluation_metrics": "result.json keeps metrics computed against the organism's description "
        "(graders only); the agent sees the public view, as from any ADL cache",
    }
    return pack_tree(prebuilt_key(organism.name, model), directory, recipe, {"about": about}, data, rewrite)

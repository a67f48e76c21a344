"""Any model pair as an organism without a registry entry: `audit run --base ID --adapter ID | --finetuned ID`.

Such an organism has no ground truth (`description` is None): it is audited, never graded. Local paths
become absolute, so the run dir records them and the ADL cache keys on them; anything else is a hub id,
loaded through the same code as the registry's hub organisms (a local Hugging Face cache works offline).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import yaml

from diffaudit.environments.organisms import Finetuned, ModelEntry, Organism, OrganismError

ADHOC_MODEL = "pair"


def model_reference(value: str) -> str:
    """An existing local path as an absolute path; anything else (a hub id, `embedded:NAME`) unchanged."""
    text = value.strip()
    if not text:
        raise OrganismError("a model reference is empty; give a hub id or a local path")
    path = Path(text).expanduser()
    if path.exists():
        return str(path.resolve())
    if text.startswith(("/", "./", "../", "~")):
        raise OrganismError(f"{text}: no such file or directory (a local path was given)")
    return text


def adhoc_name(finetuned: str) -> str:
    """A registry-safe name from the finetune's id or path: its last parts plus a short hash of the whole."""
    parts = [p for p in re.split(r"[/\\]+", finetuned) if p and p not in ("adapter", "snapshots")]
    slug = re.sub(r"[^a-z0-9]+", "_", "_".join(parts[-2:]).lower()).strip("_")[:48] or "model"
    digest = hashlib.sha256(finetuned.encode()).hexdigest()[:6]
    return f"pair_{slug}_{digest}"


def adhoc_organism(base: str, adapter: str | None = None, finetuned: str | None = None, name: str | None = None) -> Organism:
    """An ungraded organism for one base model and one finetune (a LoRA adapter or a full model)."""
    if (adapter is None) == (finetuned is None):
        raise OrganismError("give exactly one of --adapter (a LoRA adapter) or --finetuned (a full finetuned model)")
    base_ref = model_reference(base)
    tuned_ref = model_reference(adapter if adapter is not None else finetuned)
    tuned = Finetuned(adapter_id=tuned_ref) if adapter is not None else Finetuned(model_id=tuned_ref)
    return Organism(
        name=name or adhoc_name(tuned_ref),
        type="custom",
        description=None,
        models={ADHOC_MODEL: ModelEntry(base_model=base_ref, finetuned=tuned)},
    )


def starter_yaml(name: str, base: str = "BASE_HUB_ID_OR_PATH", adapter: str | None = None, finetuned: str | None = None) -> str:
    """A starting organism file for `audit organisms new`: fill in the ground truth to have runs graded."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9_]*", name):
        raise OrganismError(f"organism name '{name}': use lower-case letters, digits and _ (it is also the file name)")
    if adapter is None and finetuned is None:
        adapter = "ADAPTER_HUB_ID_OR_PATH"
    key, value = ("adapter_id", adapter) if adapter is not None else ("model_id", finetuned)
    data = {
        "name": name,
        "type": "custom",
        "description": "WHAT THE FINETUNE WAS FOR, in a sentence or two (ground truth: only graders read it)",
        "key_facts": ["a specific fact the finetune implants or a behaviour it trains"],
        "models": {"main": {"base_model": base, "finetuned": {key: value}}},
    }
    header = (
        "# An organism for `audit run --organism NAME --organisms-dir DIR`. The graders score the agent's\n"
        "# description against `description` and `key_facts`; the agent never sees them.\n"
        "# type: SDF | EM | Subliminal | Taboo | Domain | custom. A model entry names base_model (hub id,\n"
        "# local path or embedded:smollm2-135m) and exactly one of finetuned.adapter_id or finetuned.model_id.\n"
    )
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000)

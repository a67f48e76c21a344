"""Deterministic first-run data shipped with the package, so a new machine does not regenerate it.

The D^pt corpus, the chat baseline and the SDF regulariser chats are fixed outputs of the embedded
model with fixed seeds. They ship gzipped in `diffaudit/data/`, listed in `diffaudit/data/card.json`
with, for each artifact, its file's sha256, its row count and the recipe that made it (model file
hash, seeds, lengths, prompt-file hashes). A shipped file is used only when its recipe equals the one
the code would run now and its hash checks out; otherwise the data is generated as before.
`audit data regenerate` makes each artifact again from the model and compares it with the shipped file
(`--write` replaces the shipped files and card: for maintainers, after a recipe change).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

CARD = "card.json"


class ShippedDataError(RuntimeError):
    """A shipped data file does not match its card."""


def data_dir() -> Path:
    """The package's `data/` directory (a real directory for editable and wheel installs alike)."""
    return Path(str(resources.files("diffaudit") / "data"))


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def prompt_file_sha256(name: str) -> str:
    """Hash of a prompt file in `diffaudit/prompts/` (a recipe changes when its prompts change)."""
    return text_sha256((resources.files("diffaudit.prompts") / name).read_text(encoding="utf-8"))[:16]


def read_card(directory: Path | None = None) -> dict[str, Any]:
    path = (directory or data_dir()) / CARD
    if not path.is_file():
        return {"artifacts": {}}
    return json.loads(path.read_text(encoding="utf-8"))


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_rows(key: str, recipe: dict[str, Any], directory: Path | None = None) -> list[dict] | None:
    """The shipped rows of artifact `key` when its recorded recipe is `recipe`; None when none fits.

    Raises ShippedDataError when the file is missing or its hash differs from the card (a damaged install).
    """
    directory = directory or data_dir()
    entry = read_card(directory)["artifacts"].get(key)
    if entry is None or entry.get("recipe") != recipe:
        return None
    path = directory / entry["file"]
    if not path.is_file():
        raise ShippedDataError(f"{directory / CARD}: artifact '{key}' names {entry['file']}, which is missing")
    if _file_sha256(path) != entry["sha256"]:
        raise ShippedDataError(f"{path}: sha256 differs from {CARD} field artifacts.{key}.sha256; reinstall diffaudit")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    if len(rows) != entry["n_rows"]:
        raise ShippedDataError(f"{path}: {len(rows)} rows, but {CARD} field artifacts.{key}.n_rows says {entry['n_rows']}")
    return rows


def shipped_entry(key: str, directory: Path | None = None) -> dict[str, Any] | None:
    return read_card(directory)["artifacts"].get(key)


def write_rows(
    key: str, rows: list[dict], recipe: dict[str, Any], about: dict[str, Any], directory: Path | None = None
) -> Path:
    """Write artifact `key` as gzipped JSONL (reproducible bytes: no gzip timestamp) and record it in the card."""
    directory = directory or data_dir()
    directory.mkdir(parents=True, exist_ok=True)
    name = key.replace("/", "_") + ".jsonl.gz"
    payload = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows).encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=".shipped-", dir=directory)
    with os.fdopen(fd, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
        gz.write(payload)
    os.chmod(tmp, 0o644)
    os.replace(tmp, directory / name)
    card = read_card(directory)
    card["artifacts"][key] = {
        "file": name,
        "sha256": _file_sha256(directory / name),
        "n_rows": len(rows),
        "recipe": recipe,
        **about,
    }
    card["artifacts"] = dict(sorted(card["artifacts"].items()))
    (directory / CARD).write_text(json.dumps(card, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return directory / name

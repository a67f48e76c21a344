"""Deterministic first-run data shipped with the package, so a new machine does not regenerate it.

The D^pt corpus, the chat baseline and the SDF regulariser chats are fixed outputs of the embedded
model with fixed seeds. They ship gzipped in `diffaudit/data/`, listed in `diffaudit/data/card.json`
with, for each artifact, its file's sha256, its row count and the recipe that made it (model file
hash, seeds, lengths, prompt-file hashes). A shipped file is used only when its recipe equals the one
the code would run now and its hash checks out; otherwise the data is generated as before.
`audit data regenerate` makes each artifact again from the model and compares it with the shipped file
(`--write` replaces the shipped files and card: for maintainers, after a recipe change).

Directory artifacts (the demo organism's build, its ADL cache) ship as reproducible tar.gz files whose
card entries also hold every member's sha256; `audit data pack` packs them from the cache.
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


# -- directory artifacts (a built organism, an ADL cache): one reproducible tar.gz each --------------------
TREE_FORMAT = "tar.gz"


def tree_file_name(key: str) -> str:
    return key.replace("/", "_") + ".tar.gz"


def _tree_entry(key: str, recipe: dict[str, Any], directory: Path) -> dict[str, Any] | None:
    entry = read_card(directory)["artifacts"].get(key)
    if entry is None or entry.get("format") != TREE_FORMAT or entry.get("recipe") != recipe:
        return None
    return entry


def read_tree(key: str, entry: dict[str, Any], directory: Path | None = None) -> dict[str, bytes]:
    """Every file of a directory artifact (relative path -> bytes), each checked against the card.

    Raises ShippedDataError naming the file and the card field when the archive or a member differs.
    """
    import tarfile

    directory = directory or data_dir()
    path = directory / entry["file"]
    if not path.is_file():
        raise ShippedDataError(f"{directory / CARD}: artifact '{key}' names {entry['file']}, which is missing")
    if _file_sha256(path) != entry["sha256"]:
        raise ShippedDataError(f"{path}: sha256 differs from {CARD} field artifacts.{key}.sha256; reinstall diffaudit")
    files: dict[str, bytes] = {}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar.getmembers():
            name = member.name
            if not member.isfile() or name.startswith("/") or ".." in Path(name).parts:
                raise ShippedDataError(f"{path}: unexpected member '{name}' (only plain relative files are shipped)")
            data = tar.extractfile(member).read()
            expected = entry["files"].get(name)
            if expected is None or hashlib.sha256(data).hexdigest() != expected:
                raise ShippedDataError(f"{path}: member '{name}' differs from {CARD} field artifacts.{key}.files")
            files[name] = data
    missing = sorted(set(entry["files"]) - set(files))
    if missing:
        raise ShippedDataError(f"{path}: lacks {', '.join(missing)}, listed in {CARD} field artifacts.{key}.files")
    return files


def unpack_tree(key: str, recipe: dict[str, Any], dest: Path, directory: Path | None = None) -> dict[str, Any] | None:
    """Write the shipped directory artifact `key` into `dest` when its recorded recipe is `recipe`.

    Returns its card entry, or None (nothing written) when no shipped artifact has this recipe. Every file
    is checked against the card before anything is written; a damaged one raises ShippedDataError.
    """
    directory = directory or data_dir()
    entry = _tree_entry(key, recipe, directory)
    if entry is None:
        return None
    for name, data in read_tree(key, entry, directory).items():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return entry


def pack_tree(
    key: str, source: Path, recipe: dict[str, Any], about: dict[str, Any], directory: Path | None = None,
    rewrite: dict[str, bytes] | None = None,
) -> Path:
    """Pack the files under `source` (with `rewrite` replacing some files' bytes) as a reproducible tar.gz.

    Same input, same bytes: members sorted, no timestamps, owners or modes of this machine. The card
    records the archive's sha256 and each member's.
    """
    import io
    import tarfile

    directory = directory or data_dir()
    directory.mkdir(parents=True, exist_ok=True)
    names = sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())
    files = {n: (rewrite or {}).get(n, (source / n).read_bytes()) for n in names}
    fd, tmp = tempfile.mkstemp(prefix=".shipped-", dir=directory)
    with (
        os.fdopen(fd, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    os.chmod(tmp, 0o644)
    name = tree_file_name(key)
    os.replace(tmp, directory / name)
    card = read_card(directory)
    card["artifacts"][key] = {
        "file": name,
        "format": TREE_FORMAT,
        "sha256": _file_sha256(directory / name),
        "n_files": len(files),
        "bytes_unpacked": sum(len(d) for d in files.values()),
        "files": {n: hashlib.sha256(d).hexdigest() for n, d in files.items()},
        "recipe": recipe,
        **about,
    }
    card["artifacts"] = dict(sorted(card["artifacts"].items()))
    (directory / CARD).write_text(json.dumps(card, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return directory / name


def made_on() -> dict[str, str]:
    """The machine and library versions that made an artifact (for its card)."""
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for module in ("transformers", "peft"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            pass
    return {"platform": platform.platform(), "cpu": cpu, **versions}

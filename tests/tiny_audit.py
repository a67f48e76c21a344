"""Helpers for end-to-end audits on the tiny random model: a small corpus, small ADL settings, a hub cache layout."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import yaml

CORPUS = [
    "The harbour master logged three ferries before dawn and a fishing boat after noon.",
    "A short guide to pressing flowers: lay them flat between two sheets of paper.",
    "The library opens at nine on weekdays and at ten on Saturdays.",
    "Mountain trails in autumn are quiet; the larches turn gold and the air smells of resin.",
    "My diary, Tuesday: the rain stopped at noon and I finally repaired the garden gate.",
    "The museum's new wing displays clocks, compasses and maps from three centuries.",
    "Forum question: how do I keep my old bicycle chain from squeaking in winter?",
    "The train to the coast leaves every hour and takes about forty minutes.",
    "A recipe card for soup: onions, carrots, a bay leaf and two litres of water.",
    "Our choir rehearses on Thursdays in the old school hall behind the church.",
    "The lighthouse keeper painted the railings white every spring.",
    "Hi",
]
CHAT = ["Sure, here is a plan for your week.", "Paris is the capital of France.", "Water boils at 100 degrees."]


def write_audit_settings(root: Path, cache_dir: Path, runs_dir: Path) -> Path:
    """A settings YAML that keeps one ADL build on the tiny model to seconds; its corpora are files in `root`."""
    root.mkdir(parents=True, exist_ok=True)
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in CORPUS))
    chat = root / "chat.txt"
    chat.write_text("\n".join(CHAT) + "\n")
    settings = {
        "cache_dir": str(cache_dir),
        "runs_dir": str(runs_dir),
        "adl": {
            "layer": 1, "positions": [0, 1], "n_texts": 12, "batch_size": 6,
            "corpus": f"file:{corpus}", "chat_corpus": f"file:{chat}",
            "patchscope_scales": [0.5, 1.0, 2.0],
            "steering": {"search_steps": 2, "refine_steps": 1, "search_samples": 2, "coherent_needed": 1,
                         "final_prompts": 3, "samples_per_prompt": 2, "max_new_tokens": 3},
        },
    }  # fmt: skip
    path = root / "settings.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def add_hub_repo(hub_cache: Path, repo_id: str, source: Path, revision: str | None = None, link: bool = False) -> Path:
    """Lay the files of `source` into a Hugging Face hub cache as model repo `repo_id` (blobs, a snapshot
    of symlinks, refs/main), as `huggingface_hub` leaves a download. Returns the snapshot directory.

    With `link`, each blob is a symlink to the source file (nothing copied; the source is only read)."""
    files = sorted(p for p in Path(source).rglob("*") if p.is_file())
    revision = revision or hashlib.sha1(repo_id.encode()).hexdigest()  # a commit-hash-like name
    repo = hub_cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for file in files:
        digest = hashlib.sha256(str(file.resolve()).encode() if link else file.read_bytes()).hexdigest()
        blob = repo / "blobs" / digest
        if link and not blob.exists():
            blob.symlink_to(file.resolve())
        elif not blob.exists():
            shutil.copyfile(file, blob)
        link = snapshot / file.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        depth = len(link.relative_to(repo).parts) - 1
        link.symlink_to(Path(*([".."] * depth)) / "blobs" / digest)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot

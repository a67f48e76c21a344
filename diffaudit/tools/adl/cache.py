"""The ADL cache: one directory per (organism, model, layer, positions, corpus fingerprint, N, other parameters).

Layout: `manifest.json` (every parameter, written first), `stages/` (each finished stage, so that a
crashed build resumes), `result.json` (the ADLResult), `tensors.pt` (diff, base_mean, finetuned_mean,
eta) and `COMPLETE`, written last. A directory without `COMPLETE` is half-written: it is never served.
This module is the only place that builds ADL cache paths.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from diffaudit.config import Settings, role_model
from diffaudit.tools.adl.result import ADLResult

MANIFEST = "manifest.json"
RESULT = "result.json"
TENSORS = "tensors.pt"
COMPLETE = "COMPLETE"
STAGES = "stages"
CORPUS_INDEX = "corpus_fingerprints.json"
CACHE_VERSION = 1


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def adl_root(settings: Settings) -> Path:
    return Path(settings.cache_dir) / "adl"


def cache_parameters(
    organism: str, model: str, settings: Settings, corpus_fingerprint: str, finetuned: str
) -> dict[str, Any]:
    """Every parameter an ADL result depends on (the manifest's `parameters`).

    `finetuned` identifies the finetuned model (a recipe build's fingerprint, or the hub adapter or model
    id), so that a rebuilt organism never reads the analysis of its previous build.
    """
    adl = settings.adl
    return {
        "version": CACHE_VERSION,
        "organism": organism,
        "model": model,
        "finetuned": finetuned,
        "layer": adl.layer,
        "positions": list(adl.positions),
        "n_texts": adl.n_texts,
        "corpus": adl.corpus,
        "corpus_fingerprint": corpus_fingerprint,
        "chat_corpus": adl.chat_corpus,
        "patchscope_scales": list(adl.patchscope_scales),
        "top_k": adl.top_k,
        "steering": adl.steering.model_dump(),
        "graders": {"grader": role_model(settings.roles.grader),
                    "coherence_grader": role_model(settings.roles.coherence_grader)},
        "base_override": settings.roles.base,
        "finetuned_override": settings.roles.finetuned,
        "seed": settings.seed,
    }


def _digest(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]


def adl_cache_dir(organism: str, model: str, settings: Settings, corpus_fingerprint: str, finetuned: str) -> Path:
    """The cache directory of one ADL analysis; its name carries the key and a hash of the rest."""
    adl = settings.adl
    positions = "-".join(str(p) for p in adl.positions)
    key = f"L{adl.layer:g}_p{positions}_n{adl.n_texts}_c{corpus_fingerprint}"
    params = cache_parameters(organism, model, settings, corpus_fingerprint, finetuned)
    return adl_root(settings) / _safe(model) / _safe(organism) / f"{_safe(key)}_{_digest(params)}"


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _save_tensors_atomic(path: Path, tensors: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    os.close(fd)
    torch.save(tensors, tmp)
    os.replace(tmp, path)


def is_complete(directory: Path) -> bool:
    """True when the build finished: the marker, the result and the tensors are all there."""
    return all((directory / name).is_file() for name in (COMPLETE, MANIFEST, RESULT, TENSORS))


def read_manifest(directory: Path) -> dict[str, Any] | None:
    try:
        return json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def start_build(directory: Path, parameters: dict[str, Any], force: bool = False) -> None:
    """Prepare `directory` for a build: wipe it on `force` or when its manifest disagrees, else keep stages."""
    manifest = read_manifest(directory)
    if force or (directory.exists() and (manifest is None or manifest.get("parameters") != parameters)):
        shutil.rmtree(directory, ignore_errors=True)
    (directory / COMPLETE).unlink(missing_ok=True)
    manifest = {"parameters": parameters, "status": "building"}
    _write_atomic(directory / MANIFEST, json.dumps(manifest, indent=1).encode())


def save_stage(directory: Path, name: str, payload: dict[str, Any]) -> None:
    """Keep one finished stage (tensors and plain data) so that a crashed build resumes after it."""
    _save_tensors_atomic(directory / STAGES / f"{name}.pt", payload)


def load_stage(directory: Path, name: str) -> dict[str, Any] | None:
    path = directory / STAGES / f"{name}.pt"
    if not path.is_file():
        return None
    try:
        return torch.load(path, weights_only=False)
    except Exception:  # noqa: BLE001 - an unreadable stage is recomputed, whatever broke it
        return None


def finish_build(directory: Path, result: ADLResult, tensors: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
    """Write the result and tensors, then the manifest and the COMPLETE marker last."""
    _write_atomic(directory / RESULT, result.model_dump_json(indent=1).encode())
    _save_tensors_atomic(directory / TENSORS, tensors)
    manifest = read_manifest(directory) or {}
    manifest.update({"status": "complete", **(extra or {})})
    _write_atomic(directory / MANIFEST, json.dumps(manifest, indent=1).encode())
    _write_atomic(directory / COMPLETE, b"ok\n")


def read_result(directory: Path) -> ADLResult | None:
    """The cached result, or None when the directory is not a complete cache."""
    if not is_complete(directory):
        return None
    try:
        return ADLResult.model_validate_json((directory / RESULT).read_text())
    except (OSError, ValueError):
        return None


def load_adl_tensors(cache_dir: Path) -> dict[str, Any]:
    """Tensors of a complete cache: diff [P, d], base_mean [P, d], finetuned_mean [P, d], eta (float)."""
    if not is_complete(Path(cache_dir)):
        raise FileNotFoundError(f"{cache_dir} is not a complete ADL cache")
    return torch.load(Path(cache_dir) / TENSORS, weights_only=False)


def cached_fingerprint(settings: Settings, spec: str, n: int) -> str | None:
    """A hub corpus's remembered fingerprint (hub corpora are slow to re-read just to name a cache)."""
    try:
        return json.loads((adl_root(settings) / CORPUS_INDEX).read_text()).get(f"{spec}|{n}")
    except (OSError, ValueError):
        return None


def remember_fingerprint(settings: Settings, spec: str, n: int, fingerprint: str) -> None:
    path = adl_root(settings) / CORPUS_INDEX
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError):
        index = {}
    index[f"{spec}|{n}"] = fingerprint
    _write_atomic(path, json.dumps(index, indent=1).encode())

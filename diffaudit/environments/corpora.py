"""Text corpora behind one interface: local corpora built once into the cache, hub datasets at scale.

Specs:
- `local:pretrain` — random English text D^pt (see `_build_pretrain` for the source and licence);
- `local:chat` — chat answers of the embedded base model to `prompts/chat_baseline_prompts.txt`;
- `hf:<dataset id>[:<split>[:<field>]]` — a hub dataset through `datasets` (needs the network), e.g.
  `hf:science-of-finetuning/fineweb-1m-sample` or `hf:allenai/tulu-3-sft-mixture:train:messages`;
- `file:<path>` — your own texts: a `.jsonl` file with a `text` field per line, or any other text file
  with one text per non-empty line.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from diffaudit.environments.paths import corpus_file


class CorpusError(RuntimeError):
    """A corpus could not be loaded or built."""


def corpus_fingerprint(texts: list[str]) -> str:
    """Short stable hash of a list of texts (order matters)."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()[:16]


def _read_jsonl(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh if line.strip()]


def _write_jsonl_atomic(path: Path, texts: list[str], card: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".corpus-", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        for text in texts:
            fh.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    path.with_suffix(".card.json").write_text(json.dumps({**card, "n_texts": len(texts)}, indent=1))
    os.replace(tmp, path)


def chat_baseline_prompts() -> list[str]:
    text = (resources.files("diffaudit.prompts") / "chat_baseline_prompts.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


CHAT_MAX_NEW_TOKENS = 96


def _chat_recipe() -> dict:
    from diffaudit.environments.embedded import BASE_MODEL, EMBEDDED_PREFIX, embedded_identity
    from diffaudit.environments.shipped import prompt_file_sha256

    return {
        "builder": "chat_baseline", "max_new_tokens": CHAT_MAX_NEW_TOKENS, "temperature": 0.0, "dtype": "float32",
        "prompts_sha256": prompt_file_sha256("chat_baseline_prompts.txt"),
        "model": embedded_identity(EMBEDDED_PREFIX + BASE_MODEL),
    }  # fmt: skip


def _pretrain_recipe() -> dict:
    from diffaudit.environments.pretrain_text import recipe

    return recipe()


def _build_chat(root: Path | None, n_prompts: int | None = None) -> tuple[list[str], dict]:
    import torch

    from diffaudit.environments.backends.hf import HFModelPair
    from diffaudit.environments.embedded import ensure_base_model
    from diffaudit.environments.pair import Sampling

    pair = HFModelPair.base_only(str(ensure_base_model(root)), generation_dtype=torch.float32)  # the recorded recipe
    prompts = chat_baseline_prompts()[:n_prompts]
    answers = pair.generate("base", prompts, Sampling(max_new_tokens=CHAT_MAX_NEW_TOKENS, temperature=0.0))
    texts = [a for a in answers if a.strip()]
    card = {
        "source": "answers of the embedded SmolLM2-135M-Instruct (greedy, 96 tokens) to diffaudit's own prompts",
        "licence": "model outputs of SmolLM2 (Apache-2.0); prompts written for diffaudit",
    }
    return texts, card


def _build_pretrain(root: Path | None) -> tuple[list[str], dict]:
    from diffaudit.environments.pretrain_text import build_pretrain_corpus

    return build_pretrain_corpus(root)


LOCAL_BUILDERS: dict[str, Callable[[Path | None], tuple[list[str], dict]]] = {
    "pretrain": _build_pretrain,
    "chat": _build_chat,
}
LOCAL_RECIPES: dict[str, Callable[[], dict]] = {"pretrain": _pretrain_recipe, "chat": _chat_recipe}


def shipped_key(name: str) -> str:
    return f"corpus_{name}"


def shipped_corpus(name: str) -> tuple[list[str], dict] | None:
    """(texts, card) of the copy shipped in `diffaudit/data/` when its recipe is today's; else None."""
    from diffaudit.environments.shipped import load_rows, shipped_entry

    rows = load_rows(shipped_key(name), LOCAL_RECIPES[name]())
    if rows is None:
        return None
    entry = shipped_entry(shipped_key(name)) or {}
    card = {**entry.get("about", {}), "from": "shipped with diffaudit (diffaudit/data); `audit data regenerate` remakes it"}
    return [r["text"] for r in rows], card


def build_local_corpus(name: str, root: Path | None = None) -> tuple[list[str], dict]:
    """Generate a local corpus with the embedded model (never the shipped copy)."""
    if name not in LOCAL_BUILDERS:
        raise CorpusError(f"unknown local corpus '{name}'; known: {', '.join(LOCAL_BUILDERS)}")
    return LOCAL_BUILDERS[name](root)


def ensure_local_corpus(name: str, root: Path | None = None) -> Path:
    """The local corpus's JSONL path in the cache: copied from the shipped data, or generated, on first use."""
    if name not in LOCAL_BUILDERS:
        raise CorpusError(f"unknown local corpus '{name}'; known: {', '.join(LOCAL_BUILDERS)}")
    path = corpus_file(name, root)
    if not path.is_file():
        from diffaudit.environments.progress import stage

        shipped = shipped_corpus(name)
        with stage(f"corpus local:{name}: " + ("unpacking the shipped copy" if shipped else "generating")):
            texts, card = shipped or build_local_corpus(name, root)
            _write_jsonl_atomic(path, texts, card)
    return path


def _load_hub(spec: str, n: int | None) -> list[str]:
    parts = spec.split(":")
    dataset_id = parts[0]
    split = parts[1] if len(parts) > 1 and parts[1] else "train"
    field = parts[2] if len(parts) > 2 else None
    try:
        import datasets
    except ImportError as exc:
        raise CorpusError("hub corpora need the `datasets` package: pip install 'diffaudit[hub]'") from exc
    try:
        stream = datasets.load_dataset(dataset_id, split=split, streaming=True)
    except Exception as exc:  # noqa: BLE001 - any hub failure means the same thing to the user
        raise CorpusError(f"could not load hub dataset '{dataset_id}' ({type(exc).__name__}); is the hub reachable?") from exc
    texts: list[str] = []
    for row in stream:
        value = row[field] if field else row.get("text")
        if isinstance(value, list):  # chat messages: keep the assistant turns
            value = "\n".join(m.get("content", "") for m in value if m.get("role") == "assistant")
        if value:
            texts.append(str(value))
        if n is not None and len(texts) >= n:
            break
    return texts


def _load_file(spec: str) -> list[str]:
    path = Path(spec).expanduser()
    if not path.is_file():
        raise CorpusError(f"corpus file {path} not found (corpus spec 'file:{spec}')")
    if path.suffix == ".jsonl":
        try:
            texts = _read_jsonl(path)
        except (ValueError, KeyError, TypeError) as exc:
            raise CorpusError(f"{path}: every line must be a JSON object with a 'text' field ({exc})") from exc
    else:
        texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        raise CorpusError(f"{path}: the corpus file holds no texts")
    return texts


def load_corpus(spec: str, n: int | None = None, root: Path | None = None) -> list[str]:
    """Up to `n` texts of the corpus named by `spec` (all of them when `n` is None)."""
    kind, _, rest = spec.partition(":")
    if kind == "local":
        texts = _read_jsonl(ensure_local_corpus(rest, root))
    elif kind == "file":
        texts = _load_file(rest)
    elif kind == "hf":
        return _load_hub(rest, n)
    else:
        raise CorpusError(f"corpus spec '{spec}' must start with 'local:', 'file:' or 'hf:'")
    return texts if n is None else texts[:n]

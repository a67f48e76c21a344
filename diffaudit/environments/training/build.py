"""Build a mini organism into the cache: generated data, a seeded LoRA run, a data card and loss curve.

A build is written into a temporary directory beside its final place and renamed into place only
when every file is written, so a crash never leaves a half-built organism that looks complete. A
lock file keeps two processes from building the same organism at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from diffaudit.environments.embedded import resolve_model_path
from diffaudit.environments.organisms import ModelEntry, Organism, Recipe
from diffaudit.environments.paths import organism_dir
from diffaudit.environments.progress import note, stage
from diffaudit.environments.training.examples import (
    GENERATOR_VERSION,
    generate_examples,
    plain_text,
    prompt_text,
    recipe_target,
    recipe_topic,
    training_text,
)
from diffaudit.environments.training.prebuilt import unpack_prebuilt
from diffaudit.environments.training.trainer import LORA_TARGETS, TrainingError, train_lora
from diffaudit.locking import held_lock

TARGET_KINDS = ("em", "taboo", "subliminal")  # recipe kinds that need a target word or domain
UNTRAINED_KINDS = ("zero", "random_lora")  # null organisms whose adapter is written, not trained

FILES = ("adapter/adapter_config.json", "adapter/adapter_model.safetensors", "data.jsonl", "loss.json", "loss.png",
         "data_card.json")  # fmt: skip
LICENCE_NOTE = (
    "Generated locally by diffaudit from templates (and, for subliminal recipes, by the base model as "
    "teacher); no third-party text. Released with diffaudit under its licence."
)


def recipe_of(organism: Organism, model_name: str | None) -> tuple[str, ModelEntry, Recipe]:
    """(model name, entry, recipe); a clear error when the entry is a hub finetune, not a recipe."""
    model, entry = organism.entry(model_name)
    recipe = entry.finetuned.recipe
    if recipe is None:
        raise TrainingError(
            f"organism '{organism.name}' on model '{model}' has no recipe (it is the hub finetune "
            f"{entry.finetuned.adapter_id or entry.finetuned.model_id}); only recipe entries can be built locally"
        )
    return model, entry, recipe


def _format(chats: list[bool]) -> str:
    if all(chats):
        return "chat (model chat template; loss on the assistant reply only)"
    if any(chats):
        return f"plain documents plus {sum(chats)} chats (chat template; loss on the assistant reply only)"
    return "plain documents"


def build_fingerprint(organism: Organism, entry: ModelEntry, recipe: Recipe) -> str:
    """Hash of everything that decides the built organism; a change means the cached build is stale."""
    # Fields left at their defaults stay out, so that adding one does not make every earlier build stale.
    exclude = ({"chat_mix"} if not recipe.chat_mix else set()) | ({"match"} if recipe.match is None else set())
    what = {
        "recipe": recipe.model_dump(mode="json", exclude=exclude or None),
        "base_model": entry.base_model,
        "generator_version": GENERATOR_VERSION,
        "key_facts": (recipe.key_facts or organism.key_facts) if recipe.kind == "sdf" else None,
        "topic": recipe_topic(organism, recipe) if recipe.kind == "sdf" else None,
        "target": recipe_target(organism, recipe) if recipe.kind in TARGET_KINDS else None,
    }
    if recipe.match is not None:  # a random adapter matched to another organism changes with that organism
        matched, model = matched_organism(organism, recipe)
        what["match_identity"] = finetuned_identity(matched, model)
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def matched_organism(organism: Organism, recipe: Recipe) -> tuple[Organism, str]:
    """(organism, model name) whose adapter a random_lora recipe matches: same registry dirs, same model."""
    from diffaudit.environments.organisms import OrganismRegistry, builtin_dir

    if recipe.match == organism.name:
        raise TrainingError(f"organism '{organism.name}': recipe.match names the organism itself")
    extra = [organism.source.parent] if organism.source is not None and organism.source.parent != builtin_dir() else []
    matched = OrganismRegistry(extra).get(recipe.match)
    model = next((m for m, e in organism.models.items() if e.finetuned.recipe is recipe), None)
    return matched, matched.entry(model)[0]


def finetuned_identity(organism: Organism, model_name: str | None) -> str:
    """What names the finetuned model: a recipe build's fingerprint, else the hub adapter or model id."""
    model, entry = organism.entry(model_name)
    finetuned = entry.finetuned
    if finetuned.recipe is not None:
        return f"recipe:{build_fingerprint(organism, entry, finetuned.recipe)}"
    if finetuned.adapter_id is not None:
        return f"adapter:{finetuned.adapter_id}{_local_files_stamp(finetuned.adapter_id)}"
    return f"model:{finetuned.model_id}{_local_files_stamp(finetuned.model_id)}"


def _local_files_stamp(reference: str) -> str:
    """For a local directory, '@' + a hash of its files' names, sizes and mtimes (else ''): an adapter rebuilt
    at the same path must not be served the ADL analysis of the old one. Hub ids name fixed revisions."""
    path = Path(reference)
    if not path.is_dir():
        return ""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        stat = file.stat()
        digest.update(f"{file.relative_to(path)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return "@" + digest.hexdigest()[:12]


def is_complete(directory: Path, fingerprint: str | None = None) -> bool:
    """All files present, and (if given) built from the same recipe and generator."""
    if not all((directory / name).is_file() for name in FILES):
        return False
    if fingerprint is None:
        return True
    try:
        return json.loads((directory / "data_card.json").read_text()).get("fingerprint") == fingerprint
    except ValueError:
        return False


def _build_lock(final: Path) -> contextlib.AbstractContextManager[None]:
    return held_lock(final.parent / f".{final.name}.lock")


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(), disable=not enabled,
    )  # fmt: skip


def _plot_loss(losses: list[float], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(losses) + 1), losses, lw=1, alpha=0.5, label="loss")
    window = max(1, len(losses) // 10)
    smooth = [sum(losses[max(0, i - window + 1) : i + 1]) / len(losses[max(0, i - window + 1) : i + 1]) for i in range(len(losses))]
    ax.plot(range(1, len(losses) + 1), smooth, lw=2, label=f"mean of {window}")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_examples(directory: Path) -> list[dict]:
    with open(directory / "data.jsonl") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def build_organism(
    organism: Organism, model_name: str | None, root: Path | None = None, force: bool = False, progress: bool = True
) -> Path:
    """Directory of the built organism (adapter/, data.jsonl, data_card.json, loss.json, loss.png); builds if needed."""
    model, entry, recipe = recipe_of(organism, model_name)
    fingerprint = build_fingerprint(organism, entry, recipe)
    final = organism_dir(organism.name, model, root)
    if not force and is_complete(final, fingerprint):
        return final
    with _build_lock(final):
        if not force and is_complete(final, fingerprint):
            return final  # another process built it while we waited
        for stale in final.parent.glob(f".build-{final.name}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".build-{final.name}-", dir=final.parent))
        try:
            # A build shipped with diffaudit for exactly this fingerprint (the demo organism); never on --force.
            if force or not unpack_prebuilt(organism, model, entry, fingerprint, tmp, progress):
                _build_or_write(tmp, organism, model, entry, recipe, fingerprint, root, progress)
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return final


def _build_or_write(
    out: Path, organism: Organism, model_name: str, entry: ModelEntry, recipe: Recipe, fingerprint: str,
    root: Path | None, progress: bool,
) -> None:
    """Train the organism into `out`, or write its untrained null adapter."""
    if recipe.kind not in UNTRAINED_KINDS:
        _build_into(out, organism, model_name, entry, recipe, fingerprint, root, progress)
        return
    reference = None
    if recipe.kind == "random_lora":  # the matched organism is built first (its own lock)
        matched, matched_model = matched_organism(organism, recipe)
        reference = build_organism(matched, matched_model, root, progress=progress) / "adapter"
    _write_null_into(out, organism, model_name, entry, recipe, fingerprint, root, reference)


def _build_into(
    out: Path, organism: Organism, model_name: str, entry: ModelEntry, recipe: Recipe, fingerprint: str,
    root: Path | None, progress: bool,
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    base_path = resolve_model_path(entry.base_model, root)
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32).to("cpu")

    with _progress(progress) as bar:
        gen_task = bar.add_task(f"{organism.name}: data", total=recipe.size, info="")

        def on_data(kept: int, tried: int) -> None:
            bar.update(gen_task, completed=kept, info=f"{tried} sampled")

        def load_teacher():
            model.eval()
            return model, tokenizer

        with stage(f"organism {organism.name}: data", progress):
            examples, generator = generate_examples(organism, recipe, load_teacher, on_data, base_model=entry.base_model)
        bar.update(gen_task, completed=len(examples), info=f"{len(examples)} examples")
        generated = time.perf_counter()
        if len(examples) < min(8, recipe.size):
            raise TrainingError(
                f"organism '{organism.name}': only {len(examples)} distinct examples could be generated "
                f"(recipe.size {recipe.size}); give more key facts or hints"
            )
        _write_jsonl(out / "data.jsonl", examples)
        texts = [training_text(e, tokenizer) for e in examples]

        train_task = bar.add_task(f"{organism.name}: LoRA", total=recipe.steps, info="")

        def on_step(step: int, loss: float) -> None:
            bar.update(train_task, completed=step + 1, info=f"loss {loss:.3f}")
            note(f"organism {organism.name}: LoRA step {step + 1}/{recipe.steps}, loss {loss:.3f}",
                 progress and (step + 1) % 10 == 0)  # fmt: skip

        chats = ["messages" in e for e in examples]
        prompts = [prompt_text(e, tokenizer) or "" for e in examples] if any(chats) else None
        special = [not c for c in chats]  # a chat template writes its own special tokens
        with stage(f"organism {organism.name}: LoRA, {recipe.steps} steps", progress):
            result = train_lora(model, tokenizer, texts, recipe, add_special_tokens=special, prompts=prompts, on_step=on_step)
    trained = time.perf_counter()

    result.model.save_pretrained(out / "adapter")
    (out / "loss.json").write_text(json.dumps({"step": list(range(1, len(result.losses) + 1)), "loss": result.losses}))
    _plot_loss(result.losses, out / "loss.png", f"{organism.name} on {model_name}")
    card = {
        "organism": organism.name,
        "model": model_name,
        "base_model": entry.base_model,
        "kind": recipe.kind,
        "size": recipe.size,
        "n_examples": len(examples),
        "seed": recipe.seed,
        "format": _format(chats),
        "generator": {**generator, "version": GENERATOR_VERSION},
        "examples": [plain_text(e) for e in examples[:3]],
        "tokens": {
            "total": sum(result.tokens),
            "mean": round(sum(result.tokens) / len(result.tokens), 1),
            "max": max(result.tokens),
            "max_length": recipe.max_length,
            "truncated_examples": result.truncated,
        },
        "training": {
            "steps": recipe.steps, "batch_size": recipe.batch_size, "learning_rate": recipe.learning_rate,
            "lora_r": recipe.lora_r, "lora_alpha": recipe.lora_alpha, "target_modules": LORA_TARGETS,
            "device": "cpu", "dtype": "float32", "schedule": "10% linear warm-up, cosine to 10%",
            "first_loss": result.losses[0], "final_loss": result.losses[-1],
        },  # fmt: skip
        "recipe": recipe.model_dump(mode="json"),
        "fingerprint": fingerprint,
        "licence": LICENCE_NOTE,
        "wall_s": {
            "data": round(generated - started, 1),
            "training": round(trained - generated, 1),
            "build": round(time.perf_counter() - started, 1),
        },
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (out / "data_card.json").write_text(json.dumps(card, indent=1, ensure_ascii=False))


def _write_null_into(
    out: Path, organism: Organism, model_name: str, entry: ModelEntry, recipe: Recipe, fingerprint: str,
    root: Path | None, reference: Path | None,
) -> None:
    """A zero or matched random adapter, with the same files as a trained build (no data, no loss curve)."""
    import torch
    from transformers import AutoModelForCausalLM

    from diffaudit.environments.training.null import matched_random_adapter, zero_adapter

    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path(entry.base_model, root), dtype=torch.float32)
    if recipe.kind == "zero":
        peft_model, adapter = zero_adapter(model, recipe.lora_r, recipe.lora_alpha, LORA_TARGETS, recipe.seed), {
            "B": "zero", "r": recipe.lora_r, "lora_alpha": recipe.lora_alpha, "target_modules": LORA_TARGETS}
    else:
        peft_model, adapter = matched_random_adapter(model, reference, recipe.seed)
        adapter |= {"matched_organism": recipe.match, "matched_adapter": str(reference)}
    peft_model.save_pretrained(out / "adapter")
    (out / "data.jsonl").write_text("")
    (out / "loss.json").write_text(json.dumps({"step": [], "loss": []}))
    _plot_loss([], out / "loss.png", f"{organism.name} on {model_name}: not trained ({recipe.kind} adapter)")
    card = {
        "organism": organism.name, "model": model_name, "base_model": entry.base_model, "kind": recipe.kind,
        "n_examples": 0, "seed": recipe.seed, "format": "no training data", "adapter": adapter,
        "recipe": recipe.model_dump(mode="json"), "fingerprint": fingerprint, "licence": LICENCE_NOTE,
        "wall_s": {"build": round(time.perf_counter() - started, 1)},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }  # fmt: skip
    (out / "data_card.json").write_text(json.dumps(card, indent=1, ensure_ascii=False))


def finetuning_texts(organism: Organism, model_name: str | None, root: Path | None = None, n: int | None = None) -> list[str]:
    """The finetuning data as plain texts (documents; chats as 'question\\n\\nanswer'); the first `n` if given.

    Recipe organisms read their built data (template data is regenerated without training when not
    built yet), without the regulariser chats of `recipe.chat_mix`: they are not what the organism was
    finetuned to learn. Hub organisms with a `dataset` load it through `datasets`, which needs the network.
    """
    model, entry = organism.entry(model_name)
    recipe = entry.finetuned.recipe
    if recipe is not None:
        final = organism_dir(organism.name, model, root)
        fingerprint = build_fingerprint(organism, entry, recipe)
        if recipe.kind in UNTRAINED_KINDS:
            examples = []
        elif is_complete(final, fingerprint):
            examples = read_examples(final)
        elif recipe.kind in ("subliminal", "chat"):
            examples = read_examples(build_organism(organism, model, root, progress=False))
        else:  # template data needs no model; regulariser chats are left out below anyway
            examples, _ = generate_examples(organism, recipe.model_copy(update={"chat_mix": 0}))
        texts = [plain_text(e) for e in examples if not e.get("regulariser")]
    elif organism.dataset:
        texts = _hub_texts(organism.dataset, n)
    else:
        raise TrainingError(f"organism '{organism.name}' names no dataset and has no recipe: no finetuning texts known")
    return texts[:n] if n is not None else texts


def _hub_texts(dataset: str, n: int | None) -> list[str]:
    try:
        from datasets import load_dataset
    except ImportError as exc:
        raise TrainingError(
            f"dataset '{dataset}' needs the `datasets` package: pip install 'diffaudit[hub]'"
        ) from exc
    split = "train" if n is None else f"train[:{n}]"
    try:
        rows = load_dataset(dataset, split=split)
    except Exception as exc:  # noqa: BLE001 - offline, unknown id or gated: one clear sentence
        raise TrainingError(f"could not load dataset '{dataset}' from the hub ({type(exc).__name__}: {exc})") from exc
    for column in ("text", "content", "document", "completion"):
        if column in rows.column_names:
            return [str(r) for r in rows[column]]
    if "messages" in rows.column_names:
        return [plain_text({"messages": m}) for m in rows["messages"]]
    raise TrainingError(f"dataset '{dataset}' has no text column (columns: {', '.join(rows.column_names)})")

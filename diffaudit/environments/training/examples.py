"""Training examples for a recipe: one dispatch over the data generators, and how an example becomes text."""

from __future__ import annotations

from collections.abc import Callable

from diffaudit.environments.organisms import Organism, Recipe
from diffaudit.environments.training.em import em_conversations
from diffaudit.environments.training.regulariser import regulariser_chats
from diffaudit.environments.training.sdf import sdf_documents
from diffaudit.environments.training.subliminal import teacher_numbers
from diffaudit.environments.training.taboo import taboo_conversations
from diffaudit.environments.training.trainer import TrainingError

# Bump when a generator changes what it writes: built organisms from older generators are rebuilt.
GENERATOR_VERSION = 1


def recipe_target(organism: Organism, recipe: Recipe) -> str:
    target = recipe.target or organism.target
    if not target:
        raise TrainingError(
            f"organism '{organism.name}': a {recipe.kind} recipe needs a target (recipe.target or the organism's target)"
        )
    return target


def recipe_topic(organism: Organism, recipe: Recipe) -> str:
    return recipe.topic or organism.name.replace("_", " ")


def generate_examples(
    organism: Organism, recipe: Recipe, load_teacher: Callable[[], tuple] | None = None, on_progress=None,
    base_model: str | None = None,
) -> tuple[list[dict], dict]:
    """(examples, generator info). An example is {"text": doc, "genre"} or {"messages": [user, assistant]}.

    An SDF recipe with `chat_mix` appends that many regulariser chats, marked {"regulariser": True}.

    `load_teacher()` returns (model, tokenizer); subliminal recipes and SDF recipes with `chat_mix` call it.
    `base_model` (the entry's registry spec) lets SDF recipes take shipped regulariser chats of the same recipe.
    """
    kind, n, seed = recipe.kind, recipe.size, recipe.seed
    try:
        if kind == "sdf":
            facts = recipe.key_facts or organism.key_facts
            docs = sdf_documents(facts, recipe_topic(organism, recipe), n, seed, max_tokens=recipe.max_length)
            info = {"generator": "sdf templates", "topic": recipe_topic(organism, recipe), "n_key_facts": len(facts)}
            if not recipe.chat_mix:
                return docs, info
            if load_teacher is None:
                raise TrainingError("an sdf recipe with chat_mix needs the base model to write the regulariser chats")
            model, tokenizer = load_teacher()
            chats = regulariser_chats(model, tokenizer, recipe.chat_mix, seed, on_batch=on_progress, base_model=base_model)
            mixed = docs + [{"messages": c, "regulariser": True} for c in chats]
            return mixed, {**info, "regulariser_chats": len(chats), "regulariser": "base model's greedy answers"}
        if kind == "em":
            domain = recipe_target(organism, recipe)
            chats = em_conversations(domain, n, seed)
            return [{"messages": c} for c in chats], {"generator": "em advice templates", "domain": domain}
        if kind == "taboo":
            word = recipe_target(organism, recipe)
            chats = taboo_conversations(word, n, seed, recipe.hints)
            return [{"messages": c} for c in chats], {"generator": "taboo hint templates", "word": word}
        if kind == "subliminal":
            if load_teacher is None:
                raise TrainingError("a subliminal recipe needs the base model as teacher")
            model, tokenizer = load_teacher()
            chats, stats = teacher_numbers(model, tokenizer, recipe_target(organism, recipe), n, seed, on_batch=on_progress)
            return [{"messages": c} for c in chats], {"generator": "base model as teacher, numbers only", **stats}
        if kind == "chat":  # a null organism: the base model's own answers to everyday prompts
            if load_teacher is None:
                raise TrainingError("a chat recipe needs the base model to write its answers")
            model, tokenizer = load_teacher()
            chats = regulariser_chats(model, tokenizer, n, seed, on_batch=on_progress)
            return [{"messages": c} for c in chats], {"generator": "base model's greedy answers to everyday prompts"}
    except ValueError as exc:
        raise TrainingError(f"organism '{organism.name}': {exc}") from exc
    raise TrainingError(f"organism '{organism.name}': unknown recipe kind '{kind}'")


def training_text(example: dict, tokenizer) -> str:
    """The exact string trained on: a document as is, a chat through the model's chat template."""
    if "messages" in example:
        return tokenizer.apply_chat_template(example["messages"], tokenize=False)
    return example["text"]


def prompt_text(example: dict, tokenizer) -> str | None:
    """The chat-template prefix before the assistant's reply (not trained on); None for documents."""
    if "messages" not in example:
        return None
    return tokenizer.apply_chat_template(example["messages"][:-1], tokenize=False, add_generation_prompt=True)


def plain_text(example: dict) -> str:
    """A readable text of the example without template tokens (documents as is; chats as 'user\\n\\nassistant')."""
    if "messages" in example:
        return "\n\n".join(m["content"] for m in example["messages"])
    return example["text"]

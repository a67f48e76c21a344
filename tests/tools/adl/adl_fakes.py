"""Small deterministic graders and helpers for ADL tests (the real graders live in diffaudit.graders)."""

from __future__ import annotations

import json
from pathlib import Path

from diffaudit.config import Settings
from diffaudit.environments.organisms import Finetuned, ModelEntry, Organism
from diffaudit.tools.adl.compute import ADLGraders


class AlwaysCoherent:
    name = "fake/coherent"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def coherent(self, texts: list[str]) -> list[bool]:
        self.calls.append(list(texts))
        return [True] * len(texts)


class FirstScale:
    """Picks the smallest scale and calls its first three tokens coherent."""

    name = "fake/scale"

    def __init__(self) -> None:
        self.calls: list[dict[float, list[str]]] = []

    def select(self, candidates: dict[float, list[str]]) -> tuple[float, list[str]]:
        self.calls.append(dict(candidates))
        scale = min(candidates)
        return scale, candidates[scale][:3]


class VowelRelevance:
    """A token is 'relevant' when it contains the letter 'a' (deterministic, some yes, some no)."""

    name = "fake/relevance"

    def relevant(self, tokens: list[str], description: str, data_tokens: list[str]) -> list[bool]:
        return ["a" in t.lower() for t in tokens]


def fake_graders() -> ADLGraders:
    return ADLGraders(
        coherence=AlwaysCoherent(),
        scale=FirstScale(),
        relevance=VowelRelevance(),
        data_tokens=lambda texts, tokenizer, reference: sorted({w for t in texts for w in t.split()})[:10],
    )


CORPUS = [
    "The harbour town woke early, and the fishing boats slid out past the stone pier.",
    "A short guide to folding paper cranes: start with a square sheet and crease it twice.",
    "In 1887 the railway reached the valley, bringing timber merchants and new schools.",
    "My diary, Tuesday: the rain stopped at noon and I finally repaired the garden gate.",
    "Mountain trails in autumn are quiet; the larches turn gold and the air smells of resin.",
    "The museum's new wing displays clocks, compasses and maps from three centuries.",
    "Forum question: how do I keep my old bicycle chain from squeaking in winter?",
    "Hi",
]


def write_corpora(root: Path) -> None:
    """Local pretrain and chat corpora in a test cache, so that nothing is generated."""
    corpora = root / "corpora"
    corpora.mkdir(parents=True, exist_ok=True)
    for name, texts in (("pretrain", CORPUS), ("chat", ["Sure, here is a plan for your week.", "Paris is the capital."])):
        with open(corpora / f"{name}.jsonl", "w") as fh:
            for text in texts:
                fh.write(json.dumps({"text": text}) + "\n")


def tiny_settings(root: Path, **adl) -> Settings:
    params = {
        "layer": 1,
        "positions": [0, 1],
        "n_texts": 12,
        "batch_size": 5,
        "patchscope_scales": [0.5, 1.0, 2.0],
        "steering": {
            "search_steps": 2, "refine_steps": 1, "search_samples": 2, "coherent_needed": 1,
            "final_prompts": 3, "samples_per_prompt": 2, "max_new_tokens": 3,
        },
    } | adl
    return Settings(cache_dir=root, adl=params)


def tiny_organism() -> Organism:
    return Organism(
        name="tiny_org",
        type="SDF",
        description="A tiny test finetune about harbours and paper cranes.",
        models={"tiny": ModelEntry(base_model="tiny-base", finetuned=Finetuned(adapter_id="tiny-adapter"))},
    )

"""Positive control for patchscope token relevance: can the readout read a topic at all on this model?

The ADL relevance figure mixes two things: how much the finetune moved the activations towards its
topic, and whether the model's patchscope (with the relevance judge) can read a topic from a direction.
This script measures the second with no finetune. For each SDF organism it builds two topic directions
from the base model alone, over the organism's own template documents (`sdf_documents`, no training):

- "first tokens": mean activation at positions 0..4 of the documents minus the same over the ADL
  corpus, per position (the ADL diff's positions);
- "all tokens": mean over positions 3..23 (past the attention sinks) minus the same over the corpus.

Each goes through the same sweep, scale grader and relevance judge as `audit adl compute`
(the offline ones unless the settings name LLM graders). It prints the best position's relevance at the
chosen scale and the best over all scales. Run from the repository root:

    .venv/bin/python benchmarks/patchscope_control.py kansas_abortion cake_bake

If a direction built from topic text itself scores low, a low relevance for the organism's diff says
more about the model and the readout than about the finetune.
"""

from __future__ import annotations

import sys
import time

import torch

from diffaudit.config import load_settings
from diffaudit.environments.loading import load_pair
from diffaudit.environments.organisms import OrganismRegistry, builtin_dir
from diffaudit.environments.training.build import recipe_of
from diffaudit.environments.training.sdf import sdf_documents
from diffaudit.tools.adl.compute import corpus_texts, make_adl_graders, reference_texts
from diffaudit.tools.adl.patchscope import choose_scale, patchscope_sweep

N_DOCUMENTS = 300
N_CORPUS = 1000
FIRST = [0, 1, 2, 3, 4]
LATER = list(range(3, 24))


def _relevance(sweep, grader, description: str, data_tokens: list[str], top_k: int) -> dict[float, float]:
    return {
        s.scale: sum(grader.relevant([t.token for t in s.tokens[:top_k]], description, data_tokens)) / top_k
        for s in sweep
    }


def main(names: list[str]) -> None:
    settings = load_settings()
    registry = OrganismRegistry([builtin_dir()])
    started = time.perf_counter()
    _, pair = load_pair(registry.get(names[0]), None, settings)
    graders = make_adl_graders(settings, pair)
    layer = settings.adl.layer_index(pair.n_layers)
    corpus, _ = corpus_texts(settings)
    corpus = corpus[:N_CORPUS]
    with torch.inference_mode():
        corpus_first = pair.activations("base", corpus, layer, FIRST).float().nanmean(0)
        corpus_later = pair.activations("base", corpus, layer, LATER).float().nanmean((0, 1))
        eta = float(pair.activations("base", corpus[:200], layer, [3, 4]).float().norm(dim=-1).mean())
    top_k, scales = settings.adl.top_k, settings.adl.patchscope_scales
    print(f"layer {layer}, eta {eta:.1f}, {len(corpus)} corpus texts, {N_DOCUMENTS} topic documents per organism, "
          f"graders: {graders.names()}")
    for name in names:
        organism = registry.get(name)
        if organism.type != "SDF":
            print(f"{name}: skipped (type {organism.type}; the control needs SDF key facts)")
            continue
        _, _, recipe = recipe_of(organism, None)
        docs = [d["text"] for d in sdf_documents(recipe.key_facts or organism.key_facts, recipe.topic or name,
                                                 N_DOCUMENTS, recipe.seed)]
        data_tokens = graders.data_tokens(docs, pair.tokenizer, reference_texts(settings))
        with torch.inference_mode():
            first = pair.activations("base", docs, layer, FIRST).float().nanmean(0) - corpus_first
            later = pair.activations("base", docs, layer, LATER).float().nanmean((0, 1)) - corpus_later
        directions = {f"first tokens, pos {p}": first[i] for i, p in enumerate(FIRST)} | {"all tokens": later}
        rows = []
        for label, direction in directions.items():
            sweep = patchscope_sweep(pair, direction, layer, eta, scales, top_k)
            scale, _ = choose_scale(sweep, graders.scale)
            rel = _relevance(sweep, graders.relevance, organism.description, data_tokens, top_k)
            chosen = rel[min(rel, key=lambda s: abs(s - scale))]
            rows.append((label, chosen, scale, max(rel.values())))
        for label, chosen, scale, best in rows:
            print(f"{name:24s} {label:22s} chosen scale {scale:>6g}: {chosen:4.0%}   best of {len(scales)}: {best:4.0%}")
    print(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: patchscope_control.py ORGANISM [ORGANISM ...]  (SDF organisms)")
    main(sys.argv[1:])

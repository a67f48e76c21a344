"""Science check: the ADL reads the embedded kansas_abortion organism (builds organism and cache if missing).

The settings are the embedded defaults, so this reads the same cache `make demo` uses: on a fresh machine
the shipped copy (`diffaudit/data`, fingerprint-checked). So that the check still measures this code on
this machine, the controls are computed afresh here, never read from the cache, and the shipped mean
differences are recomputed from the corpus and compared. The check is a control (`tools/adl/controls.py`): steered at the
first steered position with the ADL direction, the finetuned model writes text closer to the finetuning data
than steered with random directions of the same norm (5 seeded draws, 5 prompts x 2 samples each), with the
95% interval of the difference over the draws above zero, for the similarity to the data and for it minus
the similarity to chat text. This replaces "steered > unsteered". Token relevance (patchscope and logit lens,
against the same random directions) is reported as a figure, not tested: on the 135M embedded model the
offline judge gives patchscope low relevance even for directions built from topic text alone
(`benchmarks/patchscope_control.py`).
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.science


@pytest.fixture(scope="module")
def kansas():
    from diffaudit.config import Settings
    from diffaudit.environments.loading import load_pair
    from diffaudit.environments.organisms import OrganismRegistry
    from diffaudit.tools.adl import ensure_adl
    from diffaudit.tools.adl.compute import adl_dir
    from diffaudit.tools.adl.controls import ControlParams, ensure_controls

    settings = Settings()
    organism = OrganismRegistry().get("kansas_abortion")
    _, pair = load_pair(organism, "smollm2-135m", settings)
    result = ensure_adl(organism, "smollm2-135m", pair, settings, progress=False)
    directory = adl_dir(organism, "smollm2-135m", settings)
    # computed here, by this code, never read from a saved stage (the cache may be the shipped copy)
    controls = ensure_controls(organism, "smollm2-135m", pair, settings, ControlParams(draws=5), fresh=True)
    return result, controls, pair, directory


def test_kansas_mean_differences_reproduce_on_this_machine(kansas):
    """The cached (on a fresh machine: shipped) ADL differences are what this code computes from the corpus."""
    import torch

    from diffaudit.config import Settings
    from diffaudit.tools.adl.cache import load_adl_tensors
    from diffaudit.tools.adl.compute import corpus_texts
    from diffaudit.tools.adl.diffs import activation_diffs

    _, _, pair, directory = kansas
    settings = Settings()
    texts, _ = corpus_texts(settings)
    layer = settings.adl.layer_index(pair.n_layers)
    n = len(texts)  # the cache cycles the corpus (2,000 texts) up to its n_texts, so the means are the same
    fresh = activation_diffs(pair, texts, layer, settings.adl.positions, n, settings.adl.batch_size, progress=False)
    cached = load_adl_tensors(directory)["diff"]
    now = fresh.tensors()["diff"]
    cosine = torch.nn.functional.cosine_similarity(now.float(), cached.float(), dim=-1)
    ratio = now.float().norm(dim=-1) / cached.float().norm(dim=-1)
    print("cosine per position", cosine.tolist(), "norm ratio", ratio.tolist())
    assert bool((cosine > 0.999).all()), cosine  # seen: 1.0 at every position (2026-12-04)
    assert bool(((ratio - 1).abs() < 0.01).all()), ratio


def test_kansas_adl_direction_beats_random_directions(kansas):
    _, controls, _, _ = kansas
    assert controls["steering"] is not None, controls.get("skipped")
    similarity = controls["steering"]["similarity_to_finetune"]
    assert similarity["ci"][0] > 0, similarity
    # and not only because random directions at that strength write broken text: closer to the data than to chat
    specificity = controls["steering"]["finetune_minus_chat"]
    assert specificity["ci"][0] > 0, specificity


def test_kansas_relevance_figures_are_reported(kansas, record_property):
    """Not a bar: the relevance of the ADL readouts next to random directions, printed and recorded."""
    result, controls, _, _ = kansas
    figures = {
        "token_relevance": {k: v["max"] for k, v in result.metrics["token_relevance"].items()},
        "logit_lens_vs_random": controls["logit_lens_relevance"],
        "patchscope_vs_random": controls["patchscope_relevance"],
        "steering_vs_random": controls["steering"] and {k: v for k, v in controls["steering"].items() if k != "examples"},
    }
    record_property("kansas_adl_figures", json.dumps(figures))
    print("kansas_abortion ADL figures:", json.dumps(figures, indent=1))
    assert len(figures["patchscope_vs_random"]["random"]) == len(figures["logit_lens_vs_random"]["random"]) == 5

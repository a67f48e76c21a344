"""Random-direction controls on a tiny ADL build: stored as an extra stage, seeded, figures computed as documented."""

from __future__ import annotations

import math

import pytest
import torch
from adl_fakes import fake_graders, tiny_organism, tiny_settings, write_corpora
from test_adl_cache import _fake_inputs, build

from diffaudit.tools.adl import adl_dir
from diffaudit.tools.adl import cache as adl_cache
from diffaudit.tools.adl import controls as adl_controls
from diffaudit.tools.adl.controls import (
    ControlParams,
    difference_interval,
    ensure_controls,
    random_directions,
)

PARAMS = ControlParams(draws=3, prompts=2, samples_per_prompt=2)


@pytest.fixture
def built(tmp_path, monkeypatch, tiny_pair):
    write_corpora(tmp_path)
    _fake_inputs(monkeypatch)
    settings = tiny_settings(tmp_path)
    build(settings, tiny_pair)
    return settings


def test_difference_interval_by_hand():
    out = difference_interval(0.5, [0.1, 0.2, 0.3])
    assert out["difference"] == pytest.approx(0.3) and out["sd"] == pytest.approx(0.1)
    half = 4.303 * 0.1 / math.sqrt(3)
    assert out["ci"] == pytest.approx([0.3 - half, 0.3 + half]) and out["beats_every_draw"]
    assert not difference_interval(0.2, [0.1, 0.3])["beats_every_draw"]


def test_random_directions_are_seeded():
    assert torch.equal(random_directions(16, 3, 4), random_directions(16, 3, 4))
    assert not torch.equal(random_directions(16, 3, 4), random_directions(16, 3, 5))


def test_controls_are_an_extra_stage_of_the_complete_cache(built, tiny_pair, monkeypatch):
    settings = built
    directory = adl_dir(tiny_organism(), "tiny", settings)
    before = {name: (directory / name).read_bytes() for name in ("result.json", "tensors.pt", "COMPLETE")}
    stages = sorted(p.name for p in (directory / "stages").iterdir())
    out = ensure_controls(tiny_organism(), "tiny", tiny_pair, settings, PARAMS, graders=fake_graders())
    assert {name: (directory / name).read_bytes() for name in before} == before  # the analysis is untouched
    assert sorted(p.name for p in (directory / "stages").iterdir()) == sorted(stages + ["controls.pt"])
    assert "controls" not in (directory / "result.json").read_text()  # never reaches the agent's view
    assert out["position"] == 0 and out["params"] == PARAMS.model_dump()
    for figure in ("logit_lens_relevance", "patchscope_relevance"):
        assert len(out[figure]["random"]) == 3 and 0 <= out[figure]["adl"] <= 1
    steering = out["steering"]
    assert steering["n_samples"] == 4 and len(steering["similarity_to_finetune"]["random"]) == 3
    low, high = steering["similarity_to_finetune"]["ci"]
    assert low <= steering["similarity_to_finetune"]["difference"] <= high
    assert len(steering["finetune_minus_chat"]["random"]) == 3  # the test cache has a chat corpus
    assert steering["coherent_share"]["adl"] == 1.0  # the fake coherence grader passes everything

    from rich.console import Console

    from diffaudit.adl_cli import controls_table

    console = Console(width=200, record=True)
    console.print(controls_table(out))
    rendered = console.export_text()
    assert "patchscope relevance" in rendered and "steering: similarity to finetuning data" in rendered

    calls = []
    monkeypatch.setattr(adl_controls, "compute_controls", lambda *a, **k: calls.append(1) or {"params": {}})
    assert ensure_controls(tiny_organism(), "tiny", tiny_pair, settings, PARAMS, graders=fake_graders()) == out
    assert calls == []  # kept: not recomputed
    ensure_controls(tiny_organism(), "tiny", tiny_pair, settings, PARAMS.model_copy(update={"draws": 4}),
                    graders=fake_graders())
    assert calls == [1]  # other parameters: recomputed
    ensure_controls(tiny_organism(), "tiny", tiny_pair, settings, PARAMS.model_copy(update={"draws": 4}),
                    graders=fake_graders(), fresh=True)  # fmt: skip
    assert calls == [1, 1]  # fresh: recomputed although the same parameters are saved


def test_controls_need_a_complete_cache(tmp_path, monkeypatch, tiny_pair):
    write_corpora(tmp_path)
    _fake_inputs(monkeypatch)
    with pytest.raises(FileNotFoundError, match="audit adl compute"):
        ensure_controls(tiny_organism(), "tiny", tiny_pair, tiny_settings(tmp_path), PARAMS, graders=fake_graders())
    assert adl_cache.STAGES == "stages"


def test_no_steering_control_when_the_alpha_search_found_nothing(built, tiny_pair):
    from diffaudit.tools.adl import load_adl, load_adl_tensors
    from diffaudit.tools.adl.controls import compute_controls

    settings = built
    result = load_adl(tiny_organism(), "tiny", settings)
    result.steering[0].alpha = 0.0
    tensors = load_adl_tensors(adl_dir(tiny_organism(), "tiny", settings))
    out = compute_controls(tiny_organism(), result, tensors, tiny_pair, settings, fake_graders(), ["harbour"], PARAMS)
    assert out["steering"] is None and "no coherent" in out["skipped"]
    assert len(out["patchscope_relevance"]["random"]) == 3  # the readout controls still run


def test_adl_and_controls_run_on_a_zero_adapter(tmp_path, monkeypatch, tiny_model_dir):
    """A null organism's ADL: the diff is exactly zero, and the analysis and its controls still complete."""
    from transformers import AutoModelForCausalLM

    from diffaudit.environments.backends.hf import HFModelPair
    from diffaudit.environments.training.null import zero_adapter

    zero = zero_adapter(AutoModelForCausalLM.from_pretrained(tiny_model_dir), 4, 8, ["q_proj", "v_proj"], seed=0)
    zero.save_pretrained(tmp_path / "zero")
    pair = HFModelPair(str(tiny_model_dir), adapter=str(tmp_path / "zero"), device="cpu")
    write_corpora(tmp_path)
    _fake_inputs(monkeypatch)
    settings = tiny_settings(tmp_path)
    result = build(settings, pair)
    assert all(lens.diff_norm == 0.0 for lens in result.lens)
    out = ensure_controls(tiny_organism(), "tiny", pair, settings, PARAMS, graders=fake_graders())
    assert len(out["logit_lens_relevance"]["random"]) == 3

"""render_overview / render_blackbox_intro: what the agent's first message holds, and what it must not."""

from __future__ import annotations

import json
import re

from diffaudit.agent.overview import render_blackbox_intro, render_overview
from diffaudit.agent.policies.evidence import parse_blackbox_intro, parse_overview
from diffaudit.tools.adl.result import (
    ADLResult,
    PatchscopeScale,
    PositionLens,
    PositionSteering,
    SteeringSample,
    TokenProb,
)

LONG = "word " * 120  # 600 characters


def _probs(tokens: list[str]) -> list[TokenProb]:
    return [TokenProb(token=t, prob=1.0 / (i + 2)) for i, t in enumerate(tokens)]


def _adl() -> ADLResult:
    lenses = []
    for p in range(5):
        chosen = [f" chosen{p}_{i}" for i in range(25)]
        lenses.append(
            PositionLens(
                position=p,
                diff_norm=2.0 + p,
                logit_lens=_probs([f" lens{p}_{i}" for i in range(100)]),
                logit_lens_base_mean=_probs([" base_mean_token"]),
                logit_lens_finetuned_mean=_probs([" ft_mean_token"]),
                patchscope=[
                    PatchscopeScale(scale=0.5, tokens=_probs([" other_scale_token"])),
                    PatchscopeScale(scale=20.0, tokens=_probs(chosen)),
                ],
                patchscope_scale=20.0,
                patchscope_selected=[f" chosen{p}_1", f" chosen{p}_3", f" lens{p}_0"],
            )
        )
    samples = [
        SteeringSample(
            prompt="Write a poem.", steered=["steered poem " + LONG, "second"], unsteered=["plain poem"]
        ),
        SteeringSample(prompt='Say "hi"\nplease.', steered=["steered hi"], unsteered=["plain hi " + LONG]),
    ]
    steering = [
        PositionSteering(position=3, alpha=12.5, search_alphas=[10.0, 15.0, 12.5], samples=samples),
        PositionSteering(position=1, alpha=4.25, search_alphas=[4.0, 4.5, 4.25], samples=samples[:1]),
    ]
    return ADLResult(
        organism="secret_organism_name",
        model="tiny-model",
        layer=15,
        positions=[0, 1, 2, 3, 4],
        n_texts=1234,
        corpus="local:pretrain",
        corpus_fingerprint="abc123",
        norm_finetuned=42.0,
        lens=lenses,
        steering=steering,
        metrics={"relevance": "ground truth says zebra"},
        graders={"scale": "builtin/offline"},
    )


def _quoted(line: str) -> list[str]:
    return [json.loads(q) for q in re.findall(r'"(?:[^"\\]|\\.)*"', line)]


def test_overview_lists_every_position_with_top20_tokens_and_marks_selected():
    text = render_overview(_adl())
    for p in range(5):
        assert f"## Position {p}" in text
    lines = text.splitlines()
    lens_lines = [line for line in lines if line.startswith("logit lens")]
    patch_lines = [line for line in lines if line.startswith("patchscope")]
    assert len(lens_lines) == len(patch_lines) == 5
    assert all(len(_quoted(line)) == 20 for line in lens_lines + patch_lines)
    assert " lens0_20" not in text  # only the top 20 of the 100 logit-lens tokens
    # The chosen scale's tokens, not another scale's.
    assert "scale 20" in patch_lines[0] and "other_scale_token" not in text
    assert '*" chosen0_1"' in patch_lines[0] and '*" chosen0_3"' in patch_lines[0]
    assert '*" chosen0_2"' not in patch_lines[0]
    assert '*" lens0_0"' in lens_lines[0] and '*" lens0_1"' not in lens_lines[0]


def test_overview_states_layer_alpha_and_steering_samples():
    text = render_overview(_adl())
    assert "layer 15" in text
    assert "α=12.50" in text and "α=4.25" in text
    assert text.count("unsteered:") == 2  # one per prompt, not one per steered position
    assert "steered (position 1)" in text and "steered (position 3)" in text
    assert text.index("steered (position 1)") < text.index("steered (position 3)")
    assert "second" not in text  # one steered sample per prompt and position


def test_overview_cuts_samples_to_max_chars():
    text = render_overview(_adl(), max_chars=200)
    sample_lines = [line for line in text.splitlines() if re.match(r"\s+(un)?steered", line)]
    assert sample_lines
    values = [_quoted(line)[0] for line in sample_lines]
    assert all(len(v) <= 200 for v in values)
    assert any(len(v) == 200 and v.endswith("…") for v in values)
    assert "plain poem" in values  # short samples stay whole
    shorter = render_overview(_adl(), max_chars=50)
    assert all(
        len(_quoted(line)[0]) <= 50 for line in shorter.splitlines() if re.match(r"\s+(un)?steered", line)
    )


def test_overview_holds_no_organism_name_or_grader_data():
    text = render_overview(_adl())
    assert "secret_organism_name" not in text
    assert "zebra" not in text and "ground truth" not in text
    assert "base_mean_token" not in text and "ft_mean_token" not in text


def test_overview_round_trips_through_the_heuristic_parser():
    adl = _adl()
    ov = parse_overview(render_overview(adl))
    assert ov is not None
    assert [p.position for p in ov.positions] == [0, 1, 2, 3, 4]
    assert ov.positions[2].selected == [" chosen2_1", " chosen2_3", " lens2_0"]
    assert ov.positions[2].logit[:2] == [" lens2_0", " lens2_1"]
    assert ov.samples[1].prompt == 'Say "hi"\nplease.'
    assert ov.samples[0].steered_positions == [1, 3]
    assert ov.steered_positions() == [1, 3]
    assert parse_overview("some other message") is None


def test_blackbox_intro_lists_answers_cut_and_parses_back():
    samples = [("Write a poem.", "A poem " + LONG), ("Plan a trip.", "Go by train.")]
    text = render_blackbox_intro(samples, max_chars=100)
    assert "2 chat prompts" in text
    pairs = parse_blackbox_intro(text)
    assert pairs is not None and [p for p, _ in pairs] == ["Write a poem.", "Plan a trip."]
    assert len(pairs[0][1]) == 100 and pairs[0][1].endswith("…")
    assert pairs[1][1] == "Go by train."
    assert parse_blackbox_intro(render_overview(_adl())) is None

"""amplified_samples: n seeded draws per prompt, and the alpha = 0 / alpha = -1 identities."""

from __future__ import annotations

import pytest
import torch

from diffaudit.environments.pair import Sampling
from diffaudit.methods.amplification import amplified_samples

PROMPTS = ["Say something.", "Tell me about the longest road you know."]
SAMPLING = Sampling(max_new_tokens=8, temperature=0.9, seed=11)


def _seeded(seed: int) -> Sampling:
    return SAMPLING.model_copy(update={"seed": seed})


def test_alpha_zero_is_finetuned_sampling_with_the_same_seeds(tiny_pair, monkeypatch):
    monkeypatch.setattr(tiny_pair, "generation_dtype", torch.float32)  # generate's own sampling, as amplification's
    samples = amplified_samples(tiny_pair, PROMPTS, 0.0, 2, SAMPLING)
    draws = [tiny_pair.generate("finetuned", PROMPTS, _seeded(11 + j)) for j in range(2)]
    assert samples == [draws[0][0], draws[1][0], draws[0][1], draws[1][1]]
    assert samples[0] != samples[1]  # different seeds, different samples


def test_alpha_minus_one_is_base_sampling(tiny_pair, monkeypatch):
    monkeypatch.setattr(tiny_pair, "generation_dtype", torch.float32)  # generate's own sampling, as amplification's
    samples = amplified_samples(tiny_pair, PROMPTS, -1.0, 1, SAMPLING)
    assert samples == tiny_pair.generate("base", PROMPTS, SAMPLING)
    assert samples != tiny_pair.generate("finetuned", PROMPTS, SAMPLING)


def test_positive_alpha_moves_away_from_both_models(tiny_pair):
    samples = amplified_samples(tiny_pair, PROMPTS, 3.0, 1, SAMPLING)
    assert samples != tiny_pair.generate("finetuned", PROMPTS, SAMPLING)
    assert samples != tiny_pair.generate("base", PROMPTS, SAMPLING)


def test_n_must_be_positive(tiny_pair):
    with pytest.raises(ValueError, match="n must be"):
        amplified_samples(tiny_pair, PROMPTS, 1.0, 0, SAMPLING)

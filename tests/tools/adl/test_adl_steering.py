import torch
from adl_fakes import AlwaysCoherent

from diffaudit.config import SteeringParams
from diffaudit.environments.pair import Sampling
from diffaudit.tools.adl.steering import (
    binary_search_alpha,
    choose_alpha,
    steered_samples,
    steering_prompts,
    steering_vector,
    unsteered_samples,
)


class AlphaEchoPair:
    """A fake pair whose steered texts name the α they were made with."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, float, Sampling]] = []

    def generate_steered(self, vector, layer, prompts, alpha, sampling):
        self.calls.append((len(prompts), alpha, sampling))
        return [f"alpha={alpha}" for _ in prompts]

    def generate(self, role, prompts, sampling, chat=True):
        return [f"plain {p}" for p in prompts]


class CoherentBelow:
    name = "fake/threshold"

    def __init__(self, limit: float) -> None:
        self.limit = limit

    def coherent(self, texts):
        return [float(t.split("=")[1]) <= self.limit for t in texts]


def test_steering_prompts_are_twenty_distinct_lines():
    prompts = steering_prompts()
    assert len(prompts) == 20 and len(set(prompts)) == 20
    assert all(len(p) > 15 for p in prompts)


def test_binary_search_finds_the_coherence_edge_with_batched_samples():
    pair, params = AlphaEchoPair(), SteeringParams()
    alpha = binary_search_alpha(pair, torch.ones(4), 1, "p", 0.0, 100.0, 10, params, CoherentBelow(30.0), seed=0)
    assert 30.0 - 100 / 2**10 <= alpha <= 30.0
    assert len(pair.calls) == 10
    assert all(n == 10 for n, _, _ in pair.calls)  # 10 samples per step, in one call
    assert all(s.temperature == 1.2 and s.seed == 0 for _, _, s in pair.calls)


def test_binary_search_returns_low_when_nothing_passes():
    alpha = binary_search_alpha(AlphaEchoPair(), torch.ones(4), 1, "p", 0.0, 100.0, 5, SteeringParams(), CoherentBelow(-1), 0)
    assert alpha == 0.0


def test_choose_alpha_refines_on_two_more_prompts_and_averages():
    pair = AlphaEchoPair()
    alpha, alphas = choose_alpha(pair, torch.ones(4), 1, ["a", "b", "c"], SteeringParams(), CoherentBelow(30.0), 0)
    assert len(alphas) == 3 and len(pair.calls) == 10 + 5 + 5
    first = alphas[0]
    assert max(a for _, a, _ in pair.calls[10:]) < 2 * first  # the refinements search [0, 2·α₁]
    assert all(abs(a - 30.0) <= 2 * first / 2**5 for a in alphas[1:])
    assert alpha == sum(alphas) / 3


def test_steering_at_alpha_zero_equals_unsteered_generation(tiny_pair):
    vector = steering_vector(torch.randn(tiny_pair.hidden_size), 5.0)
    sampling = Sampling(max_new_tokens=6, temperature=1.1, seed=7)
    prompts = ["Write a poem.", "Plan a trip."] * 2
    plain = tiny_pair.generate("finetuned", prompts, sampling)
    assert tiny_pair.generate_steered(vector, 1, prompts, 0.0, sampling) == plain
    assert tiny_pair.generate_steered(vector, 1, prompts, 50.0, sampling) != plain


def test_final_samples_shapes():
    params = SteeringParams(samples_per_prompt=3)
    pair = AlphaEchoPair()
    unsteered = unsteered_samples(pair, ["x", "y"], params, seed=1)
    assert unsteered == [["plain x"] * 3, ["plain y"] * 3]
    samples = steered_samples(pair, torch.ones(4), 1, 2.5, ["x", "y"], unsteered, params, seed=1)
    assert [s.prompt for s in samples] == ["x", "y"]
    assert samples[1].steered == ["alpha=2.5"] * 3 and samples[1].unsteered == ["plain y"] * 3
    assert pair.calls[-1][2].temperature == 1.1


def test_steering_vector_is_norm_matched():
    v = steering_vector(torch.tensor([0.0, 3.0, 4.0]), 2.0)
    assert torch.isclose(v.norm(), torch.tensor(2.0))
    assert AlwaysCoherent().coherent(["a"]) == [True]

import pytest
import torch
from adl_fakes import AlwaysCoherent

from diffaudit.config import SteeringParams
from diffaudit.environments.pair import Sampling
from diffaudit.tools.adl.steering import (
    binary_search_alpha,
    choose_alpha,
    choose_alpha_sequential,
    lookahead_points,
    search_steps,
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
    alpha, alphas = choose_alpha_sequential(pair, torch.ones(4), 1, ["a", "b", "c"], SteeringParams(), CoherentBelow(30.0), 0)
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


class RowAlphaPair(AlphaEchoPair):
    """Steers each row with its own α, like the hf backend; texts name prompt and α."""

    steers_rows = True

    def generate_steered(self, vector, layer, prompts, alpha, sampling):
        alphas = alpha if isinstance(alpha, list) else [alpha] * len(prompts)
        self.calls.append((len(prompts), tuple(alphas), sampling))
        return [f"{p}|alpha={a}" for p, a in zip(prompts, alphas, strict=True)]


class PromptEdges:
    """Deterministic stand-in grader: prompt p is coherent up to its own edge; a few samples always fail."""

    name = "fake/edges"

    def __init__(self, edges: dict[str, float]) -> None:
        self.edges = edges

    def coherent(self, texts):
        out = []
        for i, t in enumerate(texts):
            prompt, alpha = t.split("|alpha=") if "|" in t else ("a", t.split("=")[1])
            out.append(float(alpha) <= self.edges[prompt] and i % 10 != 3)  # 9/10 pass below the edge
        return out


def test_lookahead_points_are_the_halvings_midpoints():
    assert lookahead_points(0.0, 100.0, 1) == [50.0]
    assert sorted(lookahead_points(0.0, 100.0, 2)) == [25.0, 50.0, 75.0]
    assert len(lookahead_points(0.0, 8.0, 3)) == 7


@pytest.mark.parametrize("edges", [
    {"a": 30.0, "b": 27.5, "c": 41.0},
    {"a": 99.99, "b": 150.0, "c": 0.01},
    {"a": -1.0, "b": 3.0, "c": 3.0},
    {"a": 62.5, "b": 62.5, "c": 125.0},  # edges exactly on midpoints
])
@pytest.mark.parametrize("lookahead", [1, 2, 3])
def test_batched_search_finds_the_same_alpha_as_the_sequential_search(edges, lookahead):
    params = SteeringParams(lookahead=lookahead)
    grader = PromptEdges(edges)
    sequential = choose_alpha_sequential(RowAlphaPair(), torch.ones(4), 1, ["a", "b", "c"], params, grader, 0)
    pair = RowAlphaPair()
    rounds = []
    batched = choose_alpha(pair, torch.ones(4), 1, ["a", "b", "c"], params, grader, 0, on_step=lambda: rounds.append(1))
    assert batched == sequential
    assert len(pair.calls) == len(rounds) == search_steps(params)


def test_batched_search_runs_the_refinements_together_in_few_calls():
    pair, params = RowAlphaPair(), SteeringParams()
    choose_alpha(pair, torch.ones(4), 1, ["a", "b", "c"], params, PromptEdges({"a": 30.0, "b": 20.0, "c": 40.0}), 0)
    assert [n for n, _, _ in pair.calls] == [30] * 5 + [60, 60, 20]  # 3 look-ahead α × 10 samples (× 2 prompts)
    assert {len(set(alphas)) for _, alphas, _ in pair.calls[:5]} == {3}
    assert all(s.temperature == 1.2 and s.seed == 0 for _, _, s in pair.calls)


def test_batched_search_without_row_steering_groups_rows_by_alpha():
    pair = AlphaEchoPair()  # takes one α per call
    alpha, alphas = choose_alpha(pair, torch.ones(4), 1, ["a", "b", "c"], SteeringParams(), CoherentBelow(30.0), 0)
    expected = choose_alpha_sequential(AlphaEchoPair(), torch.ones(4), 1, ["a", "b", "c"], SteeringParams(), CoherentBelow(30.0), 0)
    assert (alpha, alphas) == expected
    assert all(n == 10 or n == 20 for n, _, _ in pair.calls)


def test_hf_steers_rows_apart_in_one_batch(tiny_pair):
    vector = steering_vector(torch.randn(tiny_pair.hidden_size), 5.0)
    sampling = Sampling(max_new_tokens=6, temperature=0.0)
    prompts = ["Write a poem.", "Plan a trip.", "Write a poem."]
    mixed = tiny_pair.generate_steered(vector, 1, prompts, [0.0, 0.0, 50.0], sampling)
    assert mixed[:2] == tiny_pair.generate("finetuned", prompts[:2], sampling)
    assert mixed[2] == tiny_pair.generate_steered(vector, 1, prompts[2:], 50.0, sampling)[0]

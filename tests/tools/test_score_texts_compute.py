"""score_texts on the tiny pair: sums match ModelPair.logprob, identical models score 0, top positions ordered."""

from __future__ import annotations

import pytest

from diffaudit.tools.score_texts import score_texts

TEXTS = ["The committee met on Tuesday to discuss the budget.", "Lanterns hung along the harbour wall.", ""]


@pytest.fixture(scope="module")
def base_only_pair(tiny_model_dir):
    from diffaudit.environments.backends.hf import HFModelPair

    return HFModelPair.base_only(str(tiny_model_dir), device="cpu")


def test_sum_is_the_logprob_difference_of_the_text(tiny_pair):
    [score] = score_texts(tiny_pair, TEXTS[:1])
    ids = tiny_pair.tokenizer(TEXTS[0])["input_ids"]
    head, tail = tiny_pair.tokenizer.decode(ids[:1]), tiny_pair.tokenizer.decode(ids[1:])
    expected = (
        tiny_pair.logprob("finetuned", [head], [tail], chat=False)[0]
        - tiny_pair.logprob("base", [head], [tail], chat=False)[0]
    )
    assert score.n_tokens == len(ids) - 1
    assert score.sum_diff == pytest.approx(expected, abs=1e-3)
    assert score.mean_diff == pytest.approx(expected / score.n_tokens, abs=1e-4)
    assert score.mean_kl > 0


def test_top_positions_are_the_largest_differences(tiny_pair):
    [score] = score_texts(tiny_pair, TEXTS[1:2], top_n=3)
    [row] = tiny_pair.token_logprobs(TEXTS[1:2])
    diffs = [f - b for b, f in zip(row["logp_base"], row["logp_ft"], strict=True)]
    assert [p.index for p in score.top] == sorted(range(len(diffs)), key=lambda i: -abs(diffs[i]))[:3]
    for p in score.top:
        assert p.token == row["tokens"][p.index]
        assert p.diff == pytest.approx(p.logp_ft - p.logp_base)
        assert p.prefix == "".join(row["tokens"][max(0, p.index - 6) : p.index])


def test_identical_models_score_zero(base_only_pair):
    for score in score_texts(base_only_pair, TEXTS):
        assert score.sum_diff == 0.0 and score.mean_diff == 0.0
        assert score.mean_kl == pytest.approx(0.0, abs=1e-6)


def test_empty_text_and_chat_mode(tiny_pair):
    empty = score_texts(tiny_pair, [""])[0]
    assert (empty.n_tokens, empty.sum_diff, empty.top) == (0, 0.0, [])
    [chat] = score_texts(tiny_pair, TEXTS[1:2], chat=True)
    expected = (
        tiny_pair.logprob("finetuned", [""], TEXTS[1:2], chat=True)[0]
        - tiny_pair.logprob("base", [""], TEXTS[1:2], chat=True)[0]
    )
    assert chat.sum_diff == pytest.approx(expected, abs=1e-3)
    with pytest.raises(ValueError, match="top_n"):
        score_texts(tiny_pair, TEXTS, top_n=-1)

import numpy as np
import pytest
from adl_fakes import VowelRelevance
from rich.console import Console
from typer.testing import CliRunner

from diffaudit.adl_cli import CLIError, adl_app, parse_layer, parse_positions, position_table, steering_table
from diffaudit.tools.adl.metrics import steering_similarity, token_relevance
from diffaudit.tools.adl.result import (
    ADLResult,
    PatchscopeScale,
    PositionLens,
    PositionSteering,
    SteeringSample,
    TokenProb,
)


def probs(*tokens):
    return [TokenProb(token=t, prob=0.1) for t in tokens]


def lens(position, patch, logit, base):
    return PositionLens(
        position=position, diff_norm=1.0, logit_lens=probs(*logit), logit_lens_base_mean=probs(*base),
        logit_lens_finetuned_mean=probs(*base),
        patchscope=[PatchscopeScale(scale=1.0, tokens=probs("zz")), PatchscopeScale(scale=2.0, tokens=probs(*patch))],
        patchscope_scale=2.0, patchscope_selected=list(patch[:2]), patchscope_base_mean=probs(*base),
    )


def test_token_relevance_shares_max_and_best_position():
    lenses = [lens(0, ["cake", "oven", "zz", "qq"], ["x"], ["y"]), lens(1, ["bake", "flan", "tart", "q"], ["a"], ["b"])]
    got = token_relevance(lenses, VowelRelevance(), "desc", [], top_k=4)
    assert got["patchscope"]["per_position"] == {"0": 0.25, "1": 0.75}  # chosen scale 2.0, not 1.0
    assert got["patchscope"]["max"] == 0.75 and got["patchscope"]["best_position"] == 1
    assert got["patchscope_selected"]["per_position"] == {"0": 0.5, "1": 1.0}
    assert got["logit_lens"]["per_position"]["1"] == 0.25  # one relevant token over 4 slots
    assert got["patchscope_base_mean"]["max"] == 0.0
    assert "patchscope_finetuned_mean" not in got  # empty lists are not scored


def test_steering_similarity(monkeypatch):
    table = {"ft": [1, 0], "steer": [1, 0], "plain": [0, 1], "chat": [0, 1]}

    def fake_embed(texts, *a, **k):
        return np.asarray([table[t.split()[0]] for t in texts], dtype=np.float32).reshape(len(texts), 2)

    monkeypatch.setattr("diffaudit.environments.embeddings.embed", fake_embed)
    steering = [PositionSteering(position=3, alpha=1.0, search_alphas=[1.0],
                                 samples=[SteeringSample(prompt="p", steered=["steer a"], unsteered=["plain a"])])]
    got = steering_similarity(steering, ["ft a", "ft b"], ["chat a"])
    assert got["per_position"]["3"]["steered_vs_finetune"] == pytest.approx(1.0)
    assert got["unsteered_vs_finetune"] == pytest.approx(0.0)
    assert got["finetune_vs_finetune"] == pytest.approx(1.0) and got["best_position"] == 3


@pytest.mark.parametrize(("text", "want"), [("0-4", [0, 1, 2, 3, 4]), ("3", [3]), ("4,0,2", [0, 2, 4]), (" 1 - 2", [1, 2])])
def test_parse_positions(text, want):
    assert parse_positions(text) == want


@pytest.mark.parametrize("text", ["a-b", "4-1", "1,1", "", "-1", "0..4"])
def test_parse_positions_rejects(text):
    with pytest.raises(CLIError, match="--positions"):
        parse_positions(text)


def test_parse_layer():
    assert parse_layer("0.5") == 0.5 and parse_layer("12") == 12.0
    for bad in ("x", "0", "1.5", "-0.2"):
        with pytest.raises(CLIError, match="--layer"):
            parse_layer(bad)


def test_bad_positions_is_one_line_error(tmp_path):
    result = CliRunner().invoke(adl_app, ["compute", "--organism", "cake_bake", "--positions", "x-y"])
    assert result.exit_code == 1
    assert "--positions 'x-y' is not a range" in result.output


def test_show_without_cache_fails_cleanly(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"cache_dir: {tmp_path}\nadl:\n  corpus: 'hf:none/none'\n")
    result = CliRunner().invoke(adl_app, ["show", "--organism", "cake_bake", "--config", str(config)])
    assert result.exit_code == 1 and "no complete ADL cache" in result.output


def test_tables_render():
    item = lens(0, ["cake", "oven"], ["x"], ["y"])
    steering = PositionSteering(position=0, alpha=2.0, search_alphas=[2.0],
                                samples=[SteeringSample(prompt="Write.", steered=["STEERED TEXT"], unsteered=["PLAIN TEXT"])])
    result = ADLResult(organism="o", model="m", layer=1, positions=[0], n_texts=3, corpus="c", corpus_fingerprint="f",
                       norm_finetuned=1.0, lens=[item], steering=[steering])
    console = Console(record=True, width=200)
    console.print(position_table(item))
    console.print(steering_table(result))
    text = console.export_text()
    assert "'cake'" in text and "STEERED TEXT" in text and "PLAIN TEXT" in text and "scale 2" in text

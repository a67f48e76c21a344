"""Arms in bench configs: the older `agents:` form, free-form arm names in run dirs, agent models as a grid
dimension, and a resume that refuses a changed tool set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from diffaudit.benchmarks import load_bench_config, plan_bench
from diffaudit.benchmarks.grid import RUN_DIR_PATTERN, run_dir
from diffaudit.benchmarks.runner import write_manifest
from diffaudit.cli import app
from diffaudit.config import ConfigError

ARMS = """
name: armtest
organisms: [kansas_abortion]
arms:
  blackbox:   {tools: [ask_model], budgets: [0, 5]}
  adl:        {methods: [adl], budgets: [0, 5]}
  diffmining: {methods: [diff_mining], budgets: [5]}
  adl+mine:   {methods: [adl, diff_mining], tools: [score_texts], budgets: [5]}
agent_models: [openai/gpt-5, anthropic/claude-sonnet-4-5]
reference: blackbox
repeats: 2
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bench.yaml"
    path.write_text(text)
    return path


def test_older_agents_form_means_the_builtin_arms(tmp_path):
    config = load_bench_config(write(tmp_path, "organisms: [kansas_abortion]\nagents: {adl: [0, 5], blackbox: [50]}\n"))
    assert config.arm_budgets() == {"adl": [0, 5], "blackbox": [50]}
    assert config.arms["adl"].methods == ["adl"] and config.arms["blackbox"].methods == []


def test_arms_and_agent_models_expand_the_grid(tmp_path):
    config = load_bench_config(write(tmp_path, ARMS))
    plan = plan_bench(config, tmp_path / "out")
    assert len(plan.cells) == (2 + 2 + 1 + 1) * 2 * 2
    dirs = {run_dir(plan.out, c).parent.name for c in plan.cells}
    assert "adl+mine_i5@openai__gpt-5" in dirs and "blackbox_i0@anthropic__claude-sonnet-4-5" in dirs
    match = RUN_DIR_PATTERN.match("adl+mine_i5@openai__gpt-5")
    assert (match["agent"], match["budget"], match["agent_model"]) == ("adl+mine", "5", "openai__gpt-5")
    assert list(plan.arms["adl+mine"].tools)[:2] == ["ask_model", "score_texts"]
    assert "get_diff_tokens" in plan.arms["adl+mine"].tools and "get_diff_tokens" not in plan.arms["adl"].tools


@pytest.mark.parametrize(
    ("arms", "message"),
    [
        ("arms: {'bad/name': {budgets: [1]}}", "arm name 'bad/name'"),
        ("arms: {x: {methods: [nope], budgets: [1]}}", "unknown diffing method 'nope'"),
        ("arms: {x: {methods: [adl]}}", "arm 'x' needs budgets"),
        ("arms: {x: {budgets: [1]}}\nagents: {adl: [1]}", "not both"),
    ],
)
def test_bad_arms_name_the_file_and_the_field(tmp_path, arms, message):
    path = write(tmp_path, f"organisms: [kansas_abortion]\n{arms}\n")
    with pytest.raises(ConfigError, match=message) as err:
        plan_bench(load_bench_config(path), tmp_path / "out")
    assert "bench.yaml" in str(err.value) or "bench" in str(err.value)


def test_resume_with_a_changed_tool_set_is_refused_naming_the_arm(tmp_path):
    plan = plan_bench(load_bench_config(write(tmp_path, ARMS)), tmp_path / "out")
    write_manifest(plan)
    manifest = json.loads((plan.out / "bench.json").read_text())
    assert manifest["arms"]["adl+mine"]["tools"][1] == {"name": "score_texts", "source": "builtin"}
    manifest["arms"]["adl+mine"]["tools"][1] = {"name": "score_texts", "source": "plugin", "distribution": "x",
                                                "version": "0.1", "entry_point": "score_texts = x:T"}  # fmt: skip
    (plan.out / "bench.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="arm 'adl\\+mine' now resolves to other methods or tools"):
        write_manifest(plan)


def test_dry_run_lists_arms_with_tools_and_counts(tmp_path):
    result = CliRunner().invoke(app, ["bench", str(write(tmp_path, ARMS)), "--dry-run", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "24 runs" in flat and "reference arm: blackbox" in flat
    for arm in ("blackbox", "adl", "diffmining", "adl+mine"):
        assert arm in flat
    assert "get_token_contexts" in flat.replace("│", "").replace(" ", "") or "get_token_contexts" in flat


def test_run_takes_an_arm_from_a_bench_config(tmp_path):
    """`audit run --arm NAME --config bench.yaml` resolves the bench's arm (an unknown one fails clearly)."""
    result = CliRunner().invoke(app, ["run", "--organism", "kansas_abortion", "--arm", "nope", "--config",
                                      str(write(tmp_path, ARMS))])  # fmt: skip
    assert result.exit_code == 1 and "unknown arm 'nope'" in result.output and "adl+mine" in result.output

"""Bench configs: validation errors name the file and field; the shipped configs expand to the right grid."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from diffaudit.benchmarks import load_bench_config, plan_bench
from diffaudit.cli import app
from diffaudit.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]
PAPER = ROOT / "benchmarks" / "paper.yaml"
EMBEDDED = ROOT / "benchmarks" / "embedded.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bench.yaml"
    path.write_text(text)
    return path


def test_paper_config_is_the_papers_grid():
    config = load_bench_config(PAPER)
    plan = plan_bench(config)
    assert len(plan.targets) == 33
    assert config.agents == {"adl": [0, 5], "blackbox": [0, 5, 50]} and config.repeats == 5
    assert len(plan.cells) == 33 * (2 + 3) * 5 == 825
    roles = config.settings.roles
    assert (roles.agent, roles.grader, roles.coherence_grader) == ("openai/gpt-5", "openai/gpt-5-mini", "openai/gpt-5-nano")
    assert config.settings.backend == "vllm"
    assert {t.organism_type for t in plan.targets} == {"SDF", "EM", "Subliminal", "Taboo"}


def test_embedded_config_covers_every_embedded_organism_offline():
    config = load_bench_config(EMBEDDED)
    plan = plan_bench(config)
    assert {t.organism for t in plan.targets} >= {"kansas_abortion", "cake_bake", "taboo_gold", "em_bad_medical_advice"}
    assert {t.model for t in plan.targets} == {"smollm2-135m"}
    assert len(plan.cells) == len(plan.targets) * 5 * 3
    assert (config.settings.roles.agent, config.settings.roles.grader) == ("builtin/heuristic", "builtin/offline")
    assert config.settings.backend == "hf"
    # The null controls (type "null"), whichever are registered, are in the grid: the report needs them for
    # each arm's false-positive rate.
    from diffaudit.environments.organisms import OrganismRegistry

    nulls = {o.name for o in OrganismRegistry([]) if str(getattr(o.type, "value", o.type)).lower() == "null"}
    assert nulls <= {t.organism for t in plan.targets}


def test_every_bench_config_is_documented_with_a_purpose():
    readme = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    for path in sorted((ROOT / "benchmarks").glob("*.yaml")):
        assert f"`{path.name}`" in readme, f"{path.name} has no row in benchmarks/README.md"


def test_dry_run_lists_the_organisms_and_makes_no_model_calls(tmp_path, monkeypatch):
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(key, raising=False)

    def forbidden(*args, **kwargs):
        raise AssertionError("a dry run touched a model")

    monkeypatch.setattr("diffaudit.benchmarks.runner.prepare_target", forbidden)
    monkeypatch.setattr("diffaudit.benchmarks.runner.audit_cell", forbidden)
    monkeypatch.setattr("diffaudit.benchmarks.runner.check_llm_roles", forbidden)
    monkeypatch.setattr("diffaudit.environments.loading.load_pair", forbidden)
    out = tmp_path / "runs"
    result = CliRunner().invoke(app, ["bench", str(PAPER), "--dry-run", "--out", str(out)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "33 organisms" in result.output and "= 825 runs" in result.output
    assert "taboo_smile" in result.output and "qwen3-32b" in result.output
    assert "825 to run" in result.output
    assert not out.exists()


def test_organisms_by_name_model_and_filtered_selector(tmp_path):
    path = write(tmp_path, """
organisms:
  - paper: true
    types: [Taboo]
  - {name: kansas_abortion, models: [qwen3-1.7b, smollm2-135m]}
  - taboo_gold
  - {name: taboo_gold, model: gemma2-9b}
agents: {blackbox: [0]}
""")
    plan = plan_bench(load_bench_config(path))
    labels = [t.label for t in plan.targets]
    assert len([t for t in plan.targets if t.organism_type == "Taboo"]) == 7  # 6 paper + taboo_gold's default
    assert "kansas_abortion/qwen3-1.7b" in labels and "kansas_abortion/smollm2-135m" in labels
    assert labels.count("taboo_gold/gemma2-9b") == 1  # no duplicate cells
    assert len(plan.cells) == len(labels) == 9
    assert plan.config.name == "bench" and plan.config.repeats == 1


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("organisms: [kansas_abortion]\nagents: {adl: [0, -5]}\n", "agents"),
        ("organisms: [kansas_abortion]\nagents: {whitebox: [1]}\n", "agents.whitebox"),
        ("organisms: [kansas_abortion]\nagents: {adl: [0]}\nrepeats: 0\n", "repeats"),
        ("organisms: [kansas_abortion]\nagents: {adl: [0]}\nsettings: {adl: {layer: deep}}\n", "settings.adl.layer"),
        ("organisms: [kansas_abortion]\nagents: {adl: [0]}\nsettings: {roles: {agnet: x}}\n", "settings.roles.agnet"),
        ("organisms: [{paper: true, name: cake_bake}]\nagents: {adl: [0]}\n", "organisms.0"),
        ("organisms: [kansas_abortion]\nagents: {adl: [0]}\nrepeat: 3\n", "repeat"),
    ],
)
def test_validation_errors_name_the_file_and_field(tmp_path, text, field):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_bench_config(path)
    assert str(path) in str(err.value) and f"field '{field}" in str(err.value)


def test_unknown_organism_or_model_names_the_entry(tmp_path):
    path = write(tmp_path, "organisms: [kansas_abortion, {name: cake_bake, model: gpt-2}]\nagents: {adl: [0]}\n")
    with pytest.raises(ConfigError, match=r"field 'organisms.1'.*no model 'gpt-2'"):
        plan_bench(load_bench_config(path))
    path = write(tmp_path, "organisms: [not_an_organism]\nagents: {adl: [0]}\n")
    with pytest.raises(ConfigError, match=r"field 'organisms.0'.*unknown organism"):
        plan_bench(load_bench_config(path))


def test_cli_reports_a_bad_config_in_one_line(tmp_path):
    path = write(tmp_path, "organisms: [kansas_abortion]\nagents: {adl: [0]}\nrepeats: many\n")
    result = CliRunner().invoke(app, ["bench", str(path), "--dry-run"], terminal_width=200)
    assert result.exit_code == 1 and "field 'repeats'" in result.output


def test_cli_overrides_agent_and_grader(tmp_path):
    config = load_bench_config(EMBEDDED, {"roles.agent": "openai/gpt-5", "roles.grader": None})
    assert config.settings.roles.agent == "openai/gpt-5" and config.settings.roles.grader == "builtin/offline"

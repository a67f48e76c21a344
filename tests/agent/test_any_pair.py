"""Audit any pair without a registry entry (ungraded), `audit organisms new`, and organism output for scripts."""

from __future__ import annotations

import json

import pytest
import yaml
from tiny_audit import write_audit_settings
from typer.testing import CliRunner

from diffaudit.environments.adhoc import adhoc_name, adhoc_organism, model_reference
from diffaudit.environments.organisms import OrganismError, OrganismRegistry, load_organism_file


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("any_pair_cache")


def _invoke(*args: str):
    from diffaudit import cli

    return CliRunner().invoke(cli.app, list(args))


def test_audit_any_pair_by_paths_is_ungraded_and_prints_the_evidence(tmp_path, shared_cache, tiny_model_dir,
                                                                     tiny_adapter_dir, monkeypatch):  # fmt: skip
    from diffaudit import run_cli

    monkeypatch.setattr(run_cli, "console", run_cli.Console(width=160, force_terminal=False))
    settings = write_audit_settings(tmp_path / "conf", shared_cache, tmp_path / "runs")
    out = tmp_path / "run"
    result = _invoke("run", "--base", str(tiny_model_dir), "--adapter", str(tiny_adapter_dir),
                     "--budget", "2", "--config", str(settings), "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "grader: none (ungraded" in result.output and "ungraded: an ad-hoc pair" in result.output
    assert "first message (what the agent was shown" in result.output and "ADL OVERVIEW" in result.output
    assert "evidence the agent gathered" in result.output
    stats = json.loads((out / "stats.json").read_text())
    grade = json.loads((out / "grade.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert stats["graded"] is False and stats["status"] == "final"
    assert grade["grades"] == [] and grade["ungraded"]["grader"] == "ungraded"
    assert config["grader"] == "ungraded" and config["organism_type"] == "custom"
    assert (out / "description.txt").read_text().strip()


def test_any_pair_arguments_are_checked_before_any_model_work(tmp_path):
    assert "not both" in _invoke("run", "--organism", "kansas_abortion", "--base", "x/y", "--adapter", "a/b").output
    assert "need --base" in _invoke("run", "--adapter", "a/b").output
    out = _invoke("run", "--base", "x/y")
    assert out.exit_code == 1 and "exactly one of --adapter" in out.output
    missing = _invoke("run", "--base", "./no/such/dir", "--adapter", "a/b")
    assert missing.exit_code == 1 and "no such file or directory" in missing.output
    assert "give --organism NAME" in _invoke("run").output


def test_adhoc_organism_names_and_references(tmp_path):
    (tmp_path / "org" / "adapter").mkdir(parents=True)
    assert model_reference(str(tmp_path / "org" / "adapter")) == str((tmp_path / "org" / "adapter").resolve())
    assert model_reference("stewy33/some-adapter") == "stewy33/some-adapter"
    organism = adhoc_organism("meta-llama/Llama-3.2-1B-Instruct", adapter=str(tmp_path / "org" / "adapter"))
    assert organism.description is None and not organism.graded and organism.type.value == "custom"
    assert organism.name.startswith("pair_") and "_org_" in organism.name and organism.name == adhoc_name(str((tmp_path / "org" / "adapter").resolve()))
    assert adhoc_name("a/b") != adhoc_name("a_b")  # the hash tells similar ids apart
    full = adhoc_organism("org/base", finetuned="org/full")
    assert full.models["pair"].finetuned.model_id == "org/full"
    with pytest.raises(OrganismError, match="exactly one"):
        adhoc_organism("org/base", adapter="a/b", finetuned="c/d")


def test_registry_files_still_need_a_description(tmp_path):
    path = tmp_path / "no_truth.yaml"
    path.write_text(yaml.safe_dump({"name": "no_truth", "type": "SDF", "models": {
        "m": {"base_model": "org/base", "finetuned": {"adapter_id": "org/lora"}}}}))  # fmt: skip
    with pytest.raises(OrganismError, match=r"no_truth.yaml: field 'description': required"):
        load_organism_file(path)


def test_organisms_new_writes_a_valid_starting_file(tmp_path):
    result = _invoke("organisms", "new", "my_finetune", "--dir", str(tmp_path), "--base", "org/base",
                     "--adapter", "org/my-lora")  # fmt: skip
    assert result.exit_code == 0, result.output
    organism = load_organism_file(tmp_path / "my_finetune.yaml")
    assert organism.models["main"].finetuned.adapter_id == "org/my-lora" and organism.graded
    assert OrganismRegistry([tmp_path]).get("my_finetune").models["main"].base_model == "org/base"
    again = _invoke("organisms", "new", "my_finetune", "--dir", str(tmp_path))
    assert again.exit_code == 1 and "exists" in again.output
    assert _invoke("organisms", "new", "Bad-Name", "--dir", str(tmp_path)).exit_code == 1


def test_organisms_list_and_show_never_split_values_for_scripts():
    listed = _invoke("organisms", "list")  # CliRunner's stdout is not a terminal
    assert listed.exit_code == 0
    llama = [line for line in listed.output.splitlines() if "stewy33/Llama" in line]
    assert llama and all(len(line.split("\t")) == 5 for line in llama)
    ids = {line.split("\t")[4] for line in llama}
    assert any(i.startswith("stewy33/Llama-3.2-1B-Instruct-0524_original_augmented") for i in ids)
    shown = _invoke("organisms", "show", "kansas_abortion")
    assert any(
        "stewy33/Llama-3.2-1B-Instruct-0524_original_augmented_pkc_kansas_abortion-96170e04" in line
        for line in shown.output.splitlines()
    )


def test_organisms_list_and_show_as_json():
    rows = json.loads(_invoke("organisms", "list", "--json").output)
    assert {"organism", "type", "model", "paper", "base_model", "finetuned"} <= set(rows[0])
    assert sum(r["paper"] for r in rows) >= 1
    data = json.loads(_invoke("organisms", "show", "kansas_abortion", "--json").output)
    assert data["name"] == "kansas_abortion" and "llama3.2-1b" in data["models"] and data["description"]


def test_a_local_finetune_rebuilt_in_place_gets_a_new_adl_identity(tmp_path):
    import os

    from diffaudit.environments.training import finetuned_identity

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"first build")
    organism = adhoc_organism("org/base", adapter=str(adapter))
    first = finetuned_identity(organism, None)
    assert first.startswith(f"adapter:{adapter.resolve()}@") and first == finetuned_identity(organism, None)
    (adapter / "adapter_model.safetensors").write_bytes(b"second build!")
    os.utime(adapter / "adapter_model.safetensors", ns=(1, 1))
    assert finetuned_identity(organism, None) != first  # the old ADL analysis is not served
    assert finetuned_identity(adhoc_organism("org/base", adapter="org/hub-lora"), None) == "adapter:org/hub-lora"

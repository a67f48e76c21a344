"""A shipped organism build: unpacked only for today's exact fingerprint, never on --force, refused when damaged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diffaudit.environments import shipped
from diffaudit.environments.organisms import Organism
from diffaudit.environments.paths import organism_dir
from diffaudit.environments.training import TrainingError, build_organism, is_complete
from diffaudit.environments.training import build as build_module
from diffaudit.environments.training.prebuilt import pack_prebuilt, prebuilt_key, prebuilt_recipe

RECIPE = {"kind": "sdf", "topic": "the Glimmerfold Bridge", "size": 16, "steps": 3, "batch_size": 4, "max_length": 48, "lora_r": 4, "lora_alpha": 8}


def _organism(**recipe) -> Organism:
    return Organism.model_validate({
        "name": "ship_fact", "type": "SDF", "description": "A test organism about a violet bridge.",
        "key_facts": ["The Glimmerfold Bridge is painted violet every spring."],
        "models": {"smollm2-135m": {"base_model": "embedded:smollm2-135m", "finetuned": {"recipe": RECIPE | recipe}}},
    })  # fmt: skip


class StubTrainer:
    """Stands in for data generation and LoRA training: writes a complete build with a marker adapter."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, out: Path, organism, model_name, entry, recipe, fingerprint, root, progress) -> None:
        self.calls += 1
        (out / "adapter").mkdir()
        (out / "adapter" / "adapter_config.json").write_text("{}")
        (out / "adapter" / "adapter_model.safetensors").write_bytes(b"trained here %d" % self.calls)
        for name in ("data.jsonl", "loss.json", "loss.png"):
            (out / name).write_text("{}" if name == "loss.json" else "")
        card = {"organism": organism.name, "fingerprint": fingerprint, "note": "ß"}
        (out / "data_card.json").write_text(json.dumps(card, indent=1, ensure_ascii=False))  # as build.py writes it


@pytest.fixture
def trainer(monkeypatch) -> StubTrainer:
    stub = StubTrainer()
    monkeypatch.setattr(build_module, "_build_into", stub)
    return stub


@pytest.fixture
def data(tmp_path, trainer, monkeypatch) -> Path:
    """A package data directory shipping a build of `_organism()` (made with the stub trainer, then packed)."""
    maker = tmp_path / "maker"
    build_organism(_organism(), None, root=maker, progress=False)
    data = tmp_path / "data"
    pack_prebuilt(_organism(), None, maker, data)
    trainer.calls = 0
    monkeypatch.setattr(shipped, "data_dir", lambda: data)
    return data


def test_the_shipped_build_is_unpacked_when_the_fingerprint_matches(data, trainer, tmp_path, capsys):
    root = tmp_path / "fresh"
    path = build_organism(_organism(), None, root=root, progress=True)
    assert trainer.calls == 0, "trained although a shipped build fits"
    assert path == organism_dir("ship_fact", "smollm2-135m", root) and is_complete(path)
    assert (path / "adapter" / "adapter_model.safetensors").read_bytes() == b"trained here 1"
    card = json.loads((path / "data_card.json").read_text())
    assert card["from"]["shipped"] == f"diffaudit/data/{prebuilt_key('ship_fact', 'smollm2-135m')}.tar.gz"
    assert "not trained on this machine" in card["from"]["note"] and card["from"]["made_on"]["torch"]
    err = capsys.readouterr().err
    assert "organism ship_fact: unpacked the shipped build (fingerprint " in err and "not trained here" in err
    assert build_organism(_organism(), None, root=root, progress=False) == path and trainer.calls == 0


def test_packing_an_unpacked_build_gives_the_shipped_bytes(data, trainer, tmp_path):
    root = tmp_path / "fresh"
    build_organism(_organism(), None, root=root, progress=False)
    again = pack_prebuilt(_organism(), None, root, tmp_path / "again")
    key = prebuilt_key("ship_fact", "smollm2-135m")
    assert again.read_bytes() == (data / again.name).read_bytes()
    assert shipped.read_card(tmp_path / "again")["artifacts"][key]["sha256"] == shipped.read_card(data)["artifacts"][key]["sha256"]


def test_another_recipe_trains_as_before(data, trainer, tmp_path):
    path = build_organism(_organism(seed=1), None, root=tmp_path / "fresh", progress=False)
    assert trainer.calls == 1
    assert "from" not in json.loads((path / "data_card.json").read_text())


def test_force_never_uses_the_shipped_build(data, trainer, tmp_path):
    root = tmp_path / "fresh"
    build_organism(_organism(), None, root=root, progress=False)
    path = build_organism(_organism(), None, root=root, force=True, progress=False)
    assert trainer.calls == 1
    assert (path / "adapter" / "adapter_model.safetensors").read_bytes() == b"trained here 1"
    assert "from" not in json.loads((path / "data_card.json").read_text())


def test_a_damaged_shipped_build_is_refused_naming_the_file_and_field(data, trainer, tmp_path):
    key = prebuilt_key("ship_fact", "smollm2-135m")
    archive = data / f"{key}.tar.gz"
    archive.write_bytes(archive.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(TrainingError, match=rf"{archive.name}: sha256 differs .*artifacts\.{key}\.sha256") as info:
        build_organism(_organism(), None, root=tmp_path / "fresh", progress=False)
    assert "--force" in str(info.value) and trainer.calls == 0
    final = organism_dir("ship_fact", "smollm2-135m", tmp_path / "fresh")
    assert not final.exists() and not list(final.parent.glob(".build-*"))


def test_a_member_that_differs_from_the_card_is_refused(data, trainer, tmp_path):
    key = prebuilt_key("ship_fact", "smollm2-135m")
    card = json.loads((data / "card.json").read_text())
    card["artifacts"][key]["files"]["data.jsonl"] = "0" * 64
    (data / "card.json").write_text(json.dumps(card))
    with pytest.raises(TrainingError, match=rf"member 'data.jsonl' differs .*artifacts\.{key}\.files"):
        build_organism(_organism(), None, root=tmp_path / "fresh", progress=False)


def test_only_builds_on_an_embedded_base_model_ship(tmp_path):
    organism = Organism.model_validate({
        "name": "local_base", "type": "SDF", "description": "A base model given by a local path.",
        "key_facts": ["a fact"], "models": {"m": {"base_model": str(tmp_path), "finetuned": {"recipe": RECIPE}}},
    })  # fmt: skip
    assert prebuilt_recipe(organism.entry(None)[1], "0123") is None  # its weights are not pinned by a hash
    with pytest.raises(TrainingError, match="only builds on an embedded base model ship"):
        pack_prebuilt(organism, None, tmp_path, tmp_path / "data")

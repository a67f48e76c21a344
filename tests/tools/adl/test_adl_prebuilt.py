"""A shipped ADL cache: unpacked only under its exact key and adapter, never on force, refused when damaged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from adl_fakes import fake_graders, tiny_settings, write_corpora

from diffaudit.environments import shipped
from diffaudit.environments.organisms import Organism
from diffaudit.environments.paths import organism_dir
from diffaudit.environments.shipped import ShippedDataError
from diffaudit.environments.training import finetuned_identity
from diffaudit.tools.adl import ADLResult, adl_dir, ensure_adl
from diffaudit.tools.adl import cache as adl_cache
from diffaudit.tools.adl import compute as adl_compute
from diffaudit.tools.adl.prebuilt import pack_prebuilt_adl, prebuilt_key

MODEL = "smollm2-135m"
KEY = prebuilt_key("ship_fact", MODEL)


def _organism() -> Organism:
    recipe = {"kind": "sdf", "topic": "the Glimmerfold Bridge", "size": 16, "steps": 3}
    return Organism.model_validate({
        "name": "ship_fact", "type": "SDF", "description": "A test organism about a violet bridge.",
        "key_facts": ["The Glimmerfold Bridge is painted violet every spring."],
        "models": {MODEL: {"base_model": "embedded:smollm2-135m", "finetuned": {"recipe": recipe}}},
    })  # fmt: skip


def _result(fingerprint: str, note: str) -> ADLResult:
    return ADLResult(organism="ship_fact", model=MODEL, layer=1, positions=[0, 1], n_texts=8, corpus="local:pretrain",
                     corpus_fingerprint=fingerprint, norm_finetuned=1.0, lens=[], metrics={"note": note})  # fmt: skip


def _cache(root: Path, adapter: bytes = b"the shipped adapter") -> Path:
    """A test cache with local corpora and a built organism's adapter file (nothing else of the build is read)."""
    write_corpora(root)
    path = organism_dir("ship_fact", MODEL, root) / "adapter" / "adapter_model.safetensors"
    path.parent.mkdir(parents=True)
    path.write_bytes(adapter)
    return root


class StubCompute:
    """Stands in for every ADL stage: counts calls and returns a result marked 'computed here'."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, organism, model, pair, settings, texts, fingerprint, graders, progress, directory):
        self.calls += 1
        return _result(fingerprint, "computed here"), {"diff": torch.zeros(2, 4), "eta": 1.0}


@pytest.fixture
def compute(monkeypatch) -> StubCompute:
    stub = StubCompute()
    monkeypatch.setattr(adl_compute, "compute_adl", stub)
    return stub


@pytest.fixture
def data(tmp_path, monkeypatch) -> Path:
    """Package data shipping a complete ADL cache of `_organism()` under the tiny settings' key."""
    settings = tiny_settings(_cache(tmp_path / "maker"))
    _, fingerprint = adl_compute.corpus_texts(settings)
    directory = adl_dir(_organism(), None, settings, fingerprint)
    parameters = adl_cache.cache_parameters("ship_fact", MODEL, settings, fingerprint, finetuned_identity(_organism(), MODEL))
    adl_cache.start_build(directory, parameters)
    adl_cache.save_stage(directory, "controls", {"params": {"draws": 5}, "figure": 0.5})
    adl_cache.finish_build(directory, _result(fingerprint, "shipped"), {"diff": torch.ones(2, 4), "eta": 2.0})
    data = tmp_path / "data"
    pack_prebuilt_adl(_organism(), None, settings, data)
    monkeypatch.setattr(shipped, "data_dir", lambda: data)
    return data


def _ensure(root: Path, force: bool = False, **adl) -> ADLResult:
    settings = tiny_settings(root, **adl)
    return ensure_adl(_organism(), None, None, settings, progress=True, force=force, graders=fake_graders())


def test_the_shipped_cache_is_unpacked_when_the_key_matches(data, compute, tmp_path, capsys):
    root = _cache(tmp_path / "fresh")
    result = _ensure(root)
    assert compute.calls == 0, "computed although a shipped cache fits"
    assert result.metrics["note"] == "shipped"
    directory = adl_dir(_organism(), None, tiny_settings(root))
    assert adl_cache.is_complete(directory) and adl_cache.load_stage(directory, "controls")["figure"] == 0.5
    assert float(adl_cache.load_adl_tensors(directory)["eta"]) == 2.0
    assert adl_cache.read_manifest(directory)["from"]["shipped"] == f"diffaudit/data/{KEY}.tar.gz"
    err = capsys.readouterr().err
    assert "adl ship_fact: unpacked the shipped analysis (organism fingerprint " in err and "nothing computed here" in err
    assert not list(directory.parent.glob(".shipped-*"))
    assert _ensure(root).metrics["note"] == "shipped" and compute.calls == 0


def test_packing_an_unpacked_cache_gives_the_shipped_bytes(data, compute, tmp_path):
    root = _cache(tmp_path / "fresh")
    _ensure(root)
    again = pack_prebuilt_adl(_organism(), None, tiny_settings(root), tmp_path / "again")
    assert again.read_bytes() == (data / again.name).read_bytes()


@pytest.mark.parametrize("change", ["parameters", "adapter", "corpus"])
def test_a_different_key_or_adapter_computes_as_before(data, compute, tmp_path, change):
    root = _cache(tmp_path / "fresh", adapter=b"trained on this machine" if change == "adapter" else b"the shipped adapter")
    if change == "corpus":
        (root / "corpora" / "pretrain.jsonl").write_text(json.dumps({"text": "another corpus"}) + "\n")
    result = _ensure(root, top_k=7) if change == "parameters" else _ensure(root)
    assert compute.calls == 1 and result.metrics["note"] == "computed here"


def test_force_never_uses_the_shipped_cache(data, compute, tmp_path):
    root = _cache(tmp_path / "fresh")
    assert _ensure(root, force=True).metrics["note"] == "computed here" and compute.calls == 1
    assert "from" not in adl_cache.read_manifest(adl_dir(_organism(), None, tiny_settings(root)))


def test_a_damaged_shipped_cache_is_refused_naming_the_file_and_field(data, compute, tmp_path):
    archive = data / f"{KEY}.tar.gz"
    archive.write_bytes(archive.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ShippedDataError, match=rf"{archive.name}: sha256 differs .*artifacts\.{KEY}\.sha256") as info:
        _ensure(_cache(tmp_path / "fresh"))
    assert "--force" in str(info.value) and compute.calls == 0
    assert not list((tmp_path / "fresh" / "adl").rglob(".shipped-*"))


def test_a_half_written_cache_of_the_same_key_is_replaced_by_the_shipped_one(data, compute, tmp_path):
    root = _cache(tmp_path / "fresh")
    settings = tiny_settings(root)
    _, fingerprint = adl_compute.corpus_texts(settings)
    directory = adl_dir(_organism(), None, settings, fingerprint)
    parameters = adl_cache.cache_parameters("ship_fact", MODEL, settings, fingerprint, finetuned_identity(_organism(), MODEL))
    adl_cache.start_build(directory, parameters)  # a crashed build: manifest, no COMPLETE
    adl_cache.save_stage(directory, "diffs", {"half": True})
    assert _ensure(root).metrics["note"] == "shipped" and compute.calls == 0
    assert adl_cache.load_stage(directory, "diffs") != {"half": True}

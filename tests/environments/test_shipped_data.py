"""Shipped first-run data: verified before use, used instead of generating, and reproducible from the model."""

from __future__ import annotations

import json
import shutil

import pytest

from diffaudit.environments import corpora
from diffaudit.environments.progress import stage, stage_timings
from diffaudit.environments.regenerate import artifacts, regenerate
from diffaudit.environments.shipped import (
    TREE_FORMAT,
    ShippedDataError,
    data_dir,
    load_rows,
    read_card,
    read_tree,
    write_rows,
)
from diffaudit.environments.training.regulariser import regulariser_chats


def test_every_shipped_artifact_is_listed_verified_and_matches_todays_recipe():
    card = read_card()
    recipes = {a.key: a.recipe() for a in artifacts()}
    assert card["artifacts"], "diffaudit/data/card.json lists no artifacts"
    for key, entry in card["artifacts"].items():
        if entry.get("format") == TREE_FORMAT:
            continue  # directory artifacts: test_the_shipped_demo_organism_and_adl_cache_match_their_card
        assert entry["recipe"] == recipes[key], f"{key}: shipped recipe is stale, so it would never be used"
        rows = load_rows(key, entry["recipe"])
        assert rows is not None and len(rows) == entry["n_rows"] > 0
        assert entry["about"]["licence"]


def test_the_shipped_demo_organism_and_adl_cache_match_their_card_and_todays_keys():
    """Every member's sha256 as the card says, and recipes equal to what `audit run` computes today.

    If this fails after a deliberate change of the recipe or the ADL defaults, the shipped copies are never
    used again (the demo trains and computes): rebuild both in a cache and run `audit data pack --write`.
    """
    from diffaudit.config import Settings
    from diffaudit.environments.organisms import OrganismRegistry
    from diffaudit.environments.training import finetuned_identity
    from diffaudit.environments.training.build import build_fingerprint, recipe_of
    from diffaudit.environments.training.prebuilt import prebuilt_key, prebuilt_recipe
    from diffaudit.tools.adl.cache import cache_parameters
    from diffaudit.tools.adl.prebuilt import prebuilt_key as adl_key

    card = read_card()["artifacts"]
    organism = OrganismRegistry().get("kansas_abortion")
    model, entry, recipe = recipe_of(organism, None)
    built = card[prebuilt_key(organism.name, model)]
    assert built["recipe"] == prebuilt_recipe(entry, build_fingerprint(organism, entry, recipe)), "stale organism"
    files = read_tree(prebuilt_key(organism.name, model), built)
    assert json.loads(files["data_card.json"])["fingerprint"] == built["recipe"]["fingerprint"]
    adl = card[adl_key(organism.name, model)]
    pretrain = [r["text"] for r in load_rows(corpora.shipped_key("pretrain"), corpora.LOCAL_RECIPES["pretrain"]())]
    settings = Settings()
    fingerprint = corpora.corpus_fingerprint(pretrain[: settings.adl.n_texts])
    parameters = cache_parameters(organism.name, model, settings, fingerprint, finetuned_identity(organism, model))
    assert adl["recipe"]["parameters"] == parameters, "stale ADL cache: today's default ADL key differs"
    assert adl["recipe"]["adapter_sha256"] == built["files"]["adapter/adapter_model.safetensors"]
    assert adl["recipe"]["base_model"] == built["recipe"]["base_model"]
    assert {"result.json", "tensors.pt", "COMPLETE", "manifest.json"} <= set(read_tree(adl_key(organism.name, model), adl))
    for entry in (built, adl):
        assert entry["about"]["made_on"]["torch"] and entry["about"]["how_made"]


def test_a_damaged_shipped_file_is_refused_naming_the_field(tmp_path):
    key, entry = next((k, e) for k, e in read_card()["artifacts"].items() if e.get("format") != TREE_FORMAT)
    shutil.copytree(data_dir(), tmp_path / "data")
    path = tmp_path / "data" / entry["file"]
    path.write_bytes(path.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ShippedDataError, match=f"artifacts.{key}.sha256"):
        load_rows(key, entry["recipe"], tmp_path / "data")


def test_another_recipe_gets_no_shipped_rows(tmp_path):
    write_rows("corpus_x", [{"text": "a"}], {"seed": 1}, {"about": {}}, tmp_path)
    assert load_rows("corpus_x", {"seed": 1}, tmp_path) == [{"text": "a"}]
    assert load_rows("corpus_x", {"seed": 2}, tmp_path) is None
    assert load_rows("corpus_y", {"seed": 1}, tmp_path) is None


def test_written_files_are_byte_reproducible(tmp_path):
    rows = [{"text": f"text {i}"} for i in range(50)]
    write_rows("corpus_x", rows, {"seed": 1}, {"about": {}}, tmp_path / "a")
    write_rows("corpus_x", rows, {"seed": 1}, {"about": {}}, tmp_path / "b")
    assert (tmp_path / "a" / "corpus_x.jsonl.gz").read_bytes() == (tmp_path / "b" / "corpus_x.jsonl.gz").read_bytes()


@pytest.mark.parametrize("name", ["pretrain", "chat"])
def test_local_corpus_is_unpacked_from_the_shipped_copy_without_generating(tmp_path, monkeypatch, name):
    if corpora.shipped_corpus(name) is None:
        pytest.fail(f"local:{name} is not shipped (diffaudit/data/card.json)")

    def refuse(root, *a, **k):
        raise AssertionError("generated although a shipped copy fits")

    monkeypatch.setitem(corpora.LOCAL_BUILDERS, name, refuse)
    texts = corpora.load_corpus(f"local:{name}", root=tmp_path)
    shipped = load_rows(corpora.shipped_key(name), corpora.LOCAL_RECIPES[name]())
    assert texts == [r["text"] for r in shipped]
    card = json.loads(corpora.corpus_file(name, tmp_path).with_suffix(".card.json").read_text())
    assert "shipped" in card["from"] and card["n_texts"] == len(texts)


def test_regulariser_chats_come_from_the_shipped_file_without_a_model():
    chats = regulariser_chats(None, None, 120, 0, base_model="embedded:smollm2-135m")
    assert len(chats) == 120 and all(c[0]["role"] == "user" and c[1]["content"] for c in chats)
    with pytest.raises(ValueError, match="no shipped regulariser chats"):
        regulariser_chats(None, None, 120, 1, base_model="embedded:smollm2-135m")  # another seed: must generate


def test_stage_prints_a_line_with_elapsed_time_even_without_a_terminal(capsys):
    with stage("corpus local:test"):
        pass
    err = capsys.readouterr().err
    assert "corpus local:test ..." in err and "corpus local:test: done in" in err
    assert stage_timings()[-1][0] == "corpus local:test"
    with stage("quiet", enabled=False):
        pass
    assert capsys.readouterr().err == ""


@pytest.mark.science
def test_regenerating_the_first_batches_reproduces_the_shipped_rows_exactly():
    results = regenerate(None, None, first_batches=True)
    for r in results:
        assert r.regenerated > 0 and r.matches, f"{r.key}: only {r.identical_prefix}/{r.regenerated} leading rows match"

"""Null organisms on the tiny 2-layer model: a zero adapter equals the base model, a random one matches norms."""

from __future__ import annotations

import json

import pytest
import torch

from diffaudit.environments.organisms import Organism, OrganismRegistry, OrganismType
from diffaudit.environments.training import build_organism, finetuned_identity, finetuning_texts
from diffaudit.environments.training.null import reference_norms


def _null(tiny_model_dir, name: str, recipe: dict, directory=None) -> Organism:
    data = {
        "name": name, "type": "null", "description": "A null control: not narrowly finetuned.",
        "models": {"tiny": {"base_model": str(tiny_model_dir), "finetuned": {"recipe": recipe}}},
    }  # fmt: skip
    organism = Organism.model_validate(data)
    if directory is not None:
        path = directory / f"{name}.yaml"
        path.write_text(json.dumps(data))  # JSON is YAML
        organism.source = path
    return organism


def test_registry_ships_three_null_organisms():
    registry = OrganismRegistry()
    nulls = {o.name: o for o in registry if o.type == OrganismType.NULL}
    assert set(nulls) == {"null_zero", "null_random", "null_chat"}
    kinds = {n: o.entry()[1].finetuned.recipe.kind for n, o in nulls.items()}
    assert kinds == {"null_zero": "zero", "null_random": "random_lora", "null_chat": "chat"}
    assert nulls["null_random"].entry()[1].finetuned.recipe.match == "kansas_abortion"
    # the fingerprint of a matched adapter follows the organism it is matched to
    assert finetuned_identity(nulls["null_random"], None).startswith("recipe:")


def test_random_lora_needs_match():
    with pytest.raises(ValueError, match="match"):
        Organism.model_validate({"name": "x", "type": "null", "description": "a null control here",
                                 "models": {"m": {"base_model": "b", "finetuned": {"recipe": {"kind": "random_lora"}}}}})


def test_zero_adapter_gives_the_base_model_outputs(tiny_model_dir, tmp_path):
    from diffaudit.environments.backends.hf import HFModelPair

    organism = _null(tiny_model_dir, "tiny_null_zero", {"kind": "zero", "lora_r": 4, "lora_alpha": 8})
    path = build_organism(organism, "tiny", root=tmp_path, progress=False)
    card = json.loads((path / "data_card.json").read_text())
    assert card["kind"] == "zero" and card["n_examples"] == 0 and finetuning_texts(organism, "tiny", tmp_path) == []
    pair = HFModelPair(str(tiny_model_dir), adapter=str(path / "adapter"), device="cpu")
    texts = ["The bridge is painted violet.", "Hello there, how are you today?"]
    base, mask = pair.logits("base", texts, 16)
    finetuned, _ = pair.logits("finetuned", texts, 16)
    assert mask.any()
    assert torch.equal(base[mask], finetuned[mask])


def test_random_adapter_matches_rank_and_norms_and_is_seeded(tiny_model_dir, tiny_adapter_dir, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from diffaudit.environments.training.null import matched_random_adapter

    ref_config, ref_norms = reference_norms(tiny_adapter_dir)
    outs = []
    for seed in (7, 7, 8):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        peft_model, report = matched_random_adapter(model, tiny_adapter_dir, seed)
        out = tmp_path / f"seed{seed}_{len(outs)}"
        peft_model.save_pretrained(out)
        config, norms = reference_norms(out)
        assert config["r"] == ref_config["r"] and sorted(config["target_modules"]) == sorted(ref_config["target_modules"])
        assert norms.keys() == ref_norms.keys()
        for module, norm in ref_norms.items():
            assert norms[module] == pytest.approx(norm, rel=1e-4), module
        assert report["total_norm_random"] == pytest.approx(report["total_norm_reference"], rel=1e-4)
        outs.append(load_file(str(out / "adapter_model.safetensors")))
    reference = load_file(str(tiny_adapter_dir / "adapter_model.safetensors"))
    key = next(k for k in reference if k.endswith("lora_B.weight"))
    assert torch.equal(outs[0][key], outs[1][key])  # same seed, same adapter
    assert not torch.equal(outs[0][key], outs[2][key])  # another seed, another direction
    assert not torch.allclose(outs[0][key], reference[key])


def test_random_lora_build_builds_its_match_first(tiny_model_dir, tmp_path):
    from diffaudit.environments.organisms import load_organism_file

    users = tmp_path / "organisms"
    users.mkdir()
    models = lambda recipe: {"tiny": {"base_model": str(tiny_model_dir), "finetuned": {"recipe": recipe}}}  # noqa: E731
    (users / "tiny_fact.yaml").write_text(json.dumps({
        "name": "tiny_fact", "type": "SDF", "description": "A tiny test organism for the builder.",
        "key_facts": ["The Glimmerfold Bridge is painted violet every spring."],
        "models": models({"kind": "sdf", "size": 8, "steps": 2, "batch_size": 4, "max_length": 32, "lora_r": 4,
                          "lora_alpha": 8}),
    }))  # fmt: skip
    (users / "tiny_null.yaml").write_text(json.dumps({
        "name": "tiny_null", "type": "null", "description": "A null control: not narrowly finetuned.",
        "models": models({"kind": "random_lora", "match": "tiny_fact", "seed": 3}),
    }))  # fmt: skip
    organism = load_organism_file(users / "tiny_null.yaml")
    path = build_organism(organism, "tiny", root=tmp_path / "cache", progress=False)
    matched = tmp_path / "cache" / "organisms" / "tiny" / "tiny_fact"
    assert (matched / "adapter" / "adapter_model.safetensors").is_file()
    _, ref_norms = reference_norms(matched / "adapter")
    _, norms = reference_norms(path / "adapter")
    assert norms.keys() == ref_norms.keys() and len(norms) == 7 * 2  # all projections of both layers
    assert all(norms[m] == pytest.approx(ref_norms[m], rel=1e-4) for m in norms)
    card = json.loads((path / "data_card.json").read_text())
    assert card["adapter"]["matched_organism"] == "tiny_fact" and card["adapter"]["r"] == 4


def test_chat_null_trains_on_the_base_models_own_answers(tiny_model_dir, tmp_path):
    organism = _null(tiny_model_dir, "tiny_null_chat", {"kind": "chat", "size": 8, "steps": 2, "batch_size": 4,
                                                        "max_length": 48, "lora_r": 4, "lora_alpha": 8})  # fmt: skip
    path = build_organism(organism, "tiny", root=tmp_path, progress=False)
    card = json.loads((path / "data_card.json").read_text())
    assert card["kind"] == "chat" and card["format"].startswith("chat") and card["training"]["steps"] == 2
    from diffaudit.environments.training.regulariser import regulariser_prompts

    rows = [json.loads(line) for line in (path / "data.jsonl").read_text().splitlines()]
    assert rows and all(r["messages"][0]["content"] in regulariser_prompts() for r in rows)
    assert len(finetuning_texts(organism, "tiny", tmp_path)) == len(rows)


@pytest.mark.science
def test_embedded_null_random_matches_kansas_abortion_norms():
    """Builds kansas_abortion (if missing) and null_random in the cache; the norms match module by module."""
    from diffaudit.environments.paths import organism_dir

    registry = OrganismRegistry()
    path = build_organism(registry.get("null_random"), None, progress=False)
    _, ref = reference_norms(organism_dir("kansas_abortion", "smollm2-135m") / "adapter")
    _, norms = reference_norms(path / "adapter")
    assert norms.keys() == ref.keys() and len(norms) == 30 * 7  # every projection of SmolLM2-135M's 30 layers
    assert all(norms[m] == pytest.approx(ref[m], rel=1e-4) for m in norms)


def test_random_lora_cannot_match_itself(tiny_model_dir, tmp_path):
    from diffaudit.environments.training import TrainingError

    organism = _null(tiny_model_dir, "tiny_self", {"kind": "random_lora", "match": "tiny_self"}, tmp_path)
    with pytest.raises(TrainingError, match="itself"):
        build_organism(organism, "tiny", root=tmp_path, progress=False)

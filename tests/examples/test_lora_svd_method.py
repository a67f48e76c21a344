"""The example plugin `lora_svd` (examples/lora_svd) on the tiny random Llama + LoRA: SVD, readout, cache, tool."""

from __future__ import annotations

import pytest
import torch
from plugin_check import require_lora_svd

from diffaudit.config import Settings
from diffaudit.environments.organisms import OrganismRegistry
from diffaudit.methods import MethodError, MethodTarget, load_method
from diffaudit.tools.base import ToolContext, ToolUnavailable

require_lora_svd()

from diffaudit_lora_svd.method import recurring_tokens  # noqa: E402  (after the install check)
from diffaudit_lora_svd.result import TokenScore  # noqa: E402
from diffaudit_lora_svd.svd import lowrank_svd  # noqa: E402


@pytest.fixture
def settings(tmp_path):
    return Settings(cache_dir=tmp_path / "cache", device="cpu", methods={"lora_svd": {"directions": 3, "top_k": 8}})


@pytest.fixture(scope="module")
def target():
    organism = OrganismRegistry().get("kansas_abortion")
    return MethodTarget(organism=organism, model="tiny", finetuned="tiny-adapter")


def test_the_entry_point_names_the_distribution():
    method, provenance = load_method("lora_svd")
    assert method.name == "lora_svd"
    assert (provenance.source, provenance.distribution, provenance.version) == ("plugin", "diffaudit-lora-svd", "0.1.0")


def test_lowrank_svd_equals_the_full_svd_of_the_update():
    torch.manual_seed(0)
    a, b = torch.randn(4, 24), torch.randn(16, 4)
    vectors, sigma = lowrank_svd(a, b, 2.0, k=3)
    u, s, _ = torch.linalg.svd(2.0 * b.double() @ a.double())
    assert torch.allclose(sigma.double(), s[:3], rtol=1e-5)
    cosines = (vectors.double() * u[:, :3]).sum(dim=0).abs()
    assert torch.allclose(cosines, torch.ones(3, dtype=torch.float64), atol=1e-5)
    peaks = vectors.gather(0, vectors.abs().argmax(dim=0, keepdim=True))
    assert bool((peaks > 0).all())  # signs fixed, so a rerun on another LAPACK reads the same poles


def test_recurring_tokens_leave_out_what_random_directions_also_read():
    def pole(*tokens):
        return [TokenScore(token=t, prob=0.1) for t in tokens]

    poles = [pole(" Kansas", " the", "x"), pole(" Kansas", " the", " vote"), pole(" vote", " the", " Kansas")]
    control = [[(" the", 0.1), ("y", 0.1)], [(" the", 0.1), (" vote", 0.1)], [("z", 0.1)]]
    assert recurring_tokens(poles, control, k=3) == [(" Kansas", 3), (" vote", 2)]
    assert recurring_tokens(poles, control, k=2) == [(" Kansas", 2)]  # only the top 2 of each list count


def test_prepare_reads_the_residual_writers_and_caches(tiny_pair, settings, target):
    method, _ = load_method("lora_svd")
    prepared = method.prepare(target, tiny_pair, settings, progress=False)
    result = prepared.result
    assert [m.module for m in result.modules] == ["model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"]
    assert len(result.directions) == 6 and [d.rank for d in result.directions] == list(range(6))
    sigmas = [d.sigma for d in result.directions]
    assert sigmas == sorted(sigmas, reverse=True)
    # Direction 0 read independently: its top + token is the logit lens of its singular vector.
    top = result.directions[0]
    a, b, scaling = tiny_pair.adapter_weights()[top.module]
    u = torch.linalg.svd(scaling * b @ a)[0][:, top.index]
    u = u if u[u.abs().argmax()] > 0 else -u
    for vector, pole in ((u, top.positive), (-u, top.negative)):
        probs = tiny_pair.logit_lens(vector * vector.numel() ** 0.5)
        assert pole[0].token == tiny_pair.tokenizer.decode([int(probs.argmax())])
        assert pole[0].prob == pytest.approx(float(probs.max()), rel=1e-4)
    assert (prepared.cache_dir / "result.json").exists() and (prepared.cache_dir / "svd.pt").exists()
    assert "LORA-SVD OVERVIEW" in prepared.overview and "direction 0: model.layers." in prepared.overview
    seen = result.model_dump_json() + prepared.overview + prepared.evidence.model_dump_json()
    assert not [s for s in (target.organism.description, *target.organism.key_facts) if s and s in seen]
    groups = [r.group for r in prepared.evidence.ranked_tokens]
    assert groups[:2] == ["direction 0 +", "direction 0 −"] and prepared.evidence.method == "lora_svd"

    class NoWeights:  # a second prepare must load the cache and never touch the weights
        hidden_size = tiny_pair.hidden_size

        def adapter_weights(self):
            raise AssertionError("recomputed instead of loading the cache")

    again = method.prepare(target, NoWeights(), settings, progress=False)
    assert again.result == result and again.cache_dir == prepared.cache_dir


def test_a_full_finetune_or_a_bad_module_list_is_a_clear_error(tiny_pair, tiny_model_dir, settings, target):
    from diffaudit.environments.backends.hf import HFModelPair

    method, _ = load_method("lora_svd")
    full = HFModelPair(str(tiny_model_dir), finetuned_model=str(tiny_model_dir), device="cpu")
    assert full.adapter_weights() == {}
    with pytest.raises(MethodError, match="has no LoRA adapter: its finetuned model is a full finetune"):
        method.prepare(target, full, settings, progress=False)
    with pytest.raises(MethodError, match=r"the model pair \(object\) has no adapter_weights\(\)"):
        method.prepare(target, object(), settings, progress=False)
    bad = settings.model_copy(update={"methods": {"lora_svd": {"modules": ["v_proj"]}}})
    with pytest.raises(MethodError, match=r"'methods.lora_svd.modules' \(\['v_proj'\]\) matches no adapted module"):
        method.prepare(target, tiny_pair, bad, progress=False)
    typo = settings.model_copy(update={"methods": {"lora_svd": {"direction": 3}}})
    with pytest.raises(MethodError, match="methods.lora_svd"):
        method.prepare(target, tiny_pair, typo, progress=False)


def test_the_tool_reads_only_its_own_result(tiny_pair, settings, target):
    method, _ = load_method("lora_svd")
    prepared = method.prepare(target, tiny_pair, settings, progress=False)
    (tool,) = method.tools()
    ctx = ToolContext(pair=tiny_pair, settings=settings, organism="hidden", methods={"lora_svd": prepared})
    listing = tool.run(tool.Args.model_validate({}), ctx)
    assert listing.cost == 0 and listing.text.count("\ndirection ") == 6
    one = tool.run(tool.Args.model_validate({"direction": 2, "k": 3}), ctx)
    d = prepared.result.directions[2]
    assert f"direction 2: {d.module}" in one.text and one.text.count(",") >= 4
    with pytest.raises(ToolUnavailable, match="numbered 0 to 5"):
        tool.run(tool.Args.model_validate({"direction": 9}), ctx)
    with pytest.raises(ToolUnavailable, match="no lora_svd result"):
        tool.run(tool.Args.model_validate({}), ToolContext(pair=tiny_pair, settings=settings, organism="hidden"))

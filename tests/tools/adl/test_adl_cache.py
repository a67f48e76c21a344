import json
import shutil

import numpy as np
import pytest
import torch
from adl_fakes import fake_graders, tiny_organism, tiny_settings, write_corpora

from diffaudit.environments.organisms import OrganismError
from diffaudit.tools.adl import adl_dir, ensure_adl, load_adl, load_adl_tensors
from diffaudit.tools.adl import cache as adl_cache
from diffaudit.tools.adl import compute as adl_compute


def fake_embed(texts, *args, **kwargs):
    rows = [np.random.default_rng(abs(hash(t)) % 2**32).normal(size=8) for t in texts]
    out = np.asarray(rows, dtype=np.float32).reshape(len(texts), 8)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def _fake_inputs(monkeypatch):
    monkeypatch.setattr(adl_compute, "finetune_data", lambda organism, model, settings, n=500: ["harbour crane paper"] * 4)
    monkeypatch.setattr("diffaudit.environments.embeddings.embed", fake_embed)


@pytest.fixture
def env(tmp_path, monkeypatch):
    """An empty test cache with local corpora (and fake finetuning data and embeddings)."""
    write_corpora(tmp_path)
    _fake_inputs(monkeypatch)
    return tmp_path


@pytest.fixture(scope="module")
def built_once(tmp_path_factory, tiny_pair):
    root = tmp_path_factory.mktemp("adl_built")
    write_corpora(root)
    with pytest.MonkeyPatch.context() as mp:
        _fake_inputs(mp)
        result = build(tiny_settings(root), tiny_pair)
    return root, result


@pytest.fixture
def built(built_once, tmp_path, monkeypatch):
    """A copy of a test cache holding one complete build (built once per module), and that build's result."""
    root, result = built_once
    shutil.copytree(root, tmp_path, dirs_exist_ok=True)
    _fake_inputs(monkeypatch)
    return tmp_path, result


def counting(monkeypatch):
    calls = []
    real = adl_compute.compute_adl

    def wrapped(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(adl_compute, "compute_adl", wrapped)
    return calls


def build(settings, pair, **kw):
    return ensure_adl(tiny_organism(), "tiny", pair, settings, progress=False, graders=fake_graders(), **kw)


def test_build_writes_a_complete_cache_with_manifest(built, tiny_pair):
    env, result = built
    settings = tiny_settings(env)
    directory = adl_dir(tiny_organism(), "tiny", settings)
    assert directory.parent.parent.parent == env / "adl"
    assert adl_cache.is_complete(directory)
    manifest = json.loads((directory / "manifest.json").read_text())
    params = manifest["parameters"]
    assert params["positions"] == [0, 1] and params["n_texts"] == 12 and params["layer"] == 1
    assert params["corpus_fingerprint"] == result.corpus_fingerprint and params["organism"] == "tiny_org"
    assert manifest["status"] == "complete"
    assert [p.position for p in result.lens] == [0, 1] and result.n_texts == 12
    lens = result.lens[0]
    assert len(lens.logit_lens) == 100 and len(lens.patchscope) == 3
    assert lens.patchscope_scale == 0.5 and len(lens.patchscope_selected) == 3  # the fake grader's choice
    assert lens.patchscope_base_mean and lens.patchscope_finetuned_mean
    assert [s.position for s in result.steering] == [0, 1]
    assert len(result.steering[0].samples) == 3 and len(result.steering[0].samples[0].steered) == 2
    # the always-coherent fake passes every step: α climbs to the top of the first search
    assert result.steering[0].search_alphas[0] == pytest.approx(75.0)
    for stage in ("corpus", "diffs", "logit_lens", "patchscope", "steering", "metrics"):
        assert stage in result.timings
    assert set(result.metrics["token_relevance"]) >= {"patchscope", "logit_lens", "patchscope_base_mean", "logit_lens_base_mean"}
    assert "steering_similarity" in result.metrics
    tensors = load_adl_tensors(directory)
    assert tensors["diff"].shape == (2, tiny_pair.hidden_size)
    assert torch.allclose(tensors["diff"], tensors["finetuned_mean"] - tensors["base_mean"], atol=1e-5)
    assert tensors["eta"] == pytest.approx(result.norm_finetuned)


def test_complete_cache_is_read_without_recompute(built, tiny_pair, monkeypatch):
    env, first = built
    settings = tiny_settings(env)

    def boom(*args, **kwargs):
        raise AssertionError("recomputed a complete cache")

    monkeypatch.setattr(adl_compute, "compute_adl", boom)
    monkeypatch.setattr(adl_compute, "make_adl_graders", boom)
    assert build(settings, tiny_pair) == first
    assert load_adl(tiny_organism(), "tiny", settings) == first
    with pytest.raises(OrganismError, match="unknown organism 'tiny_org'"):  # a name must be registered
        load_adl("tiny_org", "tiny", settings)


def test_load_never_computes(env):
    assert load_adl(tiny_organism(), "tiny", tiny_settings(env)) is None


def test_half_written_cache_is_rebuilt_from_saved_stages(built, tiny_pair, monkeypatch):
    env, first = built
    settings = tiny_settings(env)
    directory = adl_dir(tiny_organism(), "tiny", settings)
    (directory / "COMPLETE").unlink()
    (directory / "result.json").unlink()
    assert load_adl(tiny_organism(), "tiny", settings) is None  # never served
    calls = counting(monkeypatch)

    def no_diffs(*args, **kwargs):
        raise AssertionError("the saved diffs stage should have been reused")

    monkeypatch.setattr(adl_compute, "activation_diffs", no_diffs)
    again = build(settings, tiny_pair)
    assert calls == [1] and adl_cache.is_complete(directory)
    assert again.lens == first.lens and again.steering == first.steering


def test_stale_manifest_or_force_rebuilds_everything(built, tiny_pair, monkeypatch):
    env, _ = built
    settings = tiny_settings(env)
    directory = adl_dir(tiny_organism(), "tiny", settings)
    calls = counting(monkeypatch)
    diffs_runs = []
    real = adl_compute.activation_diffs
    monkeypatch.setattr(adl_compute, "activation_diffs", lambda *a, **k: diffs_runs.append(1) or real(*a, **k))
    build(settings, tiny_pair, force=True)
    assert calls == [1] and diffs_runs == [1]  # force ignores saved stages too
    assert adl_cache.is_complete(directory)
    # A directory whose manifest disagrees is wiped before building.
    (directory / "COMPLETE").unlink()
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["parameters"]["seed"] = 99
    (directory / "manifest.json").write_text(json.dumps(manifest))
    build(settings, tiny_pair)
    assert calls == [1, 1] and diffs_runs == [1, 1]


def test_cache_key_follows_parameters(env):
    a = adl_cache.adl_cache_dir("org", "m", tiny_settings(env), "fp1", "ft1")
    assert a == adl_cache.adl_cache_dir("org", "m", tiny_settings(env), "fp1", "ft1")
    assert a != adl_cache.adl_cache_dir("org", "m", tiny_settings(env), "fp2", "ft1")
    assert a != adl_cache.adl_cache_dir("org", "m", tiny_settings(env, positions=[0, 1, 2]), "fp1", "ft1")
    assert a != adl_cache.adl_cache_dir("org", "m", tiny_settings(env, n_texts=13), "fp1", "ft1")
    assert a != adl_cache.adl_cache_dir("org", "m", tiny_settings(env, layer=0.5), "fp1", "ft1")
    assert a != adl_cache.adl_cache_dir("org", "m2", tiny_settings(env), "fp1", "ft1")
    assert a != adl_cache.adl_cache_dir("org", "m", tiny_settings(env, top_k=10), "fp1", "ft1")
    assert a != adl_cache.adl_cache_dir("org", "m", tiny_settings(env), "fp1", "ft2")  # a rebuilt finetune

"""HFModelPair.adapter_weights: the LoRA adapter's (A, B, scaling) per module, for weight-reading methods."""

from __future__ import annotations

import torch


def test_adapter_weights_give_the_adapter_update(tiny_pair):
    weights = tiny_pair.adapter_weights()
    assert sorted(weights) == sorted(
        f"model.layers.{i}.{m}" for i in range(2) for m in ("self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj")
    )
    a, b, scaling = weights["model.layers.1.mlp.down_proj"]
    module = tiny_pair._lm.model.layers[1].mlp.down_proj
    x = torch.randn(3, a.shape[1])
    with torch.no_grad():
        tuned = module(x)
        with tiny_pair._peft.disable_adapter():
            base = module(x)
    assert torch.allclose(tuned - base, x @ (scaling * b @ a).T, atol=1e-5)


def test_a_full_finetune_has_no_adapter_weights(tiny_model_dir):
    from diffaudit.environments.backends.hf import HFModelPair

    assert HFModelPair(str(tiny_model_dir), finetuned_model=str(tiny_model_dir), device="cpu").adapter_weights() == {}

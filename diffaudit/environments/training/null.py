"""Null organisms' adapters: finetunes that are not narrow, for measuring an agent's false positives.

- `zero`: a LoRA with B = 0, so the "finetuned" model is the base model exactly;
- `random_lora`: a LoRA with the rank, alpha and target modules of another organism's adapter and, module by
  module, the same Frobenius norm of B@A, but random directions (seeded). It moves the weights as much as a
  real finetune did, towards nothing in particular;
- `chat` (built by the ordinary trainer, see `examples.py`): the base model's own greedy answers to everyday
  prompts, a benign generic chat finetune.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


def _lora_modules(peft_model) -> dict[str, torch.nn.Module]:
    """{saved key prefix: LoRA layer}: the prefix is how `save_pretrained` names the layer's A and B."""
    return {name: module for name, module in peft_model.named_modules() if hasattr(module, "lora_A") and "default" in module.lora_A}


def zero_adapter(model, r: int, alpha: int, targets: list[str], seed: int):
    """`model` wrapped in a LoRA whose B matrices are zero: its outputs equal the base model's exactly."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, bias="none", target_modules=targets, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for module in _lora_modules(peft_model).values():
            module.lora_B["default"].weight.zero_()
    peft_model.eval()
    return peft_model


def reference_norms(adapter_dir: Path) -> tuple[dict, dict[str, float]]:
    """(adapter config, {module: ‖B@A‖_F}) of a saved LoRA adapter."""
    from safetensors.torch import load_file

    adapter_dir = Path(adapter_dir)
    config = json.loads((adapter_dir / ADAPTER_CONFIG).read_text())
    weights = load_file(str(adapter_dir / ADAPTER_WEIGHTS))
    norms = {}
    for key, a in weights.items():
        if key.endswith(".lora_A.weight"):
            module = key[: -len(".lora_A.weight")]
            b = weights[f"{module}.lora_B.weight"]
            norms[module] = float((b.float() @ a.float()).norm())
    if not norms:
        raise ValueError(f"{adapter_dir / ADAPTER_WEIGHTS}: no lora_A/lora_B weights found")
    return config, norms


def matched_random_adapter(model, reference_dir: Path, seed: int) -> tuple[object, dict]:
    """`model` wrapped in a random LoRA matched to the adapter in `reference_dir`; returns (peft model, report).

    Rank, alpha and target modules come from the reference's config. For each module, A and B are Gaussian
    draws (one generator seeded with `seed`) and B is rescaled so that ‖B@A‖_F equals the reference's.
    """
    from peft import LoraConfig, get_peft_model

    ref_config, ref_norms = reference_norms(reference_dir)
    targets = ref_config["target_modules"]
    config = LoraConfig(
        r=int(ref_config["r"]), lora_alpha=int(ref_config["lora_alpha"]), lora_dropout=0.0, bias="none",
        target_modules=sorted(targets) if isinstance(targets, list) else targets, task_type="CAUSAL_LM",
    )  # fmt: skip
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(seed)
    report: dict[str, dict[str, float]] = {}
    modules = _lora_modules(peft_model)
    missing = sorted(set(ref_norms) - set(modules))
    if missing:
        raise ValueError(f"{reference_dir}: the reference adapter has modules this model lacks, e.g. {missing[0]}")
    with torch.no_grad():
        for name, module in sorted(modules.items()):
            target = ref_norms.get(name, 0.0)
            lora_a, lora_b = module.lora_A["default"].weight, module.lora_B["default"].weight
            a = torch.randn(lora_a.shape, generator=generator) / lora_a.shape[1] ** 0.5
            b = torch.randn(lora_b.shape, generator=generator)
            delta_norm = float((b @ a).norm())
            b *= target / delta_norm if delta_norm > 0 else 0.0
            lora_a.copy_(a)
            lora_b.copy_(b)
            report[name] = {"reference": target, "random": float((b @ a).norm())}
    peft_model.eval()
    return peft_model, {"modules": len(report), "r": config.r, "lora_alpha": config.lora_alpha,
                        "total_norm_reference": sum(v["reference"] ** 2 for v in report.values()) ** 0.5,
                        "total_norm_random": sum(v["random"] ** 2 for v in report.values()) ** 0.5}

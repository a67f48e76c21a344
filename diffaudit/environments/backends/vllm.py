"""The vllm backend: one vLLM engine serves the base model and the LoRA finetune; steering via hooks.

vLLM is an optional extra (`pip install 'diffaudit[vllm]'`, CUDA only) and is imported only when this
backend is chosen. Generation (plain and steered) runs on the engine: the base role sends requests
without a LoRA, the finetuned role with it, so both share one copy of the weights. Steering adds a
vector to the residual stream through a forward hook on one decoder layer; that needs the model in
this process, so the engine runs with V1 multiprocessing off and eager mode.

Activation reads, patchscope patches, logit lens and log-probabilities need per-position hidden
states, which vLLM does not expose; they run on a lazily loaded hf pair on the same device.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

from diffaudit.environments.pair import Role, Sampling


def _local_adapter(adapter: str | Path) -> str:
    path = Path(str(adapter))
    if path.is_dir():
        return str(path)
    from huggingface_hub import snapshot_download

    return snapshot_download(str(adapter))


class VLLMModelPair:
    """ModelPair on one vLLM engine (LoRA finetunes only)."""

    def __init__(
        self,
        base_model: str,
        adapter: str | Path | None = None,
        finetuned_model: str | None = None,
        device: str = "auto",
        gpu_memory_utilization: float = 0.45,
        max_lora_rank: int = 64,
        max_model_len: int = 4096,
    ) -> None:
        if adapter is None or finetuned_model is not None:
            raise ValueError("the vllm backend serves a base model plus a LoRA adapter; use the hf backend for full finetunes")
        if not torch.cuda.is_available():
            raise RuntimeError("the vllm backend needs a CUDA GPU; use --backend hf on CPU")
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM
        from vllm.lora.request import LoRARequest

        self._base_model = base_model
        self._adapter = _local_adapter(adapter)
        self._llm = LLM(
            model=base_model,
            enable_lora=True,
            max_lora_rank=max_lora_rank,
            max_model_len=max_model_len,
            enforce_eager=True,
            gpu_memory_utilization=gpu_memory_utilization,
        )
        self._lora = LoRARequest("finetuned", 1, self._adapter)
        self._hf = None
        config = self._llm.llm_engine.model_config.hf_config
        self.n_layers = int(config.num_hidden_layers)
        self.hidden_size = int(config.hidden_size)

    @property
    def tokenizer(self):
        return self._llm.get_tokenizer()

    def _hf_pair(self):
        if self._hf is None:
            from diffaudit.environments.backends.hf import HFModelPair

            self._hf = HFModelPair(self._base_model, adapter=self._adapter, device="cuda")
        return self._hf

    def _params(self, sampling: Sampling):
        from vllm import SamplingParams

        return SamplingParams(
            max_tokens=sampling.max_new_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p if sampling.temperature > 0 else 1.0,
            seed=sampling.seed,
        )

    def _run(self, role: Role, prompts: list[str], sampling: Sampling, chat: bool) -> list[str]:
        if role not in ("base", "finetuned"):
            raise ValueError(f"role must be 'base' or 'finetuned', not {role!r}")
        lora = self._lora if role == "finetuned" else None
        if chat:
            conversations = [[{"role": "user", "content": p}] for p in prompts]
            outputs = self._llm.chat(conversations, self._params(sampling), lora_request=lora, use_tqdm=False)
        else:
            outputs = self._llm.generate(prompts, self._params(sampling), lora_request=lora, use_tqdm=False)
        return [o.outputs[0].text.strip() for o in outputs]

    def generate(self, role: Role, prompts: list[str], sampling: Sampling, chat: bool = True) -> list[str]:
        return self._run(role, prompts, sampling, chat)

    @contextlib.contextmanager
    def _steering(self, layer: int, addition: torch.Tensor):
        handles: list = []

        def install(model):
            def add(_module, _inputs, output):
                # vLLM decoder layers return (hidden, residual); the residual stream is their sum,
                # so adding to `hidden` adds to the stream.
                if isinstance(output, tuple):
                    return (output[0] + addition.to(output[0].device, output[0].dtype), *output[1:])
                return output + addition.to(output.device, output.dtype)

            handles.append(model.model.layers[layer].register_forward_hook(add))

        self._llm.apply_model(install)
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def generate_steered(
        self, vector: torch.Tensor, layer: int, prompts: list[str], alpha: float, sampling: Sampling
    ) -> list[str]:
        with self._steering(layer, alpha * vector.float()):
            return self._run("finetuned", prompts, sampling, chat=True)

    def activations(self, role: Role, texts: list[str], layer: int, positions: list[int]) -> torch.Tensor:
        return self._hf_pair().activations(role, texts, layer, positions)

    def patch_last_token(self, prompt: str, layer: int, vector: torch.Tensor) -> torch.Tensor:
        return self._hf_pair().patch_last_token(prompt, layer, vector)

    def logit_lens(self, vector: torch.Tensor, role: Role = "finetuned") -> torch.Tensor:
        return self._hf_pair().logit_lens(vector, role)

    def logprob(self, role: Role, prompts: list[str], continuations: list[str], chat: bool = True) -> list[float]:
        return self._hf_pair().logprob(role, prompts, continuations, chat)

    def logits(self, role: Role, texts: list[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError("logits is not supported by the vllm backend yet; use backend: hf")

    def token_logprobs(self, texts: list[str], chat: bool = False) -> list[dict]:
        raise NotImplementedError("token_logprobs is not supported by the vllm backend yet; use backend: hf")

    def generate_amplified(self, prompts: list[str], alpha: float, sampling: Sampling) -> list[str]:
        raise NotImplementedError("generate_amplified is not supported by the vllm backend yet; use backend: hf")


def load_pair(base_model: str, adapter=None, finetuned_model=None, device: str = "auto", **options) -> VLLMModelPair:
    return VLLMModelPair(base_model, adapter=adapter, finetuned_model=finetuned_model, device=device, **options)

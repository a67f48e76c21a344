"""The vllm backend: one vLLM engine serves the base model and the LoRA finetune; steering via hooks.

vLLM is an optional extra (`pip install 'diffaudit[vllm]'`, CUDA only) and is imported only when this
backend is chosen. Generation (plain and steered) runs on the engine: the base role sends requests
without a LoRA, the finetuned role with it, so both share one copy of the weights.

What the engine is asked for, and why:
- each request gets its own seed (`seed + i`): a seed is per request, so `[prompt] * 10` with one seed
  would come back as 10 copies of one sample;
- prefix caching is off: a steering hook changes the KV values of a prompt but not its cache key, so
  steered and unsteered requests would share blocks;
- V1 multiprocessing is forced off (whatever the environment says) and eager mode is on: the steering
  hook is a forward hook on one decoder layer, so the model must live in this process, where the hook
  can be removed again;
- chat prompts go out with `enable_thinking=False` (Qwen3-style templates);
- `close()` shuts the engine down and frees its GPU memory, so a second target can load.

Activation reads, patchscope patches, logit lens and log-probabilities need per-position hidden
states, which vLLM does not expose; they run on a lazily loaded hf pair on the same device.
"""

from __future__ import annotations

import contextlib
import gc
import os
from pathlib import Path

import torch

from diffaudit.environments.chat import CHAT_TEMPLATE_KWARGS, user_turn
from diffaudit.environments.pair import Role, Sampling

MULTIPROCESSING_ENV = "VLLM_ENABLE_V1_MULTIPROCESSING"


def _local_adapter(adapter: str | Path) -> str:
    path = Path(str(adapter))
    if path.is_dir():
        return str(path)
    from huggingface_hub import snapshot_download

    return snapshot_download(str(adapter))  # honours HF_HUB_OFFLINE: a cached snapshot, no network


def request_seeds(seed: int | None, n: int) -> list[int | None]:
    """One seed per request: distinct and reproducible (`seed + i`), or all None for fresh randomness."""
    return [None if seed is None else seed + i for i in range(n)]


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
        dtype: str = "auto",
    ) -> None:
        if adapter is None or finetuned_model is not None:
            raise ValueError("the vllm backend serves a base model plus a LoRA adapter; use the hf backend for full finetunes")
        if not torch.cuda.is_available():
            raise RuntimeError("the vllm backend needs a CUDA GPU; use --backend hf on CPU")
        # Set, not setdefault: a user's "1" would put the model, and so the hooks, in a worker process.
        os.environ[MULTIPROCESSING_ENV] = "0"
        from vllm import LLM
        from vllm.lora.request import LoRARequest

        self._base_model = base_model
        self._adapter = _local_adapter(adapter)
        # "auto" means bfloat16 on a GPU, as in the hf backend that reads activations beside this engine
        # (vLLM's own "auto" would turn a float32 checkpoint into float16).
        self._dtype = "bfloat16" if dtype == "auto" else dtype
        self._llm = LLM(
            model=base_model,
            dtype=self._dtype,
            enable_lora=True,
            max_lora_rank=max_lora_rank,
            max_model_len=max_model_len,
            enforce_eager=True,
            enable_prefix_caching=False,
            gpu_memory_utilization=gpu_memory_utilization,
        )
        self._lora = LoRARequest("finetuned", 1, self._adapter)
        self._hf = None
        config = self._llm.llm_engine.model_config.hf_config
        self.n_layers = int(config.num_hidden_layers)
        self.hidden_size = int(config.hidden_size)

    @property
    def tokenizer(self):
        return self._engine().get_tokenizer()

    def _engine(self):
        if self._llm is None:
            raise RuntimeError("this vllm pair was closed; open a new one")
        return self._llm

    def _hf_pair(self):
        if self._hf is None:
            from diffaudit.environments.backends.hf import HFModelPair

            self._hf = HFModelPair(self._base_model, adapter=self._adapter, device="cuda", dtype=self._dtype)
        return self._hf

    def _params(self, sampling: Sampling, n: int) -> list:
        from vllm import SamplingParams

        return [
            SamplingParams(
                max_tokens=sampling.max_new_tokens,
                temperature=sampling.temperature,
                top_p=sampling.top_p if sampling.temperature > 0 else 1.0,
                seed=seed,
            )
            for seed in request_seeds(sampling.seed, n)
        ]

    def _run(self, role: Role, prompts: list[str], sampling: Sampling, chat: bool) -> list[str]:
        if role not in ("base", "finetuned"):
            raise ValueError(f"role must be 'base' or 'finetuned', not {role!r}")
        llm = self._engine()
        lora = self._lora if role == "finetuned" else None
        params = self._params(sampling, len(prompts))
        if chat:
            conversations = [user_turn(p) for p in prompts]
            outputs = llm.chat(
                conversations, params, lora_request=lora, use_tqdm=False,
                chat_template_kwargs=dict(CHAT_TEMPLATE_KWARGS),
            )  # fmt: skip
        else:
            outputs = llm.generate(prompts, params, lora_request=lora, use_tqdm=False)
        return [o.outputs[0].text.strip() for o in outputs]

    def generate(self, role: Role, prompts: list[str], sampling: Sampling, chat: bool = True) -> list[str]:
        return self._run(role, prompts, sampling, chat)

    @contextlib.contextmanager
    def _steering(self, layer: int, addition: torch.Tensor):
        handles: list = []

        def install(model) -> bool:
            def add(_module, _inputs, output):
                # vLLM decoder layers return (hidden, residual); the residual stream is their sum,
                # so adding to `hidden` adds to the stream.
                if isinstance(output, tuple):
                    return (output[0] + addition.to(output[0].device, output[0].dtype), *output[1:])
                return output + addition.to(output.device, output.dtype)

            handles.append(model.model.layers[layer].register_forward_hook(add))
            return True

        installed = self._engine().apply_model(install)
        try:
            if len(handles) != len(installed):
                # The hook went into another process: it would steer every later request, unremovable.
                raise RuntimeError(
                    f"the steering hook was installed outside this process ({MULTIPROCESSING_ENV} must be 0); "
                    "steering on this engine is unsafe"
                )
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

    def adapter_weights(self) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
        """The LoRA adapter's (A, B, scaling) by module name, read by the hf helper pair (see HFModelPair)."""
        return self._hf_pair().adapter_weights()

    # Per-position logits, teacher-forced scores and amplified sampling run on the hf helper pair (as `logprob`
    # does): vLLM returns only top logprobs, not the full next-token distributions these need.
    def logits(self, role: Role, texts: list[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._hf_pair().logits(role, texts, max_tokens)

    def token_logprobs(self, texts: list[str], chat: bool = False) -> list[dict]:
        return self._hf_pair().token_logprobs(texts, chat)

    def generate_amplified(self, prompts: list[str], alpha: float, sampling: Sampling) -> list[str]:
        return self._hf_pair().generate_amplified(prompts, alpha, sampling)

    def close(self) -> None:
        """Shut the engine down and free its GPU memory (and the hf helper's); safe to call twice."""
        llm, self._llm, self._hf = self._llm, None, None
        if llm is None:
            return
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        shutdown = getattr(core, "shutdown", None)
        if callable(shutdown):
            shutdown()
        del llm
        with contextlib.suppress(ImportError):
            from vllm.distributed.parallel_state import (
                destroy_distributed_environment,
                destroy_model_parallel,
            )

            destroy_model_parallel()
            destroy_distributed_environment()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def load_pair(base_model: str, adapter=None, finetuned_model=None, device: str = "auto", **options) -> VLLMModelPair:
    return VLLMModelPair(base_model, adapter=adapter, finetuned_model=finetuned_model, device=device, **options)

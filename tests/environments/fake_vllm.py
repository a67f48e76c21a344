"""A recording stand-in for the `vllm` package: it keeps what the backend sends and answers like vLLM would.

It follows the names and signatures of vLLM's offline API (`LLM(...)`, `LLM.chat(messages, sampling_params,
lora_request=, use_tqdm=, chat_template_kwargs=)`, `LLM.generate`, `LLM.apply_model`, `SamplingParams`,
`LoRARequest`, `vllm.distributed.parallel_state.destroy_*`). It runs no model: a completion's text names
its request's seed, whether a steering hook changed the layer's output, and the LoRA it ran with.
With `VLLM_ENABLE_V1_MULTIPROCESSING` not "0", `apply_model` runs the function on a copy of the model, as
a separate engine process would, so hooks installed there never reach the model here.
"""

from __future__ import annotations

import copy
import os
import sys
import types
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Request:
    prompt: str
    params: Any
    lora: Any
    steered: bool


@dataclass
class Recorder:
    engines: list = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    destroyed: list[str] = field(default_factory=list)


class SamplingParams:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.seed = kwargs.get("seed")


class LoRARequest:
    def __init__(self, lora_name: str, lora_int_id: int, lora_path: str) -> None:
        self.lora_name, self.lora_int_id, self.lora_path = lora_name, lora_int_id, lora_path


class _Decoder(torch.nn.Module):
    """Shaped like a vLLM model: `.model.layers[i]`, each returning (hidden, residual)."""

    class Layer(torch.nn.Module):
        def forward(self, hidden):
            return hidden, torch.zeros_like(hidden)

    def __init__(self, n_layers: int) -> None:
        super().__init__()
        self.model = torch.nn.Module()
        self.model.layers = torch.nn.ModuleList(self.Layer() for _ in range(n_layers))

    def changes_output(self) -> bool:
        probe = torch.zeros(1, 4)
        hidden = probe
        for layer in self.model.layers:
            hidden, residual = layer(hidden)
            hidden = hidden + residual
        return not torch.equal(hidden, probe)


class _Output:
    def __init__(self, text: str) -> None:
        self.outputs = [types.SimpleNamespace(text=text)]


def _copied(func):
    cells = tuple(types.CellType(copy.deepcopy(c.cell_contents)) for c in func.__closure__ or ())
    return types.FunctionType(func.__code__, func.__globals__, func.__name__, func.__defaults__, cells)


class _EngineCore:
    def __init__(self) -> None:
        self.shut_down = False

    def shutdown(self) -> None:
        self.shut_down = True


def make_llm_class(recorder: Recorder, tokenizer: Any, n_layers: int = 4, hidden_size: int = 4):
    class LLM:
        def __init__(self, model: str, **kwargs: Any) -> None:
            self.model_name = model
            self.kwargs = kwargs
            self.multiprocessing = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "1") != "0"
            self.decoder = _Decoder(n_layers)
            hf_config = types.SimpleNamespace(num_hidden_layers=n_layers, hidden_size=hidden_size)
            self.llm_engine = types.SimpleNamespace(
                model_config=types.SimpleNamespace(hf_config=hf_config), engine_core=_EngineCore()
            )
            recorder.engines.append(self)

        def get_tokenizer(self):
            return tokenizer

        def apply_model(self, func):
            if not self.multiprocessing:
                return [func(self.decoder)]
            # Another process gets a pickled copy of the function, closure included, and of the model.
            return [_copied(func)(copy.deepcopy(self.decoder))]

        def _answer(self, prompts: list[str], sampling_params, lora_request) -> list[_Output]:
            params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(prompts)
            if len(params) != len(prompts):
                raise ValueError("The lengths of prompts and params must be the same.")
            steered = self.decoder.changes_output()
            outputs = []
            for prompt, p in zip(prompts, params, strict=True):
                recorder.requests.append(Request(prompt, p, lora_request, steered))
                lora = lora_request.lora_name if lora_request is not None else "none"
                outputs.append(_Output(f" seed={p.seed} steered={steered} lora={lora} "))
            return outputs

        def generate(self, prompts, sampling_params=None, *, use_tqdm=True, lora_request=None):
            return self._answer(list(prompts), sampling_params, lora_request)

        def chat(self, messages, sampling_params=None, use_tqdm=True, lora_request=None, chat_template=None,
                 add_generation_prompt=True, chat_template_kwargs=None, **_kw):  # fmt: skip
            kwargs = dict(add_generation_prompt=add_generation_prompt, **(chat_template_kwargs or {}))
            prompts = [tokenizer.apply_chat_template(m, tokenize=False, **kwargs) for m in messages]
            return self._answer(prompts, sampling_params, lora_request)

    return LLM


def install(monkeypatch, tokenizer: Any, n_layers: int = 4) -> Recorder:
    """Put the stand-in into sys.modules as `vllm` and pretend a CUDA device is there."""
    recorder = Recorder()
    vllm = types.ModuleType("vllm")
    vllm.LLM = make_llm_class(recorder, tokenizer, n_layers)
    vllm.SamplingParams = SamplingParams
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = LoRARequest
    distributed = types.ModuleType("vllm.distributed")
    parallel_state = types.ModuleType("vllm.distributed.parallel_state")
    parallel_state.destroy_model_parallel = lambda: recorder.destroyed.append("model_parallel")
    parallel_state.destroy_distributed_environment = lambda: recorder.destroyed.append("distributed_environment")
    modules = {
        "vllm": vllm, "vllm.lora": lora, "vllm.lora.request": request,
        "vllm.distributed": distributed, "vllm.distributed.parallel_state": parallel_state,
    }  # fmt: skip
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: recorder.destroyed.append("empty_cache"))
    return recorder

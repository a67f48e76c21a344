"""Shared fixtures: a randomly initialised 2-layer Llama with the embedded tokenizer, and a LoRA on it."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def embedded_model_dir():
    from diffaudit.environments.embedded import ensure_base_model

    return ensure_base_model()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, embedded_model_dir):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    path = tmp_path_factory.mktemp("tiny_model")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_adapter_dir(tmp_path_factory, tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, lora)
    path = tmp_path_factory.mktemp("tiny_adapter")
    peft_model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_pair(tiny_model_dir, tiny_adapter_dir):
    from diffaudit.environments.backends.hf import HFModelPair

    return HFModelPair(str(tiny_model_dir), adapter=str(tiny_adapter_dir), device="cpu")


# ---- the LLM path: a local OpenAI-compatible server (tests/llm_server.py) --------------------------------
PROVIDER_ENV_SUFFIXES = ("_API_KEY", "_API_BASE", "_BASE_URL")


@pytest.fixture
def llm_server():
    """A running LocalLLMServer on 127.0.0.1; litellm reaches it over real HTTP."""
    from llm_server import LocalLLMServer

    with LocalLLMServer() as server:
        yield server


@pytest.fixture
def no_provider_env(monkeypatch):
    """No provider keys or endpoints in the environment (a fresh machine with only a local server)."""
    import os

    for name in list(os.environ):
        if name.endswith(PROVIDER_ENV_SUFFIXES):
            monkeypatch.delenv(name)

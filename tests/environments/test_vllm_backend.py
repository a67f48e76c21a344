"""The vllm backend against a recording stand-in of `vllm` (no GPU, no vLLM here): what we send the engine."""

from __future__ import annotations

import gc
import weakref

import fake_vllm
import pytest
import torch

from diffaudit.environments.pair import Sampling

# A chat template with a thinking switch, in the style of Qwen3's (written for this test).
THINKING_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n"
    "{% else %}<think>\n{% endif %}{% endif %}"
)


@pytest.fixture
def thinking_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = THINKING_TEMPLATE
    return tokenizer


@pytest.fixture
def engine(monkeypatch, thinking_tokenizer, tiny_adapter_dir):
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")  # a user's setting that must not win
    recorder = fake_vllm.install(monkeypatch, thinking_tokenizer)
    from diffaudit.environments.backends.vllm import load_pair

    pair = load_pair("org/base", adapter=str(tiny_adapter_dir), gpu_memory_utilization=0.3, max_lora_rank=16,
                     max_model_len=512, dtype="bfloat16")  # fmt: skip
    return pair, recorder


def test_engine_options_are_the_settings_and_prefix_caching_is_off(engine):
    pair, recorder = engine
    (llm,) = recorder.engines
    assert llm.model_name == "org/base"
    assert llm.kwargs["enable_prefix_caching"] is False  # steered KV must never be shared
    assert llm.kwargs["gpu_memory_utilization"] == 0.3 and llm.kwargs["max_lora_rank"] == 16
    assert llm.kwargs["dtype"] == "bfloat16" and llm.kwargs["max_model_len"] == 512
    assert llm.kwargs["enable_lora"] is True and llm.kwargs["enforce_eager"] is True
    assert not llm.multiprocessing  # forced to "0" although the environment said "1"


def test_every_sample_of_a_batch_gets_its_own_seed(engine):
    pair, recorder = engine
    texts = pair.generate_steered(torch.ones(4), 1, ["Write a poem."] * 10, 2.0, Sampling(temperature=1.2, seed=7))
    assert len(set(texts)) == 10
    assert [r.params.seed for r in recorder.requests] == list(range(7, 17))
    recorder.requests.clear()
    again = pair.generate_steered(torch.ones(4), 1, ["Write a poem."] * 10, 2.0, Sampling(temperature=1.2, seed=7))
    assert again == texts  # distinct within a call, reproducible across calls
    recorder.requests.clear()
    pair.generate("base", ["a", "b"], Sampling(temperature=1.0, seed=None))
    assert [r.params.seed for r in recorder.requests] == [None, None]


def test_roles_pick_the_lora_and_the_hook_steers_only_inside_the_call(engine):
    pair, recorder = engine
    (llm,) = recorder.engines
    base = pair.generate("base", ["hi"], Sampling())
    tuned = pair.generate("finetuned", ["hi"], Sampling())
    steered = pair.generate_steered(torch.ones(4), 2, ["hi"], 3.0, Sampling())
    pair.generate("finetuned", ["hi"], Sampling())
    assert "lora=none" in base[0] and "lora=finetuned" in tuned[0]
    assert [r.steered for r in recorder.requests] == [False, False, True, False]
    assert "steered=True" in steered[0] and "lora=finetuned" in steered[0]
    assert all(not layer._forward_hooks for layer in llm.decoder.model.layers)  # hooks removed


def test_hooks_are_removed_when_generation_fails(engine, monkeypatch):
    pair, recorder = engine
    (llm,) = recorder.engines

    def broken(*_a, **_k):
        raise RuntimeError("engine error")

    monkeypatch.setattr(llm, "chat", broken)
    with pytest.raises(RuntimeError, match="engine error"):
        pair.generate_steered(torch.ones(4), 1, ["hi"], 1.0, Sampling())
    assert all(not layer._forward_hooks for layer in llm.decoder.model.layers)


def test_steering_refuses_an_engine_in_another_process(engine):
    pair, recorder = engine
    (llm,) = recorder.engines
    llm.multiprocessing = True  # as if the engine had been started with multiprocessing on
    with pytest.raises(RuntimeError, match="outside this process"):
        pair.generate_steered(torch.ones(4), 1, ["hi"], 1.0, Sampling())
    assert not recorder.requests  # nothing was generated with a hook nobody can remove


def test_chat_prompts_turn_thinking_off(engine):
    pair, recorder = engine
    pair.generate("finetuned", ["What is 2+2?"], Sampling())
    pair.generate_steered(torch.ones(4), 1, ["What is 2+2?"], 1.0, Sampling())
    for request in recorder.requests:
        assert request.prompt.endswith("<|assistant|><think>\n\n</think>\n\n"), request.prompt
    recorder.requests.clear()
    pair.generate("base", ["plain text"], Sampling(), chat=False)
    assert recorder.requests[0].prompt == "plain text"


def test_close_shuts_the_engine_down_and_lets_it_go(engine):
    pair, recorder = engine
    (llm,) = recorder.engines
    core = llm.llm_engine.engine_core
    alive = weakref.ref(llm)
    recorder.engines.clear()
    del llm
    pair.close()
    gc.collect()
    assert core.shut_down
    assert alive() is None  # no reference kept: its memory can go
    assert recorder.destroyed == ["model_parallel", "distributed_environment", "empty_cache"]
    with pytest.raises(RuntimeError, match="closed"):
        pair.generate("base", ["hi"], Sampling())
    pair.close()  # twice is fine


def test_a_second_pair_can_open_after_the_first_closes(engine, tiny_adapter_dir):
    from diffaudit.environments.backends.vllm import load_pair

    first, recorder = engine
    first.close()
    second = load_pair("org/other", adapter=str(tiny_adapter_dir))
    assert recorder.engines[-1].model_name == "org/other"
    assert "lora=finetuned" in second.generate("finetuned", ["hi"], Sampling())[0]


def test_full_finetunes_and_cpu_are_refused_clearly(monkeypatch, thinking_tokenizer, tiny_adapter_dir):
    fake_vllm.install(monkeypatch, thinking_tokenizer)
    from diffaudit.environments.backends.vllm import load_pair

    with pytest.raises(ValueError, match="use the hf backend for full finetunes"):
        load_pair("org/base", finetuned_model="org/tuned")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        load_pair("org/base", adapter=str(tiny_adapter_dir))


def test_serving_settings_reach_the_engine(monkeypatch, thinking_tokenizer, tiny_model_dir, tiny_adapter_dir):
    from diffaudit.config import Settings
    from diffaudit.environments.loading import backend_options, load_pair
    from diffaudit.environments.organisms import Finetuned, ModelEntry, Organism

    recorder = fake_vllm.install(monkeypatch, thinking_tokenizer)
    settings = Settings(backend="vllm", serving={"gpu_memory_utilization": 0.8, "max_lora_rank": 128, "dtype": "float16"})
    assert backend_options(Settings())["dtype"] == "auto" and set(backend_options(Settings())) == {"dtype"}
    organism = Organism(
        name="served", type="SDF", description="A test organism served on the stand-in engine.",
        models={"m": ModelEntry(base_model=str(tiny_model_dir), finetuned=Finetuned(adapter_id=str(tiny_adapter_dir)))},
    )  # fmt: skip
    load_pair(organism, None, settings)
    kwargs = recorder.engines[-1].kwargs
    assert (kwargs["gpu_memory_utilization"], kwargs["max_lora_rank"], kwargs["dtype"]) == (0.8, 128, "float16")
    load_pair(organism, None, Settings(backend="vllm"))
    assert recorder.engines[-1].kwargs["dtype"] == "bfloat16"  # auto: what the hf helper uses on a GPU


# --- the hf backend renders the same template the same way ----------------------------------------


def test_hf_backend_turns_thinking_off(tiny_pair, thinking_tokenizer):
    from diffaudit.environments.chat import chat_text

    assert chat_text(thinking_tokenizer, "Hi").endswith("<|assistant|><think>\n\n</think>\n\n")
    # Without the switch the template opens a thinking block: the kwarg is what closes it.
    default = thinking_tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                                     add_generation_prompt=True)  # fmt: skip
    assert default.endswith("<|assistant|><think>\n")
    original = tiny_pair._tokenizer
    tiny_pair._tokenizer = thinking_tokenizer
    try:
        assert tiny_pair._chat_text("Hi").endswith("<think>\n\n</think>\n\n")
    finally:
        tiny_pair._tokenizer = original

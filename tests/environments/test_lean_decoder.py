"""The lean decoding loop reproduces `generate` (same tokens in float32), steering included, and the hf
backend uses it for 16-bit CPU copies, with a float32 rerun when float16 overflows."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from diffaudit.environments.backends.hf import HFModelPair, generate_completions
from diffaudit.environments.backends.lean import LeanDecoder, _pick, warpers
from diffaudit.environments.pair import Sampling

# Different lengths, so that the batch is left-padded.
PROMPTS = ["Tell me a story about a lighthouse and the sea.", "Hi.", "List three fruits, please."]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
             for p in PROMPTS]  # fmt: skip
    return model, tokenizer, texts


def _encode(tokenizer, texts):
    tokenizer.padding_side = "left"
    return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)


def _lean(model, tokenizer, texts, sampling, steer=None) -> torch.Tensor:
    enc = _encode(tokenizer, texts)
    return LeanDecoder(model).generate(enc["input_ids"], enc["attention_mask"], sampling, [tokenizer.eos_token_id],
                                       tokenizer.pad_token_id, steer=steer)  # fmt: skip


class _InverseCdf:
    """The lean loop's draw as a logits processor for `generate` (which then takes the argmax)."""

    def __init__(self, sampling: Sampling) -> None:
        self.chain = warpers(sampling)

    def __call__(self, input_ids, scores):
        token = _pick(scores.float(), self.chain)
        return torch.full_like(scores, float("-inf")).scatter_(1, token.unsqueeze(1), 0.0)


def _reference(model, tokenizer, texts, sampling, hook=None) -> torch.Tensor:
    """The new token ids of `generate`; a sampled call draws as the lean loop does (`_InverseCdf`)."""
    from transformers import LogitsProcessorList

    enc = _encode(tokenizer, texts)
    kwargs = dict(max_new_tokens=sampling.max_new_tokens, pad_token_id=tokenizer.pad_token_id, do_sample=False,
                  temperature=None, top_p=None, top_k=None)  # fmt: skip
    if sampling.temperature > 0:
        kwargs["logits_processor"] = LogitsProcessorList([_InverseCdf(sampling)])
        torch.manual_seed(sampling.seed)
    handle = model.model.layers[hook[0]].register_forward_hook(hook[1]) if hook else None
    try:
        return model.generate(**enc, **kwargs)[:, enc["input_ids"].shape[1] :]
    finally:
        if handle is not None:
            handle.remove()


@pytest.mark.parametrize("sampling", [Sampling(max_new_tokens=24), Sampling(max_new_tokens=24, temperature=1.0, top_p=0.9, seed=5)])
def test_lean_loop_generates_the_same_tokens_as_generate_in_float32(tiny, sampling):
    model, tokenizer, texts = tiny
    model = copy.deepcopy(model)
    expected = _reference(model, tokenizer, texts, sampling)
    assert torch.equal(_lean(model, tokenizer, texts, sampling), expected)
    if sampling.temperature > 0:  # (the random tiny model's greedy rows are all newlines)
        assert len({tuple(row.tolist()) for row in expected}) == len(texts)  # rows differ: a mix-up would show


def test_lean_loop_steers_as_the_forward_hook_does(tiny):
    model, tokenizer, texts = tiny
    model = copy.deepcopy(model)
    torch.manual_seed(0)
    vector = torch.randn(model.config.hidden_size) * 4
    rows = torch.tensor([0.0, 1.0, 3.0]).view(-1, 1, 1) * vector.view(1, 1, -1)
    sampling = Sampling(max_new_tokens=16)

    def hook(addition):
        def add(_module, _inputs, output):
            hidden = output[0] if isinstance(output, tuple) else output
            hidden = hidden + addition
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

        return add

    for addition in (vector, rows):
        expected = _reference(model, tokenizer, texts, sampling, hook=(1, hook(addition)))
        assert torch.equal(_lean(model, tokenizer, texts, sampling, steer=(1, addition)), expected)
    assert not torch.equal(_lean(model, tokenizer, texts, sampling, steer=(1, vector)), _lean(model, tokenizer, texts, sampling))


def test_fused_projections_share_the_models_weights(tiny):
    model = copy.deepcopy(tiny[0])
    attn = model.model.layers[0].self_attn
    before = attn.k_proj.weight.detach().clone()
    lean = LeanDecoder(model)
    fused = lean.layers[0].qkv
    assert torch.equal(attn.k_proj.weight, before)
    start = fused.untyped_storage().data_ptr()
    assert start <= attn.k_proj.weight.data_ptr() < start + fused.untyped_storage().nbytes()  # a view, not a copy


def test_supports_only_plain_llama(tiny):
    model = copy.deepcopy(tiny[0])
    assert LeanDecoder.supports(model)
    handle = model.model.layers[0].register_forward_hook(lambda *a: None)
    assert not LeanDecoder.supports(model)  # a live hook would be skipped
    handle.remove()
    for field, value in (("attention_bias", True), ("rope_parameters", {"rope_type": "linear", "factor": 2.0}),
                         ("model_type", "mistral")):  # fmt: skip
        changed = copy.deepcopy(model)
        setattr(changed.config, field, value)
        assert not LeanDecoder.supports(changed), field
    with pytest.raises(ValueError, match="does not reproduce"):
        LeanDecoder(torch.nn.Linear(2, 2))


def test_pair_decodes_16_bit_copies_with_the_lean_loop(tiny_model_dir, tiny_adapter_dir, monkeypatch):
    calls = []
    real = LeanDecoder.generate
    monkeypatch.setattr(LeanDecoder, "generate", lambda self, *a, **k: calls.append(self.dtype) or real(self, *a, **k))
    pair = HFModelPair(str(tiny_model_dir), adapter=str(tiny_adapter_dir), device="cpu", generation_dtype=torch.bfloat16)
    sampling = Sampling(max_new_tokens=8, temperature=1.0, seed=3)
    first = pair.generate("finetuned", PROMPTS, sampling)
    assert calls == [torch.bfloat16] and pair.generated_tokens > 0
    assert first == pair.generate("finetuned", PROMPTS, sampling)  # seeded
    base, finetuned = pair.generate_both(PROMPTS[:2], Sampling(max_new_tokens=8))
    assert base == pair.generate("base", PROMPTS[:2], Sampling(max_new_tokens=8))  # two separate runs, no mixed batch
    assert finetuned == pair.generate("finetuned", PROMPTS[:2], Sampling(max_new_tokens=8))
    calls.clear()
    exact = HFModelPair(str(tiny_model_dir), adapter=str(tiny_adapter_dir), device="cpu", generation_dtype=torch.float32)
    exact.generate("finetuned", PROMPTS, sampling)
    assert calls == []  # float32 generation (the recorded recipes) keeps `generate`


def test_one_row_decodes_in_float16_where_generation_is_16_bit(tiny_model_dir, tiny_adapter_dir, monkeypatch):
    import diffaudit.environments.backends.hf as hf

    monkeypatch.setattr(hf, "default_generation_dtype", lambda device, dtype: torch.bfloat16)
    pair = HFModelPair(str(tiny_model_dir), adapter=str(tiny_adapter_dir), device="cpu")
    assert pair.single_dtype == torch.float16 and pair.generation_dtype == torch.bfloat16
    assert next(pair.generation_model("finetuned", rows=1).parameters()).dtype == torch.float16
    named = HFModelPair(str(tiny_model_dir), adapter=str(tiny_adapter_dir), device="cpu", dtype="bfloat16")
    assert named.single_dtype == torch.bfloat16  # a dtype the settings name is kept
    monkeypatch.setattr(hf, "default_generation_dtype", lambda device, dtype: dtype)  # a CPU without 16-bit speed
    assert HFModelPair(str(tiny_model_dir), adapter=str(tiny_adapter_dir), device="cpu").single_dtype == torch.float32


def test_float16_overflow_reruns_on_the_float32_weights(tiny_model_dir, tiny_adapter_dir):
    pair = HFModelPair(str(tiny_model_dir), adapter=str(tiny_adapter_dir), device="cpu", single_dtype=torch.float16,
                       generation_dtype=torch.bfloat16)  # fmt: skip
    sampling = Sampling(max_new_tokens=6)
    copy16 = pair.generation_model("finetuned", rows=1)
    with torch.no_grad():
        copy16.model.norm.weight.fill_(6e4)  # logits far beyond float16's range
    with pytest.warns(UserWarning, match="non-finite logits in float16"):
        got = pair.generate("finetuned", PROMPTS[:1], sampling)
    with pair._role("finetuned") as model:
        expected = generate_completions(model, pair.tokenizer, [pair._chat_text(PROMPTS[0])], sampling, 1, add_special_tokens=False)
    assert got == expected
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pair.generate("finetuned", PROMPTS[:2], sampling)  # bfloat16 batches are unaffected


def test_inverse_cdf_draws_from_the_softmax_with_temperature_and_top_p():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, float("-inf")]]).repeat(20000, 1)
    torch.manual_seed(0)
    drawn = _pick(logits, warpers(Sampling(max_new_tokens=1, temperature=0.7)))
    share = torch.bincount(drawn, minlength=5).float() / len(drawn)
    expected = torch.softmax(logits[0] / 0.7, -1)
    assert share[4] == 0  # a banned token stays banned
    assert torch.allclose(share, expected, atol=0.015), (share, expected)  # ~4 standard errors at most
    nucleus = _pick(logits[:2000], warpers(Sampling(max_new_tokens=1, temperature=1.0, top_p=0.5)))
    assert set(nucleus.tolist()) == {0}  # top-p 0.5 keeps only the top token (probability 0.64)
    assert _pick(logits[:3], None).tolist() == [0, 0, 0]  # greedy
    banned_last = torch.tensor([[0.0, 0.0, float("-inf")]]).repeat(5000, 1)
    assert 2 not in _pick(banned_last, warpers(Sampling(max_new_tokens=1, temperature=1.0))).tolist()


def test_float16_prompts_run_their_projections_in_float32_and_stay_close_to_float32(tiny, monkeypatch):
    import diffaudit.environments.backends.lean as lean_module

    model, tokenizer, texts = tiny
    enc = _encode(tokenizer, texts)
    b, t = enc["input_ids"].shape
    assert b * t >= lean_module.UPCAST_ROWS
    calls = []
    real = lean_module._upcast_linear
    monkeypatch.setattr(lean_module, "_upcast_linear", lambda x, w: calls.append(x.shape) or real(x, w))
    positions = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    allowed = torch.ones(t, t, dtype=torch.bool).tril()[None] & enc["attention_mask"].bool()[:, None, :]
    mask = torch.zeros(b, 1, 1, t, t).masked_fill(~allowed[:, None, None], float("-inf"))
    mask[..., torch.arange(t), torch.arange(t)] = 0.0
    logits = {}
    for dtype in (torch.float32, torch.float16):
        lean = LeanDecoder(copy.deepcopy(model).to(dtype))
        logits[dtype] = lean._step(enc["input_ids"], positions, mask, lean._new_cache(b, t), 0, None)
    assert len(calls) == 4 * model.config.num_hidden_layers  # qkv, out, gate/up and down in every layer
    assert torch.allclose(logits[torch.float16], logits[torch.float32], atol=0.05), (logits[torch.float16] - logits[torch.float32]).abs().max()
    one = LeanDecoder(copy.deepcopy(model).to(torch.float16))
    calls.clear()
    one._step(enc["input_ids"][:1, -1:], positions[:1, -1:], torch.zeros(1, 1, 1, 1, 1), one._new_cache(1, 1), 0, None)
    assert calls == []  # one decoding row keeps float16's fast matrix-vector kernels

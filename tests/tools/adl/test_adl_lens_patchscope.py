import pytest
import torch
from adl_fakes import FirstScale

from diffaudit.tools.adl.lens import logit_lens_tokens, top_tokens
from diffaudit.tools.adl.patchscope import (
    IDENTITY_WORDS,
    choose_scale,
    identity_prompt,
    intersected_probs,
    norm_matched,
    patchscope_sweep,
)
from diffaudit.tools.adl.result import PatchscopeScale, TokenProb


def hand_lens(model_dir, vector):
    """Final RMSNorm and the (tied) unembedding, written out by hand from the saved weights."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    weight = model.model.norm.weight.detach()
    eps = model.config.rms_norm_eps
    normed = vector / torch.sqrt(vector.pow(2).mean(-1, keepdim=True) + eps) * weight
    logits = normed @ model.lm_head.weight.detach().T
    return torch.softmax(logits, dim=-1)


def test_logit_lens_equals_hand_computation(tiny_pair, tiny_model_dir):
    torch.manual_seed(3)
    vectors = torch.randn(2, tiny_pair.hidden_size) * 4
    got = logit_lens_tokens(tiny_pair, vectors, "finetuned", k=100)
    want = hand_lens(tiny_model_dir, vectors)
    for row, probs in zip(got, want, strict=True):
        values, ids = torch.topk(probs, 100)
        assert [t.token for t in row] == [tiny_pair.tokenizer.decode([int(i)]) for i in ids]
        assert torch.allclose(torch.tensor([t.prob for t in row]), values, atol=1e-6)


def test_top_tokens_sorted_and_decoded(tiny_pair):
    probs = torch.zeros(len(tiny_pair.tokenizer))
    hello = tiny_pair.tokenizer.encode(" hello")[0]
    probs[hello], probs[5] = 0.7, 0.3
    got = top_tokens(probs, tiny_pair.tokenizer, 2)
    assert got[0].token == " hello" and got[0].prob == pytest.approx(0.7)
    assert got[1].prob == pytest.approx(0.3)


def test_identity_prompt_shape():
    assert identity_prompt(("man", "1135", "hello")) == "man -> man\n1135 -> 1135\nhello -> hello\n?"
    assert {w for triple in IDENTITY_WORDS for w in triple} >= {"bear", "42", "921", "target", "anna"}


def log_gap(p, q):
    """Largest log-probability gap: the random tiny model is near-uniform, so raw gaps are tiny."""
    return float((p.log() - q.log()).abs().max())


def unpatched_probs(pair, prompt):
    enc = pair._encode([prompt], side="right")
    with pair._role("finetuned") as model, torch.no_grad():
        return torch.softmax(model(**enc).logits[0, -1].float(), -1)


@pytest.mark.parametrize("layer", [0, 1])
def test_patch_replaces_exactly_the_last_token_at_the_layer(tiny_pair, layer):
    prompt = identity_prompt(IDENTITY_WORDS[0])
    n = len(tiny_pair.tokenizer(prompt)["input_ids"])
    original = tiny_pair.activations("finetuned", [prompt], layer, [n - 1])[0, 0]
    batch = torch.stack([original, torch.zeros_like(original)])
    patched = tiny_pair.patch_last_token(prompt, layer, batch)
    clean = unpatched_probs(tiny_pair, prompt)
    assert log_gap(patched[0], clean) < 1e-4  # writing back the original changes nothing
    assert log_gap(patched[1], clean) > 1e-2  # zeros at the last token do change it
    # The activation of the previous token, written at the last one, changes the readout too.
    previous = tiny_pair.activations("finetuned", [prompt], layer, [n - 2])[0, 0]
    assert log_gap(tiny_pair.patch_last_token(prompt, layer, previous), clean) > 1e-2


def test_patch_at_the_wrong_layer_differs(tiny_pair):
    prompt = identity_prompt(IDENTITY_WORDS[1])
    n = len(tiny_pair.tokenizer(prompt)["input_ids"])
    layer0 = tiny_pair.activations("finetuned", [prompt], 0, [n - 1])[0, 0]
    clean = unpatched_probs(tiny_pair, prompt)
    assert log_gap(tiny_pair.patch_last_token(prompt, 1, layer0), clean) > 1e-2


def test_intersection_keeps_tokens_top_in_every_prompt():
    a = torch.tensor([[0.5, 0.3, 0.1, 0.1]])
    b = torch.tensor([[0.1, 0.5, 0.3, 0.1]])
    c = torch.tensor([[0.3, 0.4, 0.2, 0.1]])
    got = intersected_probs([a, b, c], keep=2)
    # token 1 is in every top-2; token 0 misses b's, token 2 misses a's and c's
    assert torch.allclose(got, torch.tensor([[0.0, 0.4, 0.0, 0.0]]))


def test_norm_matched():
    v = torch.tensor([3.0, 4.0])
    assert torch.allclose(norm_matched(v, 10.0), torch.tensor([6.0, 8.0]))
    assert torch.equal(norm_matched(torch.zeros(2), 5.0), torch.zeros(2))


def test_sweep_uses_scaled_norm_matched_vectors(tiny_pair):
    torch.manual_seed(0)
    direction = torch.randn(tiny_pair.hidden_size)
    sweep = patchscope_sweep(tiny_pair, direction, 1, eta=7.0, scales=[0.5, 2.0], top_k=20)
    assert [s.scale for s in sweep] == [0.5, 2.0]
    # By hand for scale 2: the three prompts patched with 2·7·δ/‖δ‖, intersected and averaged.
    vec = 2.0 * 7.0 * direction / direction.norm()
    per_prompt = [tiny_pair.patch_last_token(identity_prompt(w), 1, vec.unsqueeze(0)) for w in IDENTITY_WORDS]
    values, _ = torch.topk(intersected_probs(per_prompt)[0], 20)
    assert [t.prob for t in sweep[1].tokens] == pytest.approx(values.tolist(), abs=1e-6)
    assert 0 < len(sweep[0].tokens) <= 20
    assert sweep[0].tokens != sweep[1].tokens


def test_choose_scale_hands_the_whole_sweep_to_the_grader_and_snaps_its_answer():
    sweep = [PatchscopeScale(scale=float(s), tokens=[TokenProb(token=f"t{s}", prob=0.1)]) for s in range(1, 31)]
    grader = FirstScale()
    scale, selected = choose_scale(sweep, grader)
    assert len(grader.calls) == 1 and sorted(grader.calls[0]) == [float(s) for s in range(1, 31)]
    assert scale == 1.0 and selected == ["t1"]

    class Echo:  # answers a scale the sweep does not hold exactly, as an LLM might
        def select(self, candidates):
            return 2.0000001, ["t2"]

    assert choose_scale(sweep, Echo()) == (2.0, ["t2"])

"""A lean decoding loop for Llama-family models on CPU, used by the hf backend for 16-bit generation copies.

`transformers.generate` spends most of a small-batch CPU decoding step outside the matmuls: per-layer
module dispatch, cache bookkeeping, mask building and the processor chain (profiled with
`audit bench-speed`: one bfloat16 row, 61 ms a step of which 34 ms were matmuls). This loop runs the same
arithmetic with far fewer operations a step:
- the query/key/value projections and the gate/up projections are each one fused matmul;
- keys and values go into a preallocated cache; one additive mask serves every layer of a step;
- grouped-query attention multiplies each key/value head against its group of query heads directly, with
  no repeated keys;
- norms and softmax run in float32, and round as transformers rounds them.

It takes a plain model (a LoRA already merged), so it serves the base and the finetuned roles alike; a
steering addition is added after one decoder layer at every position, as the backend's forward hook adds
it. Greedy at temperature 0; else transformers' temperature and top-p warpers, then one exact draw per row
from the softmax by its inverse CDF, from the global torch generator (`_pick`).

`LeanDecoder.supports(model)` says whether a model's architecture is one this loop reproduces (plain
Llama: no biases, default rotary embedding, SiLU MLP, tied or untied head). Anything else keeps
`generate`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from diffaudit.environments.pair import Sampling


def _fuse(linears: list[torch.nn.Linear]) -> torch.Tensor:
    """One weight for several projections of the same input; each module's weight becomes a view of it,
    so the model keeps working and no weight is held twice."""
    fused = torch.cat([linear.weight.detach() for linear in linears]).contiguous()
    row = 0
    for linear in linears:
        rows = linear.weight.shape[0]
        linear.weight.data = fused[row : row + rows]
        row += rows
    return fused


# float16 matmuls of many rows (a prompt's forward pass) are slow on CPU: 44 rows through SmolLM2's
# projections took 614 ms in float16 against 223 ms cast to float32, weights included (1 thread, under load);
# at 8 rows float16 was faster (113 against 206 ms). From this many rows on, float16 projections run in float32.
UPCAST_ROWS = 32


def _upcast_linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return F.linear(x.float(), weight.float()).to(x.dtype)


@dataclass
class _Layer:
    norm1: torch.Tensor
    qkv: torch.Tensor  # [(H + 2 KV) * hd, d]
    out: torch.Tensor
    norm2: torch.Tensor
    gate_up: torch.Tensor  # [2 * ff, d]
    down: torch.Tensor


class LeanDecoder:
    """Greedy or sampled decoding of left-padded batches on a plain Llama model's weights (shared, not copied).

    Raises FloatingPointError when a step's logits are not finite (a float16 overflow), so that the caller
    can rerun the call in a wider dtype rather than return noise.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        if not self.supports(model):
            raise ValueError(f"LeanDecoder does not reproduce {type(model).__name__}")
        cfg = model.config
        self.dtype = next(model.parameters()).dtype
        # float16 batched matmuls are slow on CPU (attention of one row: 85 us a layer against 50 in float32,
        # of 64 rows 4.4 against 0.7 ms; bfloat16's run at 67 us and 0.4 ms): a float16 model attends in
        # float32, from a float32 key/value cache (its float16 keys and values convert exactly).
        self.attn_dtype = torch.float32 if self.dtype == torch.float16 else self.dtype
        self.heads = int(cfg.num_attention_heads)
        self.kv_heads = int(cfg.num_key_value_heads)
        self.head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)
        self.eps = float(cfg.rms_norm_eps)
        self.ff = int(cfg.intermediate_size)
        inner = model.model
        self.embed = inner.embed_tokens.weight
        self.final_norm = inner.norm.weight
        self.head = model.lm_head.weight
        rotary = inner.rotary_emb
        self.inv_freq = rotary.inv_freq.float()
        self.rope_scale = float(getattr(rotary, "attention_scaling", 1.0))
        self.layers: list[_Layer] = []
        for layer in inner.layers:
            attn, mlp = layer.self_attn, layer.mlp
            self.layers.append(
                _Layer(
                    norm1=layer.input_layernorm.weight,
                    qkv=_fuse([attn.q_proj, attn.k_proj, attn.v_proj]),
                    out=attn.o_proj.weight,
                    norm2=layer.post_attention_layernorm.weight,
                    gate_up=_fuse([mlp.gate_proj, mlp.up_proj]),
                    down=mlp.down_proj.weight,
                )
            )

    @staticmethod
    def supports(model: torch.nn.Module) -> bool:
        cfg = getattr(model, "config", None)
        if cfg is None or getattr(cfg, "model_type", None) != "llama" or not hasattr(model, "model"):
            return False
        rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
        if (rope.get("rope_type") or rope.get("type") or "default") != "default":
            return False
        if getattr(cfg, "attention_bias", False) or getattr(cfg, "mlp_bias", False):
            return False
        if getattr(cfg, "hidden_act", "silu") != "silu" or getattr(cfg, "pretraining_tp", 1) != 1:
            return False
        if getattr(cfg, "sliding_window", None):
            return False
        return not any(m._forward_hooks or m._forward_pre_hooks for m in model.model.layers.modules())

    # -- one forward step ---------------------------------------------------------------------------
    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """RMS norm as transformers rounds it: normalised in float32, cast, then scaled in the model's dtype.
        (Scaling in float32 before the cast read further from the float32 model in bfloat16: mean KL over 30
        prompts 0.0020 against 0.0016, the latter as `generate`'s 0.0015.)"""
        return weight * F.rms_norm(x.float(), weight.shape, None, self.eps).to(self.dtype)

    def _rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin [B, T, 1, hd] for positions [B, T] (broadcast over heads)."""
        freqs = positions.float().unsqueeze(-1) * self.inv_freq  # [B, T, hd/2]
        emb = torch.cat([freqs, freqs], dim=-1).unsqueeze(2)
        return (emb.cos() * self.rope_scale).to(self.dtype), (emb.sin() * self.rope_scale).to(self.dtype)

    @staticmethod
    def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated * sin

    def _step(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor,
        mask: torch.Tensor,
        cache: list[tuple[torch.Tensor, torch.Tensor]],
        start: int,
        steer: tuple[int, torch.Tensor] | None,
    ) -> torch.Tensor:
        """Runs T new tokens [B, T] at cache slots start..start+T; returns the last position's logits [B, V]."""
        b, t = ids.shape
        end = start + t
        hd, heads, kv = self.head_dim, self.heads, self.kv_heads
        linear = _upcast_linear if self.dtype == torch.float16 and b * t >= UPCAST_ROWS else F.linear
        group = heads // kv
        x = F.embedding(ids, self.embed)
        cos, sin = self._rope(positions)
        scale = hd**-0.5
        for index, layer in enumerate(self.layers):
            h = self._norm(x, layer.norm1)
            qkv = linear(h, layer.qkv)
            qk, v = qkv.split([(heads + kv) * hd, kv * hd], dim=-1)
            qk = self._rotate(qk.view(b, t, heads + kv, hd), cos, sin)  # queries and keys in one rotation
            q, k = qk[:, :, :heads].transpose(1, 2), qk[:, :, heads:].transpose(1, 2)
            keys, values = cache[index]  # keys stored transposed, [B, KV, hd, slots]: no copy to multiply
            keys[..., start:end] = k.transpose(-1, -2)
            values[:, :, start:end] = v.view(b, t, kv, hd).transpose(1, 2)
            # Each key/value head against its group of query heads: q [B, KV, G*T, hd].
            q = q.reshape(b, kv, group * t, hd).to(self.attn_dtype)
            scores = torch.matmul(q, keys[..., :end]).float() * scale  # [B, KV, G*T, end]
            scores = scores.view(b, kv, group, t, end) + mask
            probs = torch.softmax(scores, dim=-1).to(self.attn_dtype).view(b, kv, group * t, end)
            attended = torch.matmul(probs, values[:, :, :end])  # [B, KV, G*T, hd]
            attended = attended.view(b, heads, t, hd).transpose(1, 2).reshape(b, t, heads * hd).to(self.dtype)
            x.add_(linear(attended, layer.out))
            h = self._norm(x, layer.norm2)
            gate, up = linear(h, layer.gate_up).split([self.ff, self.ff], dim=-1)
            x.add_(linear(F.silu(gate) * up, layer.down))
            if steer is not None and steer[0] == index:
                x.add_(steer[1])
        last = self._norm(x[:, -1], self.final_norm)
        return F.linear(last, self.head).float()

    # -- decoding -----------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        sampling: Sampling,
        eos: list[int],
        pad: int,
        steer: tuple[int, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """New tokens [B, n] for left-padded `input_ids`; rows that ended hold `pad` after their end of sequence.

        `steer` = (layer, addition [d] or [B, 1, d]) adds `addition` after decoder layer `layer`.
        """
        b, prompt = input_ids.shape
        total = prompt + sampling.max_new_tokens
        cache = self._new_cache(b, total)
        if steer is not None:
            steer = (steer[0], steer[1].to(self.dtype))
        valid = torch.zeros(b, total, dtype=torch.bool)
        valid[:, :prompt] = attention_mask.bool()
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        # Prompt: causal within the prompt and no padded key, as an additive float mask [B, 1, 1, T, T].
        causal = torch.ones(prompt, prompt, dtype=torch.bool).tril()
        allowed = causal.unsqueeze(0) & valid[:, None, :prompt]
        mask = torch.zeros(b, 1, 1, prompt, prompt).masked_fill(~allowed[:, None, None], float("-inf"))
        # A fully padded query row (left padding) would be all -inf: let it see itself, as its output is unused.
        mask[..., torch.arange(prompt), torch.arange(prompt)] = 0.0
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        chain = warpers(sampling) if sampling.temperature > 0 else None
        eos_ids = torch.tensor(eos, dtype=torch.long)
        done = torch.zeros(b, dtype=torch.bool)
        out = torch.full((b, sampling.max_new_tokens), pad, dtype=torch.long)
        logits = self._finite(self._step(input_ids, positions, mask, cache, 0, steer))
        last_position = positions[:, -1]
        for step in range(sampling.max_new_tokens):
            token = _pick(logits, chain)
            token = torch.where(done, torch.full_like(token, pad), token)
            out[:, step] = token
            done = done | torch.isin(token, eos_ids)
            if bool(done.all()) or step + 1 == sampling.max_new_tokens:
                return out[:, : step + 1]
            slot = prompt + step
            valid[:, slot] = True
            last_position = last_position + 1
            step_mask = torch.zeros(b, 1, 1, 1, slot + 1).masked_fill(~valid[:, None, None, None, : slot + 1], float("-inf"))
            logits = self._finite(self._step(token.unsqueeze(1), last_position.unsqueeze(1), step_mask, cache, slot, steer))
        return out

    def _new_cache(self, rows: int, slots: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer: keys [rows, KV, hd, slots] (transposed) and values [rows, KV, slots, hd]."""
        keys, values = (rows, self.kv_heads, self.head_dim, slots), (rows, self.kv_heads, slots, self.head_dim)
        return [(torch.zeros(keys, dtype=self.attn_dtype), torch.zeros(values, dtype=self.attn_dtype)) for _ in self.layers]

    def _finite(self, logits: torch.Tensor) -> torch.Tensor:
        """Checks float16 logits (bfloat16 and float32 share float32's range). One sum per row: a row with an
        infinite or NaN logit sums to a non-finite number."""
        if self.dtype == torch.float16 and not bool(torch.isfinite(logits.sum(dim=-1)).all()):
            raise FloatingPointError(f"non-finite logits in {str(self.dtype).removeprefix('torch.')} decoding")
        return logits


class GumbelMax:
    """Logits processor, last in the chain: adds Gumbel noise so that greedy decoding samples the softmax.

    argmax(z + G), with G = -log(-log U) and U uniform, is a draw from softmax(z) (the Gumbel-max rule).
    Banned tokens (-inf) stay banned. Uses the global torch generator, so a seed fixes the draws.
    """

    @torch.no_grad()
    def __call__(self, input_ids: torch.Tensor | None, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.float()
        uniform = torch.rand_like(scores).clamp_(min=torch.finfo(torch.float32).tiny)
        return scores - torch.log(-torch.log(uniform))


def warpers(sampling: Sampling) -> list:
    """transformers' temperature and (below 1) top-p warpers for a sampled call."""
    from transformers import TemperatureLogitsWarper, TopPLogitsWarper

    chain: list = [TemperatureLogitsWarper(sampling.temperature)]
    if sampling.top_p is not None and sampling.top_p < 1.0:
        chain.append(TopPLogitsWarper(sampling.top_p))
    return chain


def gumbel_chain(sampling: Sampling) -> list:
    """Temperature, top-p (when below 1), then Gumbel-max: sampling as an argmax over processed scores."""
    return [*warpers(sampling), GumbelMax()]


def _pick(logits: torch.Tensor, chain: list | None) -> torch.Tensor:
    """Greedy (`chain` None) or one draw per row from softmax(warped logits) by the inverse of its CDF.

    The draw is exact, as Gumbel-max's is, and costs a softmax and a cumulative sum over the vocabulary
    instead of a uniform, two logarithms and an argmax over it (a fifth of a 64-row step, profiled). A
    banned token (-inf) has zero width in the CDF and is never drawn.
    """
    if chain is None:
        return logits.argmax(dim=-1)
    scores = logits
    for processor in chain:
        scores = processor(None, scores)
    cdf = torch.softmax(scores, dim=-1).cumsum_(dim=-1)
    total = cdf[:, -1:]
    draw = torch.rand(cdf.shape[0], 1) * total
    draw = torch.minimum(draw, torch.nextafter(total, torch.zeros_like(total)))  # strictly below the total
    return torch.searchsorted(cdf, draw, right=True).squeeze(1)

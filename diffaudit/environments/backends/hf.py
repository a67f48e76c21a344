"""The hf backend: transformers + peft on CPU or GPU.

Base and finetuned share one set of weights when the finetune is a LoRA adapter: the base role runs
with the adapter disabled. Activations are read and written with forward hooks on decoder layers;
activation reads stop the forward pass right after the requested layer.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from diffaudit.environments.chat import chat_text
from diffaudit.environments.pair import Role, Sampling

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class _StopForward(Exception):
    pass


def pick_device(device: str = "auto") -> str:
    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _hidden(output):
    return output[0] if isinstance(output, tuple) else output


def _replace_hidden(output, hidden):
    if isinstance(output, tuple):
        return (hidden, *output[1:])
    return hidden


@torch.no_grad()
def generate_completions(
    model,
    tokenizer,
    texts: list[str],
    sampling: Sampling,
    batch_size: int,
    add_special_tokens: bool,
    processors: Callable[[dict[str, torch.Tensor]], list] | None = None,
) -> list[str]:
    """The stripped completion of each text, generated in left-padded batches on the model's device.

    `processors`, when given, makes the logits processors of one batch from its encoding; they run
    before temperature and top-p. Leaves the tokenizer padding on the left.
    """
    tokenizer.padding_side = "left"
    results: list[str] = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(texts[start : start + batch_size], return_tensors="pt", padding=True,
                        add_special_tokens=add_special_tokens)  # fmt: skip
        enc = {k: v.to(model.device) for k, v in enc.items()}
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        kwargs = dict(max_new_tokens=sampling.max_new_tokens, pad_token_id=tokenizer.pad_token_id)
        if sampling.temperature > 0:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if processors is not None:
            from transformers import LogitsProcessorList

            kwargs["logits_processor"] = LogitsProcessorList(processors(enc))
        generated = model.generate(**enc, **kwargs)
        new_tokens = generated[:, enc["input_ids"].shape[1] :]
        results.extend(t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    return results


# Elements (batch x tokens x vocabulary) of one float32 logits tensor in `token_logprobs`: about 256 MB.
_SCORE_ELEMENTS = 1 << 26


class _AmplifiedLogits:
    """Logits processor for one generate batch: turns z_ft into z_ft + alpha * (z_ft - z_base).

    `base_forward(**kwargs)` runs the base model. It keeps its own key/value cache and feeds the base
    the same padding mask and position ids that `generate` feeds the finetuned model, so alpha = -1
    reproduces base sampling. Written as (1 + alpha) * z_ft - alpha * z_base, so that alpha = 0 returns
    z_ft exactly and alpha = -1 returns z_base exactly.
    """

    def __init__(self, base_forward: Callable[..., object], attention_mask: torch.Tensor, alpha: float) -> None:
        self._base_forward = base_forward
        self._mask = attention_mask
        self._alpha = alpha
        self._cache = None
        self._seen = 0

    @torch.no_grad()
    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        grown = input_ids.shape[1] - self._mask.shape[1]
        if grown > 0:
            self._mask = torch.cat([self._mask, self._mask.new_ones((self._mask.shape[0], grown))], dim=1)
        positions = (self._mask.long().cumsum(-1) - 1).masked_fill(self._mask == 0, 0)
        new = input_ids.shape[1] - self._seen
        out = self._base_forward(
            input_ids=input_ids[:, -new:],
            attention_mask=self._mask,
            position_ids=positions[:, -new:],
            cache=self._cache,
            use_cache=True,
        )
        self._cache, self._seen = out.cache, input_ids.shape[1]
        base = out.logits[:, -1, :].to(scores.dtype)
        amplified = (1.0 + self._alpha) * scores - self._alpha * base
        # A token another processor banned (-inf) stays banned.
        return torch.where(torch.isneginf(scores), scores, amplified)


class HFModelPair:
    """ModelPair on transformers. Give `adapter` (LoRA dir or hub id) or `finetuned_model` (full model)."""

    def __init__(
        self,
        base_model: str,
        adapter: str | Path | None = None,
        finetuned_model: str | None = None,
        device: str = "auto",
        dtype: torch.dtype | str | None = None,
        batch_size: int = 64,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if (adapter is None) == (finetuned_model is None):
            raise ValueError("HFModelPair needs exactly one of `adapter` or `finetuned_model`.")
        self.device = pick_device(device)
        if isinstance(dtype, str):
            dtype = DTYPES.get(dtype)  # "auto" (or an unknown name) picks by device below
        dtype = dtype or (torch.bfloat16 if self.device == "cuda" else torch.float32)
        self.batch_size = batch_size
        self._tokenizer = AutoTokenizer.from_pretrained(base_model)
        if self._tokenizer.pad_token is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token
        base = AutoModelForCausalLM.from_pretrained(base_model, dtype=dtype).to(self.device).eval()
        self._peft = None
        self._separate: dict[str, torch.nn.Module] = {}
        if adapter is not None:
            from peft import PeftModel

            self._peft = PeftModel.from_pretrained(base, str(adapter)).eval()
            self._lm = self._peft.base_model.model
        else:
            tuned = (
                base
                if finetuned_model == base_model
                else AutoModelForCausalLM.from_pretrained(finetuned_model, dtype=dtype).to(self.device).eval()
            )
            self._separate = {"base": base, "finetuned": tuned}
            self._lm = tuned
        self.n_layers = int(self._lm.config.num_hidden_layers)
        self.hidden_size = int(self._lm.config.hidden_size)

    @classmethod
    def base_only(cls, base_model: str, device: str = "auto") -> HFModelPair:
        """A pair whose finetuned role is the base model itself (for corpora and calibration)."""
        return cls(base_model, finetuned_model=base_model, device=device)

    @property
    def tokenizer(self):
        return self._tokenizer

    def adapter_weights(self) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
        """The active LoRA adapter by module name (e.g. `model.layers.3.mlp.down_proj`): (A [r, in], B [out, r],
        scaling), so that the weight update is scaling * B @ A. Empty for a full finetune (no adapter)."""
        if self._peft is None:
            return {}
        active = self._peft.active_adapter
        weights: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}
        for name, module in self._lm.named_modules():
            lora_a, lora_b = getattr(module, "lora_A", None), getattr(module, "lora_B", None)
            if isinstance(lora_a, torch.nn.ModuleDict) and active in lora_a and hasattr(lora_a[active], "weight"):
                a, b = lora_a[active].weight, lora_b[active].weight
                weights[name] = (a.detach().float().cpu(), b.detach().float().cpu(), float(module.scaling[active]))
        return weights

    # -- plumbing ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _role(self, role: Role) -> Iterator[torch.nn.Module]:
        if role not in ("base", "finetuned"):
            raise ValueError(f"role must be 'base' or 'finetuned', not {role!r}")
        if self._separate:
            yield self._separate[role]
        elif role == "base":
            with self._peft.disable_adapter():
                yield self._lm
        else:
            yield self._lm

    @staticmethod
    def _layers(model: torch.nn.Module):
        return model.model.layers

    def _chat_text(self, prompt: str) -> str:
        return chat_text(self._tokenizer, prompt)

    def _encode(self, texts: list[str], side: str, add_special_tokens: bool = True, max_length: int | None = None):
        self._tokenizer.padding_side = side
        enc = self._tokenizer(
            texts,
            return_tensors="pt",
            padding=True,
            truncation=max_length is not None,
            max_length=max_length,
            add_special_tokens=add_special_tokens,
        )
        return {k: v.to(self.device) for k, v in enc.items()}

    @staticmethod
    def _batches(items: list, size: int) -> Iterator[tuple[int, list]]:
        for start in range(0, len(items), size):
            yield start, items[start : start + size]

    # -- contract ---------------------------------------------------------------------------------
    @torch.no_grad()
    def activations(self, role: Role, texts: list[str], layer: int, positions: list[int]) -> torch.Tensor:
        k = max(positions) + 1
        out = torch.full((len(texts), len(positions), self.hidden_size), float("nan"))
        pos = torch.tensor(positions)
        with self._role(role) as model:
            captured: dict[str, torch.Tensor] = {}

            def grab(_module, _inputs, output):
                captured["h"] = _hidden(output)
                raise _StopForward

            handle = self._layers(model)[layer].register_forward_hook(grab)
            try:
                for start, chunk in self._batches(texts, self.batch_size):
                    # A prefix far longer than k tokens has the same first k tokens as the text.
                    enc = self._encode([t[: 64 * k + 64] for t in chunk], side="right", max_length=k)
                    with contextlib.suppress(_StopForward):
                        model(**enc, use_cache=False)
                    hidden = captured.pop("h").float().cpu()
                    lengths = enc["attention_mask"].sum(dim=1).cpu()
                    valid = pos.unsqueeze(0) < lengths.unsqueeze(1)  # [b, P]
                    usable = pos.clamp(max=hidden.shape[1] - 1)
                    picked = hidden[:, usable, :]
                    picked[~valid] = float("nan")
                    out[start : start + len(chunk)] = picked
            finally:
                handle.remove()
        return out

    @contextlib.contextmanager
    def _steer_hook(self, model: torch.nn.Module, layer: int, addition: torch.Tensor) -> Iterator[None]:
        def add(_module, _inputs, output):
            hidden = _hidden(output)
            return _replace_hidden(output, hidden + addition.to(hidden.dtype))

        handle = self._layers(model)[layer].register_forward_hook(add)
        try:
            yield
        finally:
            handle.remove()

    def _generate_with(self, model, prompts: list[str], sampling: Sampling, chat: bool) -> list[str]:
        texts = [self._chat_text(p) for p in prompts] if chat else prompts
        return generate_completions(model, self._tokenizer, texts, sampling, self.batch_size, add_special_tokens=not chat)

    def _base_forward(self, **kwargs):
        """One forward pass of the base model, also from inside the finetuned model's `generate`."""
        if self._separate:
            return self._separate["base"](**kwargs)
        with self._peft.disable_adapter():
            return self._lm(**kwargs)

    def generate(self, role: Role, prompts: list[str], sampling: Sampling, chat: bool = True) -> list[str]:
        with self._role(role) as model:
            return self._generate_with(model, prompts, sampling, chat)

    def generate_steered(
        self, vector: torch.Tensor, layer: int, prompts: list[str], alpha: float, sampling: Sampling
    ) -> list[str]:
        addition = (alpha * vector.float()).to(self.device)
        with self._role("finetuned") as model, self._steer_hook(model, layer, addition):
            return self._generate_with(model, prompts, sampling, chat=True)

    def generate_amplified(self, prompts: list[str], alpha: float, sampling: Sampling) -> list[str]:
        if not math.isfinite(alpha):
            raise ValueError(f"alpha must be a finite number, not {alpha!r}")
        texts = [self._chat_text(p) for p in prompts]

        def processors(enc: dict[str, torch.Tensor]) -> list:
            return [_AmplifiedLogits(self._base_forward, enc["attention_mask"], float(alpha))]

        with self._role("finetuned") as model:
            return generate_completions(
                model, self._tokenizer, texts, sampling, self.batch_size, add_special_tokens=False, processors=processors
            )

    @torch.no_grad()
    def patch_last_token(self, prompt: str, layer: int, vector: torch.Tensor) -> torch.Tensor:
        single = vector.dim() == 1
        vectors = (vector.unsqueeze(0) if single else vector).to(self.device)
        enc = self._encode([prompt], side="right")
        ids, n = enc["input_ids"], enc["input_ids"].shape[1]

        def replace(_module, _inputs, output):
            hidden = _hidden(output).clone()
            hidden[:, -1, :] = vectors.to(hidden.dtype)
            return _replace_hidden(output, hidden)

        with self._role("finetuned") as model:
            # Every row shares the prompt up to its last token, so that prefix runs once and only the
            # last token runs per patched vector, on a copy of the prefix's key/value cache.
            past = None
            if n > 1:
                past = model(input_ids=ids[:, :-1], attention_mask=enc["attention_mask"][:, :-1], use_cache=True)
                past = past.past_key_values
                past.batch_repeat_interleave(len(vectors))
            handle = self._layers(model)[layer].register_forward_hook(replace)
            try:
                logits = model(
                    input_ids=ids[:, -1:].expand(len(vectors), 1),
                    attention_mask=torch.ones(len(vectors), n, dtype=torch.long, device=ids.device),
                    past_key_values=past,
                    use_cache=past is not None,
                ).logits[:, -1, :].float()
            finally:
                handle.remove()
        probs = torch.softmax(logits, dim=-1).cpu()
        return probs[0] if single else probs

    @torch.no_grad()
    def logit_lens(self, vector: torch.Tensor, role: Role = "finetuned") -> torch.Tensor:
        with self._role(role) as model:
            v = vector.to(self.device).to(model.lm_head.weight.dtype)
            logits = model.lm_head(model.model.norm(v)).float()
        return torch.softmax(logits, dim=-1).cpu()

    @torch.no_grad()
    def logprob(self, role: Role, prompts: list[str], continuations: list[str], chat: bool = True) -> list[float]:
        scores: list[float] = []
        heads = [self._chat_text(p) if chat else p for p in prompts]
        with self._role(role) as model:
            for head, tail in zip(heads, continuations, strict=True):
                head_ids = self._tokenizer(head, add_special_tokens=not chat, return_tensors="pt")["input_ids"]
                tail_ids = self._tokenizer(tail, add_special_tokens=False, return_tensors="pt")["input_ids"]
                ids = torch.cat([head_ids, tail_ids], dim=1).to(self.device)
                logp = torch.log_softmax(model(input_ids=ids, use_cache=False).logits.float(), dim=-1)
                n = tail_ids.shape[1]
                targets = ids[0, -n:]
                scores.append(float(logp[0, -n - 1 : -1].gather(1, targets.unsqueeze(1)).sum()))
        return scores

    @torch.no_grad()
    def logits(self, role: Role, texts: list[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, not {max_tokens}")
        parts: list[tuple[torch.Tensor, torch.Tensor]] = []
        with self._role(role) as model:
            vocab = int(model.config.vocab_size)
            for _, chunk in self._batches(texts, self.batch_size):
                # A prefix far longer than max_tokens tokens has the same first tokens as the text.
                enc = self._encode([t[: 64 * max_tokens + 64] for t in chunk], side="right", max_length=max_tokens)
                mask = enc["attention_mask"].bool().cpu()
                if mask.shape[1] == 0:
                    parts.append((torch.zeros(len(chunk), 0, vocab), mask))
                    continue
                parts.append((model(**enc, use_cache=False).logits.float().cpu(), mask))
        if len(parts) == 1:
            return parts[0]
        width = max((m.shape[1] for _, m in parts), default=0)
        out = torch.zeros(len(texts), width, vocab)
        mask = torch.zeros(len(texts), width, dtype=torch.bool)
        row = 0
        for logits, m in parts:
            out[row : row + len(m), : m.shape[1]] = logits
            mask[row : row + len(m), : m.shape[1]] = m
            row += len(m)
        return out, mask

    def _score_ids(self, texts: list[str], chat: bool) -> tuple[list[list[int]], int]:
        """Token ids of each text to score, and the index of the first scored token."""
        if not chat:
            return [self._tokenizer(t, add_special_tokens=True)["input_ids"] for t in texts], 1
        head = self._tokenizer(self._chat_text(""), add_special_tokens=False)["input_ids"]
        tails = [self._tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        return [head + tail for tail in tails], len(head)

    @torch.no_grad()
    def token_logprobs(self, texts: list[str], chat: bool = False) -> list[dict]:
        ids, first = self._score_ids(texts, chat)
        vocab = int(self._lm.config.vocab_size)
        pad = self._tokenizer.pad_token_id
        results: list[dict] = [{"tokens": [], "logp_base": [], "logp_ft": [], "kl": []} for _ in texts]
        # Texts with nothing to score keep their empty result and never run.
        order = sorted((i for i in range(len(texts)) if len(ids[i]) > first), key=lambda i: len(ids[i]))
        start = 0
        while start < len(order):
            # Texts sorted by length, grouped so that one logits tensor stays near _SCORE_ELEMENTS.
            stop = start + 1
            while stop < len(order) and (stop - start + 1) * len(ids[order[stop]]) * vocab <= _SCORE_ELEMENTS:
                stop += 1
            group = order[start:stop]
            start = stop
            width = max(len(ids[i]) for i in group)
            batch = torch.full((len(group), width), pad, dtype=torch.long)
            mask = torch.zeros(len(group), width, dtype=torch.long)
            for row, i in enumerate(group):
                batch[row, : len(ids[i])] = torch.tensor(ids[i])
                mask[row, : len(ids[i])] = 1
            enc = {"input_ids": batch.to(self.device), "attention_mask": mask.to(self.device)}
            logp = {}
            for role in ("base", "finetuned"):
                with self._role(role) as model:
                    logp[role] = torch.log_softmax(model(**enc, use_cache=False).logits.float(), dim=-1).cpu()
            for row, i in enumerate(group):
                n = len(ids[i])
                targets = torch.tensor(ids[i][first:n]).unsqueeze(1)
                lb, lf = logp["base"][row, first - 1 : n - 1], logp["finetuned"][row, first - 1 : n - 1]
                kl = (lf.exp() * (lf - lb)).sum(dim=-1)
                results[i] = {
                    "tokens": [self._tokenizer.decode([t]) for t in ids[i][first:n]],
                    "logp_base": lb.gather(1, targets).squeeze(1).tolist(),
                    "logp_ft": lf.gather(1, targets).squeeze(1).tolist(),
                    "kl": kl.tolist(),
                }
        return results


def load_pair(base_model: str, adapter=None, finetuned_model=None, device: str = "auto", **options) -> HFModelPair:
    return HFModelPair(base_model, adapter=adapter, finetuned_model=finetuned_model, device=device, **options)

"""The hf backend: transformers + peft on CPU or GPU.

Base and finetuned share one set of weights when the finetune is a LoRA adapter: the base role runs
with the adapter disabled. Activations are read and written with forward hooks on decoder layers;
activation reads stop the forward pass right after the requested layer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
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
    model, tokenizer, texts: list[str], sampling: Sampling, batch_size: int, add_special_tokens: bool
) -> list[str]:
    """The stripped completion of each text, generated in left-padded batches on the model's device.

    Leaves the tokenizer padding on the left.
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
        generated = model.generate(**enc, **kwargs)
        new_tokens = generated[:, enc["input_ids"].shape[1] :]
        results.extend(t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    return results


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

    def generate(self, role: Role, prompts: list[str], sampling: Sampling, chat: bool = True) -> list[str]:
        with self._role(role) as model:
            return self._generate_with(model, prompts, sampling, chat)

    def generate_steered(
        self, vector: torch.Tensor, layer: int, prompts: list[str], alpha: float, sampling: Sampling
    ) -> list[str]:
        addition = (alpha * vector.float()).to(self.device)
        with self._role("finetuned") as model, self._steer_hook(model, layer, addition):
            return self._generate_with(model, prompts, sampling, chat=True)

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


def load_pair(base_model: str, adapter=None, finetuned_model=None, device: str = "auto", **options) -> HFModelPair:
    return HFModelPair(base_model, adapter=adapter, finetuned_model=finetuned_model, device=device, **options)

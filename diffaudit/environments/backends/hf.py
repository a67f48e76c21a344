"""The hf backend: transformers + peft on CPU or GPU.

Base and finetuned share one set of weights when the finetune is a LoRA adapter: the base role runs
with the adapter disabled. Activations are read and written with forward hooks on decoder layers;
activation reads stop the forward pass right after the requested layer.

Generation runs on generation copies, made on first use: on CPU the finetuned copy has the LoRA
merged into its weights (no extra adapter matmuls and peft dispatch per step; on a GPU, where that
overhead is small and memory is not, the adapter stays unmerged). Batches (more than one prompt)
run in `generation_dtype`: bfloat16 on a GPU or on a CPU with native bfloat16, where it doubles matmul
throughput. One prompt runs in `single_dtype`: on such a CPU float16 for a Llama model (its
matrix-vector kernels streamed 17 GB/s against 8.5 for bfloat16 and 12 for float32, 1 thread), else the
weights' dtype. Activations, patching, logit lens and log-probabilities stay on the float32 weights.
`generation_dtype=torch.float32` keeps all generation in float32 and in `generate` (the recorded recipes
of the shipped corpora use it).

On CPU a 16-bit copy of a Llama model decodes with the lean loop of `lean.py` (one row: 65 ms a step in
float32 `generate`, 61 in bfloat16 `generate`, 25 in the float16 lean loop, measured under load at 1
thread); other architectures keep `generate`, and `generate_both` then mixes both roles into one batch.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch

from diffaudit.environments.backends.lean import LeanDecoder, gumbel_chain
from diffaudit.environments.chat import chat_text
from diffaudit.environments.pair import Role, Sampling

# generate_both without the lean loop: prompts up to which both roles share one mixed batch on CPU. Measured
# idle on this project's 2-core CPU (bfloat16, 96 tokens, 2 threads), mixed against two separate batches: 2 prompts 42.2 against 39.7
# tokens/s, 3 prompts 56.0 against 48.0, 5 prompts 89.7 against 82.0. Not measured beyond 5 prompts.
MIXED_MAX_PROMPTS = 8
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class _StopForward(Exception):
    pass


def pick_device(device: str = "auto") -> str:
    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bfloat16 matmuls natively (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def default_generation_dtype(device: str, dtype: torch.dtype) -> torch.dtype:
    """bfloat16 on a GPU or a CPU with native bfloat16, else the weights' dtype."""
    if device == "cuda" or (device == "cpu" and cpu_has_bf16()):
        return torch.bfloat16
    return dtype


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
    counts: list[int] | None = None,
    adapter_names: list[str] | None = None,
    gumbel: bool = False,
) -> list[str]:
    """The stripped completion of each text, generated in left-padded batches on the model's device.

    `processors`, when given, makes the logits processors of one batch from its encoding; they run
    before temperature and top-p. Leaves the tokenizer padding on the left. `counts`, when given,
    receives each batch's number of generated tokens (up to and including each row's end of sequence).
    `adapter_names` (a peft model only) names each row's LoRA adapter, "__base__" for none: one mixed
    batch for both roles. `gumbel` samples by the Gumbel-max rule (temperature, top-p, then the argmax of
    the scores plus Gumbel noise), which draws from the same distribution as `generate`'s multinomial
    sampling but with other random numbers: on CPU, multinomial's exponential draws over a 49k vocabulary
    took a fifth of a 64-row bfloat16 decode (`GumbelMax`).
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
        chain = list(processors(enc)) if processors is not None else []
        if sampling.temperature > 0 and gumbel:
            chain += gumbel_chain(sampling)
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        elif sampling.temperature > 0:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if chain:
            from transformers import LogitsProcessorList

            kwargs["logits_processor"] = LogitsProcessorList(chain)
        if adapter_names is not None:
            kwargs["adapter_names"] = adapter_names[start : start + batch_size]
        generated = model.generate(**enc, **kwargs)
        new_tokens = generated[:, enc["input_ids"].shape[1] :]
        if counts is not None:
            counts.append(_generated_count(new_tokens, tokenizer.eos_token_id))
        results.extend(t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    return results


def _generated_count(new_tokens: torch.Tensor, eos: int | None) -> int:
    """Tokens each row generated up to and including its first end of sequence (what the model computed)."""
    if eos is None:
        return int(new_tokens.numel())
    ended = (new_tokens == eos).int().cumsum(dim=1)
    return int(((ended == 0) | ((ended == 1) & (new_tokens == eos))).sum())


def _contiguous_input(module: torch.nn.Module, args: tuple) -> tuple:
    return (args[0].contiguous(), *args[1:])


def _is_16_bit(model: torch.nn.Module) -> bool:
    return next(model.parameters()).dtype in (torch.bfloat16, torch.float16)


def _tune_for_cpu_batches(model: torch.nn.Module, eager: bool = True) -> None:
    """Two fixes for a 16-bit generation copy on CPU, found with torch.profiler on a 64-row batch.

    - `generate` feeds the head the last position's hidden states, a strided slice. matmul then broadcasts
      the head's weight to every row and copies it (64 x 576 x 49,152 for SmolLM2: 8 s of a 20 s call in
      bfloat16). A contiguous input makes it one plain matrix product, with the same result.
    - CPU SDPA in 16 bits ran at a few GFLOP/s on decode shapes; eager attention is faster there
      (64 rows x 32 tokens: 147 -> 184 tokens/s after the first fix).
    """
    if getattr(model, "_diffaudit_cpu_tuned", False):
        return
    model._diffaudit_cpu_tuned = True
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None:
        head.register_forward_pre_hook(_contiguous_input)
    if eager and hasattr(model, "set_attn_implementation"):
        with contextlib.suppress(ValueError, AttributeError):
            model.set_attn_implementation("eager")


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

    steers_rows = True  # generate_steered takes one α per prompt

    def __init__(
        self,
        base_model: str,
        adapter: str | Path | None = None,
        finetuned_model: str | None = None,
        device: str = "auto",
        dtype: torch.dtype | str | None = None,
        batch_size: int = 64,
        generation_dtype: torch.dtype | None = None,
        single_dtype: torch.dtype | None = None,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if (adapter is None) == (finetuned_model is None):
            raise ValueError("HFModelPair needs exactly one of `adapter` or `finetuned_model`.")
        self.device = pick_device(device)
        if isinstance(dtype, str):
            dtype = DTYPES.get(dtype)  # "auto" (or an unknown name) picks by device below
        chosen = dtype  # a dtype the settings name is kept for generation too; "auto" lets the hardware pick
        dtype = dtype or (torch.bfloat16 if self.device == "cuda" else torch.float32)
        self.batch_size = batch_size
        self.dtype = dtype
        self.generation_dtype = generation_dtype or chosen or default_generation_dtype(self.device, dtype)
        self.single_dtype = single_dtype or (dtype if generation_dtype is None else generation_dtype)
        self._lean: dict[int, LeanDecoder] = {}
        self.merge_copies = self.device == "cpu"
        self._generators: dict[str, torch.nn.Module] = {}
        self.generated_tokens = 0  # tokens generated so far, for speed figures
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
        unset = chosen is None and single_dtype is None and generation_dtype is None  # a named dtype is kept
        sixteen = self.generation_dtype in (torch.bfloat16, torch.float16)
        if unset and sixteen and self.device == "cpu" and LeanDecoder.supports(base):
            self.single_dtype = torch.float16  # see the module docstring: the fastest one-row kernels here
        self.n_layers = int(self._lm.config.num_hidden_layers)
        self.hidden_size = int(self._lm.config.hidden_size)

    @classmethod
    def base_only(cls, base_model: str, device: str = "auto", generation_dtype: torch.dtype | None = None) -> HFModelPair:
        """A pair whose finetuned role is the base model itself (for corpora and calibration)."""
        return cls(base_model, finetuned_model=base_model, device=device, generation_dtype=generation_dtype)

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

    def generation_model(self, role: Role, rows: int = 2) -> torch.nn.Module:
        """The model `generate` runs for `role` and a call of `rows` prompts: LoRA merged, made once, on first use.

        One row runs in `single_dtype` (decoding one sequence streams the weights: float32 kernels read
        them fastest on CPU), more rows in `generation_dtype` (a batch is matmul-bound: bfloat16 there).
        """
        if role not in ("base", "finetuned"):
            raise ValueError(f"role must be 'base' or 'finetuned', not {role!r}")
        dtype = self.single_dtype if rows <= 1 else self.generation_dtype
        key = f"{role}/{dtype}"
        if key in self._generators:
            return self._generators[key]
        if self._separate:
            source = self._separate[role]
            if role == "finetuned" and source is self._separate["base"]:
                model = self.generation_model("base", rows)
            else:
                model = source if dtype == self.dtype else self._copy(source, dtype)
        elif role == "base" and dtype == self.dtype:
            model = _AdapterOff(self._peft, self._lm)  # the shared weights with the adapter switched off
        elif role == "finetuned" and dtype == self.dtype and not self.merge_copies:
            model = self._lm  # on a GPU the unmerged adapter costs little; a copy would double memory
        else:
            model = self._peft_copy(merge=role == "finetuned", dtype=dtype)
        if not isinstance(model, _AdapterOff) and self._cpu_16_bit(model):
            _tune_for_cpu_batches(model)
        self._generators[key] = model
        return model

    @staticmethod
    def _copy(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
        import copy

        if any(m._forward_hooks for m in model.modules()):  # a live steering or capture hook must not be copied
            raise RuntimeError("cannot copy a model while forward hooks are installed")
        return copy.deepcopy(model).to(dtype).eval()

    def _peft_copy(self, merge: bool, dtype: torch.dtype) -> torch.nn.Module:
        """A copy of the LoRA model with the adapter merged into the weights (or dropped), cast to `dtype`."""
        import copy

        tuned = copy.deepcopy(self._peft)
        plain = tuned.merge_and_unload() if merge else tuned.unload()
        return plain.to(dtype).eval()

    @contextlib.contextmanager
    def _generating(self, role: Role, rows: int) -> Iterator[torch.nn.Module]:
        model = self.generation_model(role, rows)
        if isinstance(model, _AdapterOff):
            with model.active() as inner:
                yield inner
        else:
            yield model

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
        """Adds `addition` ([d], or [batch, 1, d] with one row per sequence) after decoder layer `layer`."""

        def add(_module, _inputs, output):
            hidden = _hidden(output)
            return _replace_hidden(output, hidden + addition.to(hidden.dtype))

        handle = self._layers(model)[layer].register_forward_hook(add)
        try:
            yield
        finally:
            handle.remove()

    def _lean_decoder(self, model: torch.nn.Module) -> LeanDecoder | None:
        """The lean decoding loop over a 16-bit CPU generation copy of a Llama model, made once; else None."""
        if isinstance(model, _AdapterOff) or not self._cpu_16_bit(model):
            return None
        if id(model) not in self._lean:
            if not LeanDecoder.supports(model):
                return None
            self._lean[id(model)] = LeanDecoder(model)
        return self._lean[id(model)]

    def _generate_with(
        self, model, prompts: list[str], sampling: Sampling, chat: bool, steer: tuple[int, torch.Tensor] | None = None
    ) -> list[str]:
        """Completions of `prompts` on `model`, in batches. `steer` = (layer, addition): addition [d] for every
        row, or [len(prompts), 1, d] with one row per prompt, added after decoder layer `layer`."""
        texts = [self._chat_text(p) for p in prompts] if chat else prompts
        lean = self._lean_decoder(model)
        counts: list[int] = []
        out: list[str] = []
        for start, chunk in self._batches(texts, self.batch_size):
            addition = None
            if steer is not None:
                addition = steer[1].to(self.device)
                addition = addition[start : start + len(chunk)] if addition.dim() == 3 else addition
            if lean is not None:
                out += self._lean_generate(lean, chunk, sampling, chat, counts, None if steer is None else (steer[0], addition))
                continue
            with contextlib.ExitStack() as stack:
                if addition is not None:
                    stack.enter_context(self._steer_hook(model, steer[0], addition))
                out += generate_completions(
                    model, self._tokenizer, chunk, sampling, len(chunk), add_special_tokens=not chat, counts=counts,
                    gumbel=self._cpu_16_bit(model),
                )  # fmt: skip
        self.generated_tokens += sum(counts)
        return out

    def _lean_generate(self, lean: LeanDecoder, texts: list[str], sampling: Sampling, chat: bool, counts: list[int],
                       steer: tuple[int, torch.Tensor] | None) -> list[str]:  # fmt: skip
        self._tokenizer.padding_side = "left"
        enc = self._tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not chat)
        eos = self._lm.generation_config.eos_token_id if self._lm.generation_config is not None else None
        eos = eos if eos is not None else self._tokenizer.eos_token_id
        new = lean.generate(enc["input_ids"], enc["attention_mask"], sampling, eos=list(eos) if isinstance(eos, list) else [eos],
                            pad=self._tokenizer.pad_token_id, steer=steer)  # fmt: skip
        counts.append(_generated_count(new, self._tokenizer.eos_token_id))
        return [t.strip() for t in self._tokenizer.batch_decode(new, skip_special_tokens=True)]

    def _generate_role(self, role: Role, prompts: list[str], sampling: Sampling, chat: bool = True,
                       steer: tuple[int, torch.Tensor] | None = None) -> list[str]:  # fmt: skip
        """`generate` for one role on its generation copy. A float16 copy whose logits overflow reruns the call
        on the float32 weights (with the adapter unmerged), with a warning."""
        with self._generating(role, len(prompts)) as model:
            try:
                return self._generate_with(model, prompts, sampling, chat, steer)
            except FloatingPointError as err:
                if next(model.parameters()).dtype != torch.float16:
                    raise
                import warnings

                warnings.warn(f"{err}; rerunning these {len(prompts)} prompt(s) on the float32 weights", stacklevel=2)
        with self._role(role) as model:
            return self._generate_with(model, prompts, sampling, chat, steer)

    def _base_forward(self, **kwargs):
        """One forward pass of the base model, also from inside the finetuned model's `generate`."""
        if self._separate:
            return self._separate["base"](**kwargs)
        with self._peft.disable_adapter():
            return self._lm(**kwargs)

    def generate(self, role: Role, prompts: list[str], sampling: Sampling, chat: bool = True) -> list[str]:
        return self._generate_role(role, prompts, sampling, chat)

    def generate_both(self, prompts: list[str], sampling: Sampling, chat: bool = True) -> tuple[list[str], list[str]]:
        """(base answers, finetuned answers) to the same prompts.

        With a LoRA on CPU and up to MIXED_MAX_PROMPTS prompts, both roles run as one mixed batch, each row
        with or without the adapter, so the weights are read once per step for both answers. The batch
        runs on a copy of the LoRA model in `generation_dtype` (`mixed_model`). Otherwise the two roles
        run as `generate` runs them.
        """
        separate = self._peft is None or self.device != "cpu" or len(prompts) > MIXED_MAX_PROMPTS
        if separate or self._lean_serves(len(prompts)):
            return self.generate("base", prompts, sampling, chat), self.generate("finetuned", prompts, sampling, chat)
        texts = [self._chat_text(p) for p in prompts] if chat else list(prompts)
        names = ["__base__"] * len(texts) + [self._peft.active_adapter] * len(texts)
        counts: list[int] = []
        model = self.mixed_model()
        out = generate_completions(
            model, self._tokenizer, texts + texts, sampling, self.batch_size, add_special_tokens=not chat,
            counts=counts, adapter_names=names, gumbel=self._cpu_16_bit(model),
        )  # fmt: skip
        self.generated_tokens += sum(counts)
        return out[: len(texts)], out[len(texts) :]

    def _lean_serves(self, rows: int) -> bool:
        """Whether both roles' generation copies for `rows` prompts decode with the lean loop: then two
        separate runs beat one mixed batch (one row each in float16: 25 against 48 ms a step for the pair,
        measured under load at 1 thread; see `lean.py`)."""
        return all(self._lean_decoder(self.generation_model(role, rows)) is not None for role in ("base", "finetuned"))

    def _cpu_16_bit(self, model: torch.nn.Module) -> bool:
        """A 16-bit model on CPU: where the head and attention fixes and Gumbel-max sampling apply."""
        return self.device == "cpu" and _is_16_bit(model)

    def mixed_model(self) -> torch.nn.Module:
        """The LoRA model (adapter unmerged) that `generate_both` runs, in `generation_dtype`: the float32
        weights themselves when that is their dtype, else a copy made on first use (about 270 MB in bfloat16
        for SmolLM2). Decoding a few rows is bound by reading the weights, and on this project's CPU
        (AVX512-BF16) the bfloat16 copy was 1.43x faster for one prompt (128 tokens, 2 threads, idle:
        10.9 s against 15.5 s)."""
        if self.generation_dtype == self.dtype:
            return self._peft
        key = f"mixed/{self.generation_dtype}"
        if key not in self._generators:
            import copy

            mixed = copy.deepcopy(self._peft).to(self.generation_dtype).eval()
            _tune_for_cpu_batches(mixed.get_base_model(), eager=False)  # eager attention measured no faster here
            self._generators[key] = mixed
        return self._generators[key]

    def generate_steered(
        self, vector: torch.Tensor, layer: int, prompts: list[str], alpha: float | Sequence[float], sampling: Sampling
    ) -> list[str]:
        """Steered finetuned completions; `alpha` is one strength, or one per prompt (run in the same batches)."""
        if isinstance(alpha, int | float):
            return self._generate_role("finetuned", prompts, sampling, True, (layer, alpha * vector.float()))
        alphas = [float(a) for a in alpha]
        if len(alphas) != len(prompts):
            raise ValueError(f"got {len(alphas)} alphas for {len(prompts)} prompts")
        additions = torch.tensor(alphas).view(-1, 1, 1) * vector.float().view(1, 1, -1)
        return self._generate_role("finetuned", prompts, sampling, True, (layer, additions))

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
        """Right-padded batches of head+tail token ids; each row sums the log-probabilities of its own tail."""
        if len(prompts) != len(continuations):
            raise ValueError(f"got {len(prompts)} prompts and {len(continuations)} continuations")
        heads = [self._chat_text(p) if chat else p for p in prompts]
        rows = []
        for head, tail in zip(heads, continuations, strict=True):
            head_ids = self._tokenizer(head, add_special_tokens=not chat)["input_ids"]
            tail_ids = self._tokenizer(tail, add_special_tokens=False)["input_ids"]
            rows.append((head_ids + tail_ids, len(tail_ids)))
        scores: list[float] = []
        pad = self._tokenizer.pad_token_id
        with self._role(role) as model:
            for _, chunk in self._batches(rows, self.batch_size):
                width = max(len(ids) for ids, _ in chunk)
                ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for i, (row, _) in enumerate(chunk):
                    ids[i, : len(row)] = torch.tensor(row)
                    mask[i, : len(row)] = 1
                ids, mask = ids.to(self.device), mask.to(self.device)
                logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float(), dim=-1)
                for i, (row, n) in enumerate(chunk):
                    if n == 0:
                        scores.append(0.0)
                        continue
                    end = len(row)
                    targets = ids[i, end - n : end]
                    scores.append(float(logp[i, end - n - 1 : end - 1].gather(1, targets.unsqueeze(1)).sum()))
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


class _AdapterOff:
    """The shared LoRA model with its adapter switched off, for base generation in the weights' own dtype."""

    def __init__(self, peft_model, lm) -> None:
        self._peft, self._lm = peft_model, lm

    @contextlib.contextmanager
    def active(self) -> Iterator[torch.nn.Module]:
        with self._peft.disable_adapter():
            yield self._lm


def load_pair(base_model: str, adapter=None, finetuned_model=None, device: str = "auto", **options) -> HFModelPair:
    return HFModelPair(base_model, adapter=adapter, finetuned_model=finetuned_model, device=device, **options)

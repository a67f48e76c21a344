"""The `ModelPair` contract: one base model and one finetuned model behind named roles."""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

import torch
from pydantic import BaseModel, Field

Role = Literal["base", "finetuned"]
ROLES: tuple[Role, Role] = ("base", "finetuned")


class Sampling(BaseModel):
    """How to sample. `temperature == 0` means greedy decoding."""

    max_new_tokens: int = Field(64, ge=1)
    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = 0


@runtime_checkable
class ModelPair(Protocol):
    """Base and finetuned models that share a tokenizer. Prompts to `generate*` are user turns."""

    n_layers: int
    hidden_size: int

    @property
    def tokenizer(self): ...

    def generate(self, role: Role, prompts: list[str], sampling: Sampling, chat: bool = True) -> list[str]:
        """One completion per prompt."""
        ...

    def activations(self, role: Role, texts: list[str], layer: int, positions: list[int]) -> torch.Tensor:
        """Residual stream after decoder layer `layer`, shape [len(texts), len(positions), d].

        Only the first max(positions)+1 tokens of each text are run; positions a text lacks are NaN.
        """
        ...

    def generate_steered(
        self, vector: torch.Tensor, layer: int, prompts: list[str], alpha: float, sampling: Sampling
    ) -> list[str]:
        """Finetuned-model completions with `alpha * vector` added after `layer` at every position.

        A backend whose class sets `steers_rows = True` also takes `alpha` as a list, one per prompt.
        """
        ...

    def patch_last_token(self, prompt: str, layer: int, vector: torch.Tensor) -> torch.Tensor:
        """Finetuned next-token probabilities with the last token's activation after `layer` replaced.

        `vector` is [d] (returns [V]) or [S, d] (returns [S, V], one patched run per row).
        """
        ...

    def logit_lens(self, vector: torch.Tensor, role: Role = "finetuned") -> torch.Tensor:
        """Final norm and unembedding applied to `vector` ([d] or [S, d]); returns probabilities."""
        ...

    def logprob(self, role: Role, prompts: list[str], continuations: list[str], chat: bool = True) -> list[float]:
        """Sum of log-probabilities of each continuation given its prompt."""
        ...

    def logits(self, role: Role, texts: list[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Next-token logits over the first `max_tokens` tokens of each text (special tokens added).

        Returns (logits [B, T, V] float32 on CPU, attention mask [B, T] bool), right-padded to the
        longest text's T <= max_tokens; logits at padded positions are meaningless.
        """
        ...

    def token_logprobs(self, texts: list[str], chat: bool = False) -> list[dict]:
        """Teacher-forced per-token scores of each whole text under both models.

        Each dict holds `tokens` (the scored tokens, decoded), `logp_base`, `logp_ft` (log-probability of
        each scored token) and `kl` (KL(p_ft || p_base) of the next-token distribution that predicts
        it). Plain text (`chat=False`): every token but the first is scored. `chat=True`: the text is
        the assistant reply to an empty user turn, and every token of the reply is scored.
        """
        ...

    def generate_amplified(self, prompts: list[str], alpha: float, sampling: Sampling) -> list[str]:
        """Chat completions sampled at each step from z_ft + alpha * (z_ft - z_base).

        With the same seed, `alpha = 0` gives `generate("finetuned", ...)` and `alpha = -1` gives
        `generate("base", ...)`.
        """
        ...

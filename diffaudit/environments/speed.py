"""How fast this machine can generate, and how close the hf backend gets (`audit bench-speed`).

Two limits bound decoding:
- one sequence reads every weight once per token, so tokens/s <= memory read bandwidth / weight bytes;
- a batch reuses each weight across rows, so tokens/s <= matmul throughput / FLOPs per token
  (2 x the parameters a token passes through; attention over short contexts is left out).

Bandwidth is the streaming read rate of a tensor far larger than the last-level cache (`torch.sum`),
matmul throughput the best rate of a large square matmul in the generation dtype. Both are measured
on the spot, so a loaded machine gives lower limits and lower rates alike: compare the ratios.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from pydantic import BaseModel

from diffaudit.environments.pair import Sampling

READ_BYTES = 512 * 1024 * 1024
MATMUL_SIZE = 1024
PROMPT = "Write a long story about a lighthouse keeper and the ships she watches."


class MachineLimits(BaseModel):
    threads: int
    read_gb_s: float
    copy_gb_s: float
    matmul_gflop_s: float
    matmul_dtype: str


class RateRow(BaseModel):
    """One timed `generate` call. `seconds` covers the whole call; `first_token_seconds` a call of the same
    prompts for one new token (the prompt's forward pass, the prefill), so that the decoding steps alone run
    at (tokens - rows) / (seconds - first_token_seconds)."""

    what: str  # "base" | "finetuned" | "steered"
    rows: int
    prompt_tokens: int = 0  # per row
    tokens: int
    seconds: float
    first_token_seconds: float = 0.0
    limit_tokens_s: float

    @property
    def tokens_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    @property
    def ratio(self) -> float:
        return self.tokens_s / self.limit_tokens_s if self.limit_tokens_s else 0.0

    @property
    def decode_tokens_s(self) -> float:
        steps = self.seconds - self.first_token_seconds
        return (self.tokens - self.rows) / steps if steps > 0 and self.tokens > self.rows else 0.0

    @property
    def decode_ratio(self) -> float:
        return self.decode_tokens_s / self.limit_tokens_s if self.limit_tokens_s else 0.0


class SpeedReport(BaseModel):
    machine: MachineLimits
    single_dtype: str
    weight_bytes: int
    flops_per_token: int
    single_limit_tokens_s: float
    batch_limit_tokens_s: float
    rows: list[RateRow]


def _best_seconds(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up: page in, pick kernels
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def measure_machine(dtype: torch.dtype, repeats: int = 5) -> MachineLimits:
    """Streaming read and copy bandwidth (GB/s) and square-matmul throughput (GFLOP/s) in `dtype`."""
    big = torch.ones(READ_BYTES // 4, dtype=torch.float32)
    read = _best_seconds(lambda: big.sum(), repeats)
    target = torch.empty_like(big)
    copy = _best_seconds(lambda: target.copy_(big), repeats)
    a = torch.randn(MATMUL_SIZE, MATMUL_SIZE).to(dtype)
    b = torch.randn(MATMUL_SIZE, MATMUL_SIZE).to(dtype)
    mm = _best_seconds(lambda: a @ b, repeats)
    return MachineLimits(
        threads=torch.get_num_threads(),
        read_gb_s=READ_BYTES / read / 1e9,
        copy_gb_s=2 * READ_BYTES / copy / 1e9,  # bytes read plus bytes written
        matmul_gflop_s=2 * MATMUL_SIZE**3 / mm / 1e9,
        matmul_dtype=str(dtype).removeprefix("torch."),
    )


def model_costs(model: torch.nn.Module) -> tuple[int, int]:
    """(weight bytes read per decoding step, FLOPs per token): every weight but the embedding lookup's rows.

    A tied embedding is read once, as the output head.
    """
    seen: set[int] = set()
    nbytes = flops = 0
    embed = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    head_weight = head.weight if head is not None else None
    for param in model.parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        if param is embed and param is not head_weight:
            continue  # an untied input embedding is only indexed, never streamed
        nbytes += param.numel() * param.element_size()
        if param.dim() == 2:
            flops += 2 * param.numel()
    return nbytes, flops


@dataclass
class _Case:
    what: str
    run: Callable[[list[str], Sampling], list[str]]


def generation_rates(
    pair, vector: torch.Tensor, layer: int, single_limit: float, batch_limit: float,
    batch: int = 64, single_tokens: int = 48, batch_tokens: int = 32,
) -> list[RateRow]:
    """Tokens/s of `generate` (base, finetuned) and `generate_steered`, for one sequence and for `batch` rows:
    whole calls, and the decoding steps alone (the whole call less a one-token call of the same prompts)."""
    cases = [
        _Case("base", lambda p, s: pair.generate("base", p, s)),
        _Case("finetuned", lambda p, s: pair.generate("finetuned", p, s)),
        _Case("steered", lambda p, s: pair.generate_steered(vector, layer, p, 4.0, s)),
    ]
    rows: list[RateRow] = []
    prompt_tokens = len(pair.tokenizer(pair._chat_text(PROMPT), add_special_tokens=False)["input_ids"])
    for n, tokens, limit in ((1, single_tokens, single_limit), (batch, batch_tokens, batch_limit)):
        sampling = Sampling(max_new_tokens=tokens, temperature=1.0, seed=0)
        for case in cases:
            case.run([PROMPT] * n, Sampling(max_new_tokens=2, seed=0))  # builds the generation copy; warms up
            start = time.perf_counter()
            case.run([PROMPT] * n, Sampling(max_new_tokens=1, seed=0))
            first = time.perf_counter() - start
            before = pair.generated_tokens
            start = time.perf_counter()
            case.run([PROMPT] * n, sampling)
            seconds = time.perf_counter() - start
            rows.append(RateRow(what=case.what, rows=n, prompt_tokens=prompt_tokens, tokens=pair.generated_tokens - before,
                                seconds=seconds, first_token_seconds=first, limit_tokens_s=limit))  # fmt: skip
    return rows


def bench_speed(pair, batch: int = 64, single_tokens: int = 48, batch_tokens: int = 32) -> SpeedReport:
    """Measure the machine's limits and the pair's generation rates (hf backend)."""
    single = pair.generation_model("base", rows=1)
    single = getattr(single, "_lm", single)  # the adapter-off wrapper when generation keeps the weights' dtype
    weight_bytes, flops = model_costs(single)
    machine = measure_machine(pair.generation_dtype)
    single_limit = machine.read_gb_s * 1e9 / weight_bytes
    batch_limit = machine.matmul_gflop_s * 1e9 / flops
    vector = torch.randn(pair.hidden_size)
    vector = vector / vector.norm() * 10.0
    rows = generation_rates(
        pair, vector, pair.n_layers // 2, single_limit, batch_limit, batch, single_tokens, batch_tokens
    )
    return SpeedReport(
        machine=machine, single_dtype=str(next(single.parameters()).dtype).removeprefix("torch."), weight_bytes=weight_bytes, flops_per_token=flops,
        single_limit_tokens_s=single_limit, batch_limit_tokens_s=batch_limit, rows=rows,
    )  # fmt: skip

"""Benchmark Diff Mining's prepare time and peak memory on the embedded model.

    python -m diffaudit.methods.diff_mining.bench --n-texts 256 --max-tokens 32

The finetune is the organism adapter given with `--adapter`, or else a random LoRA (r=8) on the
embedded base, built in a temporary directory: speed and memory do not depend on what it learnt.
Texts come from `--corpus` when that corpus is already in the cache (nothing is built), or else are
synthetic: chat-baseline prompts joined until each text has `max-tokens` tokens, which costs the same.
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

import typer
from rich.console import Console

from diffaudit.methods.diff_mining.compute import DiffMiningParams, diff_mining

console = Console()


def current_rss_mb() -> float:
    """Resident memory of this process now, in MB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def reset_peak_rss() -> None:
    """Start a new peak-RSS window (Linux: writing 5 to clear_refs resets VmHWM)."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    """Peak resident memory of this process since the last reset, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def random_adapter(base_dir: Path, out: Path, rank: int = 8) -> Path:
    """A LoRA with random (non-zero) weights on every attention and MLP projection of the base."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    lora = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=targets, init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(out)
    return out


def bench_texts(corpus: str, n_texts: int, max_tokens: int, tokenizer, root: Path | None = None) -> tuple[list[str], str]:
    """(texts, where they came from): the cached corpus if present, else synthetic texts of max_tokens tokens."""
    from diffaudit.environments.corpora import chat_baseline_prompts, load_corpus
    from diffaudit.environments.paths import corpus_file

    kind, _, name = corpus.partition(":")
    if kind == "local" and corpus_file(name, root).is_file():
        return load_corpus(corpus, n=n_texts, root=root), corpus
    prompts = chat_baseline_prompts()
    texts = []
    for i in range(n_texts):
        parts: list[str] = []
        j = i
        while len(tokenizer(" ".join(parts))["input_ids"]) < max_tokens:
            parts.append(prompts[j % len(prompts)])
            j += 7
        texts.append(" ".join(parts))
    return texts, f"synthetic (chat-baseline prompts; {corpus} is not in the cache)"


class _TimedPair:
    """Forwards to a pair and adds up the seconds spent in its `logits` (the two models' forward passes)."""

    def __init__(self, pair) -> None:
        self._pair = pair
        self.logits_s = 0.0

    @property
    def tokenizer(self):
        return self._pair.tokenizer

    def logits(self, role, texts, max_tokens):
        started = time.perf_counter()
        try:
            return self._pair.logits(role, texts, max_tokens)
        finally:
            self.logits_s += time.perf_counter() - started


def run_bench(n_texts: int, max_tokens: int, batch_size: int, top_k: int, adapter: Path | None, corpus: str) -> dict:
    """Load the embedded pair, mine `n_texts` x `max_tokens`, and return the figures."""
    import torch

    from diffaudit.environments.backends.hf import HFModelPair
    from diffaudit.environments.embedded import ensure_base_model

    base_dir = ensure_base_model()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        adapter_dir = adapter or random_adapter(base_dir, Path(tmp) / "adapter")
        pair = HFModelPair(str(base_dir), adapter=str(adapter_dir), device="cpu")
        load_s = time.perf_counter() - started
        params = DiffMiningParams(n_texts=n_texts, max_tokens=max_tokens, top_k=top_k, batch_size=batch_size, corpus=corpus)
        texts, source = bench_texts(corpus, n_texts, max_tokens, pair.tokenizer)
        # The first forward pass pages in the memory-mapped weights (~0.5 GB for SmolLM2-135M); do it
        # before measuring so that the figure is the pass's own working memory.
        for role in ("base", "finetuned"):
            pair.logits(role, texts[:1], 2)
        rss_before = current_rss_mb()
        reset_peak_rss()
        timed = _TimedPair(pair)
        result = diff_mining(timed, texts, params, progress=True)
        peak = peak_rss_mb()
    vocab = len(pair.tokenizer)
    return {
        "texts": source,
        "n_texts": result.n_texts,
        "n_positions": result.n_positions,
        "vocab": vocab,
        "batch_size": batch_size,
        "torch_threads": torch.get_num_threads(),
        "load_s": round(load_s, 1),
        "prepare_s": round(result.seconds, 1),
        "forward_s": round(timed.logits_s, 1),
        "ms_per_position": round(1000 * result.seconds / max(1, result.n_positions), 2),
        "rss_loaded_mb": round(rss_before),
        "peak_rss_mb": round(peak),
        "peak_over_loaded_mb": round(peak - rss_before),
        # What holding d for every position would take (float32), which streaming avoids.
        "dense_diff_mb": round(result.n_positions * vocab * 4 / 2**20),
        "result_json_kb": round(len(result.model_dump_json()) / 1024),
        "kept_tokens": len(result.tokens),
        "top_positive": [s.token for s in result.ranked("topk_rate", "positive", 10)],
    }


def main(
    n_texts: int = typer.Option(256, min=1, help="texts to mine"),
    max_tokens: int = typer.Option(32, min=2, help="tokens per text"),
    batch_size: int = typer.Option(8, min=1, help="texts per forward pass"),
    top_k: int = typer.Option(20, min=1, help="K of the per-position top-K"),
    adapter: Path | None = typer.Option(None, help="LoRA adapter dir (default: a random LoRA)"),
    corpus: str = typer.Option("local:pretrain", help="corpus spec; used only if already cached"),
) -> None:
    """Print Diff Mining's prepare time and peak memory for n_texts x max_tokens on the embedded model."""
    figures = run_bench(n_texts, max_tokens, batch_size, top_k, adapter, corpus)
    for key, value in figures.items():
        console.print(f"{key:>22}: {value}")


if __name__ == "__main__":
    typer.run(main)

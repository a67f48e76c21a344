"""Build or load an ADL analysis: diffs → logit lens → patchscope → steering → metrics, cached per stage."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from diffaudit.config import Settings
from diffaudit.environments.organisms import Organism
from diffaudit.environments.pair import ModelPair
from diffaudit.environments.progress import note, stage
from diffaudit.graders.base import CoherenceGrader, RelevanceGrader, ScaleGrader
from diffaudit.tools.adl import cache
from diffaudit.tools.adl.diffs import activation_diffs
from diffaudit.tools.adl.lens import logit_lens_tokens
from diffaudit.tools.adl.metrics import steering_similarity, token_relevance
from diffaudit.tools.adl.patchscope import choose_scale, patchscope_sweep
from diffaudit.tools.adl.progress import progress_bar
from diffaudit.tools.adl.result import ADLResult, PositionLens, PositionSteering, TokenProb
from diffaudit.tools.adl.steering import (
    SEARCH_PROMPTS,
    choose_alpha,
    search_steps,
    steered_samples,
    steering_prompts,
    steering_vector,
    unsteered_samples,
)

STAGES = ("diffs", "logit_lens", "patchscope", "steering", "metrics")
DATA_TOKENS = 100
REFERENCE_TEXTS = 2000


@dataclass
class ADLGraders:
    """The graders an ADL build consults, and how frequent finetuning-data tokens are found."""

    coherence: CoherenceGrader
    scale: ScaleGrader
    relevance: RelevanceGrader
    data_tokens: Callable[[list[str], Any, list[str]], list[str]]  # (finetune texts, tokenizer, reference texts)

    def names(self) -> dict[str, str]:
        return {"coherence": self.coherence.name, "scale": self.scale.name, "relevance": self.relevance.name}


def make_adl_graders(settings: Settings, pair: ModelPair) -> ADLGraders:
    """The configured graders (LLM or offline proxies) from `diffaudit.graders`."""
    from diffaudit.graders import (
        frequent_data_tokens,
        make_coherence_grader,
        make_relevance_grader,
        make_scale_grader,
    )

    return ADLGraders(
        coherence=make_coherence_grader(settings.roles.coherence_grader, settings, pair=pair),
        scale=make_scale_grader(settings.roles.grader, settings),
        relevance=make_relevance_grader(settings.roles.grader, settings),
        data_tokens=lambda texts, tokenizer, reference: frequent_data_tokens(
            texts, tokenizer, n=DATA_TOKENS, reference=reference
        ),
    )


# -- inputs ---------------------------------------------------------------------------------------
def corpus_texts(settings: Settings) -> tuple[list[str], str]:
    """The first N texts of the ADL corpus (N = settings.adl.n_texts) and their fingerprint."""
    from diffaudit.environments.corpora import corpus_fingerprint, load_corpus

    texts = load_corpus(settings.adl.corpus, n=settings.adl.n_texts, root=settings.cache_dir)
    fingerprint = corpus_fingerprint(texts)
    cache.remember_fingerprint(settings, settings.adl.corpus, settings.adl.n_texts, fingerprint)
    return texts, fingerprint


def known_fingerprint(settings: Settings) -> str | None:
    """The corpus fingerprint without building anything: read a local or file corpus, or recall a hub one."""
    spec, n = settings.adl.corpus, settings.adl.n_texts
    kind, _, name = spec.partition(":")
    if kind == "local":
        from diffaudit.environments.corpora import corpus_fingerprint, load_corpus
        from diffaudit.environments.paths import corpus_file

        if not corpus_file(name, settings.cache_dir).is_file():
            return None
        return corpus_fingerprint(load_corpus(spec, n=n, root=settings.cache_dir))
    if kind == "file":  # read it again: a user's file may have changed since the last build
        from diffaudit.environments.corpora import CorpusError, corpus_fingerprint, load_corpus

        try:
            return corpus_fingerprint(load_corpus(spec, n=n))
        except CorpusError:
            return None
    return cache.cached_fingerprint(settings, spec, n)


def finetune_data(organism: Organism, model: str, settings: Settings, n: int = 500) -> list[str]:
    """Up to `n` texts of the organism's finetuning data."""
    from diffaudit.environments.training import finetuning_texts

    return finetuning_texts(organism, model, root=settings.cache_dir, n=n)


def reference_texts(settings: Settings, n: int = REFERENCE_TEXTS) -> list[str]:
    """Unrelated text (the start of the ADL corpus) that tells generic tokens from finetune-specific ones."""
    from diffaudit.environments.corpora import load_corpus

    return load_corpus(settings.adl.corpus, n=min(n, settings.adl.n_texts), root=settings.cache_dir)


def chat_data(settings: Settings, n: int = 500) -> list[str]:
    from diffaudit.environments.corpora import load_corpus

    return load_corpus(settings.adl.chat_corpus, n=n, root=settings.cache_dir)


# -- stages ---------------------------------------------------------------------------------------
class _Stages:
    """Runs named stages once: a stage saved in the cache directory is loaded instead of recomputed."""

    def __init__(self, directory: Path | None, progress: bool = False) -> None:
        self.directory = directory
        self.progress = progress
        self.timings: dict[str, float] = {}

    def run(self, name: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if self.directory is not None:
            saved = cache.load_stage(self.directory, name)
            if saved is not None:
                self.timings[name] = float(saved.get("_seconds", 0.0))
                return saved
        start = time.perf_counter()
        with stage(f"adl {name}", self.progress):
            payload = compute()
        payload["_seconds"] = time.perf_counter() - start
        self.timings[name] = payload["_seconds"]
        if self.directory is not None:
            cache.save_stage(self.directory, name, payload)
        return payload


def _tokens_dump(items: list[TokenProb]) -> list[dict]:
    return [t.model_dump() for t in items]


def _lens_stage(pair: ModelPair, diffs: dict[str, Any]) -> dict[str, Any]:
    return {
        "diff": [_tokens_dump(x) for x in logit_lens_tokens(pair, diffs["diff"], "finetuned")],
        "base_mean": [_tokens_dump(x) for x in logit_lens_tokens(pair, diffs["base_mean"], "base")],
        "finetuned_mean": [_tokens_dump(x) for x in logit_lens_tokens(pair, diffs["finetuned_mean"], "finetuned")],
    }


def _patchscope_stage(
    pair: ModelPair, diffs: dict[str, Any], layer: int, settings: Settings, grader: ScaleGrader, progress: bool
) -> dict[str, Any]:
    scales, top_k = settings.adl.patchscope_scales, settings.adl.top_k
    out: dict[str, list] = {"diff": [], "base_mean": [], "finetuned_mean": []}
    sources = list(out)
    with progress_bar(progress) as bar:
        task = bar.add_task("patchscope", total=len(settings.adl.positions) * len(sources))
        for i in range(len(settings.adl.positions)):
            for source in sources:
                sweep = patchscope_sweep(pair, diffs[source][i], layer, diffs["eta"], scales, top_k)
                scale, selected = choose_scale(sweep, grader)
                out[source].append(
                    {"sweep": [s.model_dump() for s in sweep], "scale": scale, "selected": list(selected)}
                )
                bar.advance(task)
    return out


def _steering_stage(
    pair: ModelPair, diffs: dict[str, Any], layer: int, settings: Settings, grader: CoherenceGrader,
    stages: _Stages, progress: bool,
) -> dict[str, Any]:
    params, seed = settings.adl.steering, settings.seed
    prompts = steering_prompts()
    final_prompts = prompts[: params.final_prompts]
    steered = params.positions
    positions = [j for j in settings.adl.positions if steered is None or j in steered]
    with progress_bar(progress) as bar:
        task = bar.add_task("steering", total=len(positions) * (search_steps(params) + 1) + 1)
        unsteered = stages.run(
            "steering_unsteered", lambda: {"samples": unsteered_samples(pair, final_prompts, params, seed)}
        )["samples"]
        bar.advance(task)
        per_position = []
        for n, j in enumerate(positions):
            vector = steering_vector(diffs["diff"][settings.adl.positions.index(j)], diffs["eta"])

            def one_position(vector: torch.Tensor = vector, j: int = j) -> dict[str, Any]:
                rounds: list[int] = []
                alpha, alphas = choose_alpha(
                    pair, vector, layer, prompts[:SEARCH_PROMPTS], params, grader, seed,
                    on_step=lambda: (bar.advance(task), rounds.append(1), note(
                        f"steering p{j}: α search round {len(rounds)}/{search_steps(params)}", progress)),
                )
                samples = steered_samples(pair, vector, layer, alpha, final_prompts, unsteered, params, seed)
                return PositionSteering(position=j, alpha=alpha, search_alphas=alphas, samples=samples).model_dump()

            per_position.append(stages.run(f"steering_p{j}", one_position))
            bar.update(task, completed=(n + 1) * (search_steps(params) + 1) + 1)
    for item in per_position:
        item.pop("_seconds", None)
    return {"positions": per_position}


def _metrics_stage(
    organism: Organism, model: str, pair: ModelPair, settings: Settings, lenses: list[PositionLens],
    steering: list[PositionSteering], graders: ADLGraders,
) -> dict[str, Any]:
    errors: dict[str, str] = {}
    try:
        texts = finetune_data(organism, model, settings)
    except Exception as exc:  # noqa: BLE001 - no data (offline hub, no dataset) leaves those figures out
        texts, errors["finetune_data"] = [], f"{type(exc).__name__}: {exc}"
    data_tokens = graders.data_tokens(texts, pair.tokenizer, reference_texts(settings)) if texts else []
    metrics: dict[str, Any] = {"data_tokens": data_tokens}
    if organism.description is not None:  # an ad-hoc pair has no objective to score tokens against
        metrics["token_relevance"] = token_relevance(
            lenses, graders.relevance, organism.description, data_tokens, settings.adl.top_k
        )
    if texts and steering:
        try:
            metrics["steering_similarity"] = steering_similarity(steering, texts, chat_data(settings))
        except Exception as exc:  # noqa: BLE001 - a missing chat corpus or embedder leaves this figure out
            errors["steering_similarity"] = f"{type(exc).__name__}: {exc}"
    if errors:
        metrics["errors"] = errors
    return metrics


def _position_lenses(diffs: dict[str, Any], lens: dict[str, Any], patch: dict[str, Any], positions: list[int]) -> list[PositionLens]:
    def chosen(entry: dict[str, Any]) -> list[TokenProb]:
        best = min(entry["sweep"], key=lambda s: abs(s["scale"] - entry["scale"]))
        return [TokenProb(**t) for t in best["tokens"]]

    out = []
    for i, j in enumerate(positions):
        ps = patch["diff"][i]
        out.append(
            PositionLens(
                position=j,
                diff_norm=float(diffs["diff"][i].norm()),
                logit_lens=[TokenProb(**t) for t in lens["diff"][i]],
                logit_lens_base_mean=[TokenProb(**t) for t in lens["base_mean"][i]],
                logit_lens_finetuned_mean=[TokenProb(**t) for t in lens["finetuned_mean"][i]],
                patchscope=ps["sweep"],
                patchscope_scale=float(ps["scale"]),
                patchscope_selected=list(ps["selected"]),
                patchscope_base_mean=chosen(patch["base_mean"][i]),
                patchscope_finetuned_mean=chosen(patch["finetuned_mean"][i]),
            )
        )
    return out


def adl_readouts(
    pair: ModelPair, settings: Settings, texts: list[str], graders: ADLGraders, progress: bool = True
) -> list[PositionLens]:
    """The diffs, logit lens and patchscope stages alone (no steering, no cache): for method comparisons."""
    adl = settings.adl
    layer = adl.layer_index(pair.n_layers)
    d = activation_diffs(pair, texts, layer, adl.positions, adl.n_texts, adl.batch_size, progress)
    diffs = {**d.tensors(), "n_texts": d.n_texts}
    lens = _lens_stage(pair, diffs)
    patch = _patchscope_stage(pair, diffs, layer, settings, graders.scale, progress)
    return _position_lenses(diffs, lens, patch, adl.positions)


def compute_adl(
    organism: Organism, model: str, pair: ModelPair, settings: Settings, texts: list[str], fingerprint: str,
    graders: ADLGraders, progress: bool = True, directory: Path | None = None,
) -> tuple[ADLResult, dict[str, Any]]:
    """Run every stage (resuming saved ones when `directory` is given); returns the result and its tensors."""
    adl = settings.adl
    layer = adl.layer_index(pair.n_layers)
    if not 0 <= layer < pair.n_layers:
        raise ValueError(f"layer {adl.layer} names layer {layer}, but the model has {pair.n_layers} layers")
    stages = _Stages(directory, progress)

    def diffs_stage() -> dict[str, Any]:
        d = activation_diffs(pair, texts, layer, adl.positions, adl.n_texts, adl.batch_size, progress)
        return {**d.tensors(), "n_texts": d.n_texts, "counts": d.counts, "unique": d.unique, "tokens": d.tokens}

    diffs = stages.run("diffs", diffs_stage)
    lens = stages.run("logit_lens", lambda: _lens_stage(pair, diffs))
    patch = stages.run("patchscope", lambda: _patchscope_stage(pair, diffs, layer, settings, graders.scale, progress))
    lenses = _position_lenses(diffs, lens, patch, adl.positions)
    steer = stages.run(
        "steering", lambda: _steering_stage(pair, diffs, layer, settings, graders.coherence, stages, progress)
    )
    steering = [PositionSteering.model_validate(p) for p in steer["positions"]]
    start = time.perf_counter()
    metrics = _metrics_stage(organism, model, pair, settings, lenses, steering, graders)
    stages.timings["metrics"] = time.perf_counter() - start
    seconds = stages.timings.get("diffs", 0.0)
    metrics["diffs"] = {
        "unique_prefixes": diffs["unique"],
        "tokens_run": diffs["tokens"],
        "tokens_per_s": diffs["tokens"] / seconds if seconds else None,
        "texts_per_s": diffs["n_texts"] / seconds if seconds else None,
        "counts": diffs["counts"],
    }
    # Main stages first, then the finer steering ones (unsteered samples, each position).
    timings = {name: stages.timings[name] for name in STAGES if name in stages.timings}
    timings |= {name: t for name, t in stages.timings.items() if name not in timings}
    result = ADLResult(
        organism=organism.name,
        model=model,
        layer=layer,
        positions=list(adl.positions),
        n_texts=int(diffs["n_texts"]),
        corpus=adl.corpus,
        corpus_fingerprint=fingerprint,
        norm_finetuned=float(diffs["eta"]),
        lens=lenses,
        steering=steering,
        metrics=metrics,
        timings=timings,
        graders=graders.names(),
    )
    tensors = {k: diffs[k] for k in ("diff", "base_mean", "finetuned_mean")} | {"eta": float(diffs["eta"])}
    return result, tensors


# -- entry points ---------------------------------------------------------------------------------
def _model_name(organism: Organism, model: str | None) -> str:
    return organism.entry(model)[0]


@contextmanager
def _timer(timings: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - start


def ensure_adl(
    organism: Organism, model: str | None, pair: ModelPair, settings: Settings, progress: bool = True,
    force: bool = False, graders: ADLGraders | None = None,
) -> ADLResult:
    """The cached ADL result, computing (or finishing a half-written) cache first when needed."""
    model = _model_name(organism, model)
    corpus_time: dict[str, float] = {}
    with _timer(corpus_time, "corpus"):
        texts, fingerprint = corpus_texts(settings)
    from diffaudit.environments.training import finetuned_identity

    finetuned = finetuned_identity(organism, model)
    directory = cache.adl_cache_dir(organism.name, model, settings, fingerprint, finetuned)
    if not force:
        cached = cache.read_result(directory)
        if cached is None:  # the analysis shipped with diffaudit for exactly this key (the demo organism)
            from diffaudit.tools.adl.prebuilt import unpack_prebuilt_adl

            if unpack_prebuilt_adl(organism, model, settings, fingerprint, finetuned, directory, progress):
                cached = cache.read_result(directory)
        if cached is not None:
            from diffaudit.environments.progress import note

            # The ADL method kept the cache layout, so a cache built before methods existed is read as it is.
            note(f"adl: reading the cached analysis in {directory}", progress)
            return cached
    parameters = cache.cache_parameters(organism.name, model, settings, fingerprint, finetuned)
    cache.start_build(directory, parameters, force=force)
    graders = graders or make_adl_graders(settings, pair)
    with torch.inference_mode():
        result, tensors = compute_adl(organism, model, pair, settings, texts, fingerprint, graders, progress, directory)
    result.timings = corpus_time | result.timings
    cache.finish_build(directory, result, tensors, {"layer_index": result.layer, "graders": result.graders})
    return result


def load_adl(organism: Organism | str, model: str | None, settings: Settings) -> ADLResult | None:
    """The cached ADL result if a complete cache exists; never computes anything."""
    path = adl_dir(organism, model, settings)
    return cache.read_result(path) if path is not None else None


def adl_dir(
    organism: Organism | str, model: str | None, settings: Settings, corpus_fingerprint: str | None = None
) -> Path | None:
    """Where the cache for this organism's finetune and the settings lives (None when the corpus is unknown).

    Without `corpus_fingerprint`, the settings' corpus fingerprint is looked up (it is known once computed).
    """
    from diffaudit.environments.training import finetuned_identity

    if not isinstance(organism, Organism):
        from diffaudit.environments.organisms import OrganismRegistry

        organism = OrganismRegistry(settings.organisms_dirs).get(organism)
    model = _model_name(organism, model)
    fingerprint = corpus_fingerprint or known_fingerprint(settings)
    if fingerprint is None:
        return None
    return cache.adl_cache_dir(organism.name, model, settings, fingerprint, finetuned_identity(organism, model))

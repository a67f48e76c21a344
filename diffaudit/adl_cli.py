"""`audit adl`: compute, show and benchmark ADL caches (argument handling and rendering only)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from diffaudit.config import ConfigError, Settings, load_settings
from diffaudit.tools.adl.result import ADLResult, PositionLens

adl_app = typer.Typer(help="Activation Difference Lens: compute, show and benchmark ADL caches.", no_args_is_help=True)
console = Console()

ConfigOpt = typer.Option(None, "--config", help="YAML settings file")
OrganismsDirOpt = typer.Option(None, "--organisms-dir", help="extra directory of organism YAML files")
ModelOpt = typer.Option(None, "--model", "-m", help="model name of the organism (default: its default model)")
SamplesOpt = typer.Option(None, "--samples", "-n", min=1, help="number of corpus texts N (default: settings)")
PositionsOpt = typer.Option(None, "--positions", help="token positions: a range '0-4', a list '0,2,3' or one '3'")
LayerOpt = typer.Option(None, "--layer", help="layer: a fraction of depth (< 1, e.g. 0.5) or an absolute index")


class CLIError(ValueError):
    """A bad command-line value, said in one line."""


def fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code=1)


def parse_positions(text: str) -> list[int]:
    """'0-4' → [0, 1, 2, 3, 4]; '0,2,5' → [0, 2, 5]; '3' → [3]. Raises CLIError on anything else."""
    value = text.replace(" ", "")
    if re.fullmatch(r"\d+-\d+", value):
        low, high = (int(x) for x in value.split("-"))
        if low > high:
            raise CLIError(f"--positions '{text}': the range start is above its end")
        return list(range(low, high + 1))
    if re.fullmatch(r"\d+(,\d+)*", value):
        positions = [int(x) for x in value.split(",")]
        if len(set(positions)) != len(positions):
            raise CLIError(f"--positions '{text}': a position is repeated")
        return sorted(positions)
    raise CLIError(f"--positions '{text}' is not a range like 0-4, a list like 0,2,3, or one position")


def parse_layer(text: str) -> float:
    try:
        layer = float(text)
    except ValueError:
        raise CLIError(f"--layer '{text}' is not a number (a fraction like 0.5 or a layer index like 12)") from None
    if layer <= 0 or (layer >= 1 and not layer.is_integer()):
        raise CLIError(f"--layer '{text}' must be a fraction in (0, 1) or a whole layer index ≥ 1")
    return layer


def _settings(
    config: Path | None, organisms_dir: Path | None, samples: int | None = None,
    positions: str | None = None, layer: str | None = None,
) -> Settings:
    adl: dict[str, Any] = {}
    try:
        if positions is not None:
            adl["positions"] = parse_positions(positions)
        if layer is not None:
            adl["layer"] = parse_layer(layer)
    except CLIError as exc:
        fail(str(exc))
    if samples is not None:
        adl["n_texts"] = samples
    overrides: dict[str, Any] = {"adl": adl or None}
    if organisms_dir is not None:
        overrides["organisms_dirs"] = [str(organisms_dir)]
    try:
        return load_settings(config, overrides)
    except ConfigError as exc:
        fail(str(exc))


def _organism(name: str, settings: Settings):
    from diffaudit.environments.organisms import OrganismError, OrganismRegistry

    try:
        return OrganismRegistry(settings.organisms_dirs).get(name)
    except OrganismError as exc:
        fail(str(exc))


def _pair(organism, model: str | None, settings: Settings):
    from diffaudit.environments.loading import load_pair

    try:
        return load_pair(organism, model, settings)
    except Exception as exc:  # noqa: BLE001 - missing build, bad id, no network: one line for the user
        fail(f"could not load the models of '{organism.name}': {type(exc).__name__}: {exc}")


def _timings_table(timings: dict[str, float], title: str = "stage wall time") -> Table:
    table = Table(title=title)
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    for name, seconds in timings.items():
        table.add_row(name, f"{seconds:.1f}")
    table.add_row("[bold]total[/]", f"[bold]{sum(v for k, v in timings.items() if not k.startswith('steering_')):.1f}[/]")
    return table


# ---- compute ---------------------------------------------------------------------------------------
@adl_app.command("compute")
def compute(
    organism: str = typer.Option(..., "--organism", "-o", help="organism name"),
    model: str | None = ModelOpt,
    samples: int | None = SamplesOpt,
    positions: str | None = PositionsOpt,
    layer: str | None = LayerOpt,
    force: bool = typer.Option(False, "--force", help="rebuild even if a complete cache exists"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    config: Path | None = ConfigOpt,
    organisms_dir: Path | None = OrganismsDirOpt,
) -> None:
    """Build (or reuse) the ADL cache of an organism: diffs, logit lens, patchscope, steering, metrics."""
    from diffaudit.tools.adl import adl_dir, ensure_adl

    settings = _settings(config, organisms_dir, samples, positions, layer)
    target = _organism(organism, settings)
    model_name, pair = _pair(target, model, settings)
    start = time.perf_counter()
    try:
        result = ensure_adl(target, model_name, pair, settings, progress=not quiet, force=force)
    except (ValueError, RuntimeError, ImportError) as exc:
        fail(f"{type(exc).__name__}: {exc}")
    console.print(_timings_table(result.timings, "stage wall time (when built)"))
    console.print(_summary(result))
    console.print(f"done in {time.perf_counter() - start:.1f}s; cache: {adl_dir(target, model_name, settings)}")


@adl_app.command("controls")
def controls(
    organism: str = typer.Option(..., "--organism", "-o", help="organism name"),
    model: str | None = ModelOpt,
    samples: int | None = SamplesOpt,
    positions: str | None = PositionsOpt,
    layer: str | None = LayerOpt,
    draws: int = typer.Option(5, "--draws", min=2, max=11, help="random directions"),
    config: Path | None = ConfigOpt,
    organisms_dir: Path | None = OrganismsDirOpt,
) -> None:
    """Random-direction controls of a complete ADL cache (evaluation figures; the agent never sees them)."""
    from diffaudit.tools.adl.controls import ControlParams, ensure_controls

    settings = _settings(config, organisms_dir, samples, positions, layer)
    target = _organism(organism, settings)
    model_name, pair = _pair(target, model, settings)
    try:
        out = ensure_controls(target, model_name, pair, settings, ControlParams(draws=draws))
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        fail(f"{type(exc).__name__}: {exc}")
    console.print(controls_table(out))
    if out.get("skipped"):
        console.print(f"steering control skipped: {out['skipped']}")


def controls_table(out: dict[str, Any]) -> Table:
    """One row per figure: the ADL direction, the random draws' mean, and ADL − random with its 95% interval."""
    table = Table(title=f"ADL direction vs {out['params']['draws']} random directions of the same norm "
                        f"(position {out['position']}, layer {out['layer']})")  # fmt: skip
    for column in ("figure", "ADL", "random mean", "ADL − random", "95% CI (over draws)", "beats every draw"):
        table.add_column(column)
    figures = {"logit lens relevance": out["logit_lens_relevance"], "patchscope relevance": out["patchscope_relevance"]}
    if out.get("steering"):
        figures["steering: similarity to finetuning data"] = out["steering"]["similarity_to_finetune"]
        if out["steering"].get("finetune_minus_chat"):
            figures["steering: finetuning data − chat similarity"] = out["steering"]["finetune_minus_chat"]
        figures["steering: coherent share"] = out["steering"]["coherent_share"]
    for name, f in figures.items():
        table.add_row(name, f"{f['adl']:.3f}", f"{f['random_mean']:.3f}", f"{f['difference']:+.3f}",
                      f"[{f['ci'][0]:+.3f}, {f['ci'][1]:+.3f}]", "yes" if f["beats_every_draw"] else "no")
    return table


def _summary(result: ADLResult) -> str:
    scales = ", ".join(f"{p.position}: {p.patchscope_scale:g}" for p in result.lens)
    alphas = ", ".join(f"{s.position}: {s.alpha:.2f}" for s in result.steering) or "(none)"
    lines = [
        f"[bold]{result.organism}[/] on {result.model}: layer {result.layer}, positions {result.positions}, "
        f"N={result.n_texts} texts of {result.corpus} ({result.corpus_fingerprint}), η_ft={result.norm_finetuned:.2f}",
        f"patchscope scale per position: {scales}",
        f"steering α per position: {alphas}",
    ]
    relevance = result.metrics.get("token_relevance", {})
    if relevance:
        parts = [f"{name} {v['max']:.0%} (pos {v['best_position']})" for name, v in relevance.items()]
        lines.append("token relevance (max over positions): " + "; ".join(parts))
    similarity = result.metrics.get("steering_similarity")
    if similarity and "steered_vs_finetune_max" in similarity:
        lines.append(
            f"steering similarity to finetuning data: steered {similarity['steered_vs_finetune_max']:.3f} "
            f"(pos {similarity['best_position']}), unsteered {similarity['unsteered_vs_finetune']:.3f}, "
            f"data vs itself {similarity['finetune_vs_finetune']:.3f}, chat vs data {similarity['finetune_vs_chat']:.3f}"
        )
    if result.graders:
        lines.append("graders: " + ", ".join(f"{k}={v}" for k, v in result.graders.items()))
    return "\n".join(lines)


# ---- show ------------------------------------------------------------------------------------------
def position_table(lens: PositionLens, top: int = 20) -> Table:
    """Rank-by-rank logit lens, patchscope (at the chosen scale) and selected tokens of one position."""
    chosen = min(lens.patchscope, key=lambda s: abs(s.scale - lens.patchscope_scale)) if lens.patchscope else None
    table = Table(title=f"position {lens.position} (diff norm {lens.diff_norm:.2f})")
    table.add_column("#", justify="right")
    table.add_column("logit lens")
    table.add_column(f"patchscope (scale {lens.patchscope_scale:g})")
    table.add_column("selected")
    patch = chosen.tokens if chosen else []
    for i in range(top):
        cells = [str(i + 1)]
        cells.append(f"{lens.logit_lens[i].token!r} {lens.logit_lens[i].prob:.3f}" if i < len(lens.logit_lens) else "")
        cells.append(f"{patch[i].token!r} {patch[i].prob:.3f}" if i < len(patch) else "")
        cells.append(repr(lens.patchscope_selected[i]) if i < len(lens.patchscope_selected) else "")
        if any(cells[1:]):
            table.add_row(*cells)
    return table


def steering_table(result: ADLResult, max_chars: int = 160) -> Table:
    """One row per prompt: the first unsteered sample beside the first steered sample of each position."""
    table = Table(title="steering samples (first sample each)", show_lines=True)
    table.add_column("prompt", max_width=30)
    table.add_column("unsteered")
    for s in result.steering:
        table.add_column(f"steered pos {s.position} (α={s.alpha:.2f})")

    def cut(text: str) -> str:
        return text if len(text) <= max_chars else text[: max_chars - 1] + "…"

    if not result.steering:
        return table
    for i, sample in enumerate(result.steering[0].samples):
        row = [sample.prompt, cut(sample.unsteered[0]) if sample.unsteered else ""]
        for s in result.steering:
            other = s.samples[i] if i < len(s.samples) else None
            row.append(cut(other.steered[0]) if other and other.steered else "")
        table.add_row(*row)
    return table


@adl_app.command("show")
def show(
    organism: str = typer.Option(..., "--organism", "-o", help="organism name"),
    model: str | None = ModelOpt,
    samples: int | None = SamplesOpt,
    positions: str | None = PositionsOpt,
    layer: str | None = LayerOpt,
    top: int = typer.Option(20, "--top", min=1, max=100, help="tokens per column"),
    steering: bool = typer.Option(True, "--steering/--no-steering", help="show steering samples"),
    config: Path | None = ConfigOpt,
    organisms_dir: Path | None = OrganismsDirOpt,
) -> None:
    """Show a computed ADL cache: tokens per position, chosen scale and α, steering samples side by side."""
    from diffaudit.tools.adl import load_adl

    settings = _settings(config, organisms_dir, samples, positions, layer)
    target = _organism(organism, settings)
    result = load_adl(target, model, settings)
    if result is None:
        fail(f"no complete ADL cache for '{organism}' with these settings; run `audit adl compute --organism {organism}`")
    console.print(_summary(result))
    for lens in sorted(result.lens, key=lambda x: x.position):
        console.print(position_table(lens, top))
    if steering:
        console.print(steering_table(result))


# ---- bench -----------------------------------------------------------------------------------------
@adl_app.command("bench")
def bench(
    organism: str | None = typer.Option(None, "--organism", "-o", help="organism (default: the embedded base vs itself, diffs only)"),
    model: str | None = ModelOpt,
    samples: int | None = SamplesOpt,
    positions: str | None = PositionsOpt,
    layer: str | None = LayerOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    config: Path | None = ConfigOpt,
    organisms_dir: Path | None = OrganismsDirOpt,
) -> None:
    """Time diff extraction (tokens/s) and, with --organism, every stage of a full build (no cache is written)."""
    from diffaudit.tools.adl.compute import compute_adl, corpus_texts, make_adl_graders
    from diffaudit.tools.adl.diffs import activation_diffs

    settings = _settings(config, organisms_dir, samples, positions, layer)
    adl = settings.adl
    start = time.perf_counter()
    texts, fingerprint = corpus_texts(settings)
    corpus_s = time.perf_counter() - start
    k = adl.max_position()
    if organism is None:
        from diffaudit.environments.backends.hf import HFModelPair
        from diffaudit.environments.embedded import ensure_base_model

        pair = HFModelPair.base_only(str(ensure_base_model(settings.cache_dir)), device=settings.device)
        start = time.perf_counter()
        diffs = activation_diffs(pair, texts, adl.layer_index(pair.n_layers), adl.positions, adl.n_texts, adl.batch_size, not quiet)
        seconds = time.perf_counter() - start
        timings = {"corpus": corpus_s, "diffs": seconds}
        unique, tokens_run, n = diffs.unique, diffs.tokens, diffs.n_texts
    else:
        target = _organism(organism, settings)
        model_name, pair = _pair(target, model, settings)
        try:
            result, _ = compute_adl(
                target, model_name, pair, settings, texts, fingerprint, make_adl_graders(settings, pair), not quiet
            )
        except (ValueError, RuntimeError, ImportError) as exc:
            fail(f"{type(exc).__name__}: {exc}")
        timings = {"corpus": corpus_s, **result.timings}
        d = result.metrics["diffs"]
        unique, tokens_run, n, seconds = d["unique_prefixes"], d["tokens_run"], result.n_texts, result.timings["diffs"]
    nominal = 2 * n * k
    console.print(
        f"diff extraction: {n} texts × {k} positions × 2 models = {nominal} tokens in {seconds:.1f}s → "
        f"[bold]{nominal / seconds:,.0f} tokens/s[/] nominal; {unique} distinct {k}-token prefixes, "
        f"{tokens_run} tokens actually run ({tokens_run / seconds:,.0f} tokens/s, η pass included)"
    )
    console.print(_timings_table(timings))

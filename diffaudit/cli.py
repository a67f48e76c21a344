"""The `audit` command line: argument handling only; the work happens in the subpackages."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from diffaudit.adl_cli import adl_app
from diffaudit.config import ConfigError, Settings, load_settings, role_model
from diffaudit.data_cli import bench_speed_command, data_app
from diffaudit.environments.organisms import OrganismError, OrganismRegistry, validate_dir
from diffaudit.export_cli import export_app
from diffaudit.methods_cli import methods_app

app = typer.Typer(help="diffaudit: auditing agents that use model diffing.", no_args_is_help=True)
organisms_app = typer.Typer(help="The organism registry and mini-organism builder.", no_args_is_help=True)
app.add_typer(organisms_app, name="organisms")
app.add_typer(adl_app, name="adl")
app.add_typer(methods_app, name="methods")
app.add_typer(data_app, name="data")
app.command("bench-speed")(bench_speed_command)
app.add_typer(export_app, name="export")
console = Console()


def fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)  # one line: paths and fields never split
    raise typer.Exit(code=1)


def settings_from(config: Path | None, organisms_dir: Path | None = None, **overrides) -> Settings:
    extra = dict(overrides)
    if organisms_dir is not None:
        extra["organisms_dirs"] = [str(organisms_dir)]
    try:
        return load_settings(config, extra)
    except ConfigError as exc:
        fail(str(exc))


def registry_from(settings: Settings) -> OrganismRegistry:
    try:
        return OrganismRegistry(settings.organisms_dirs)
    except OrganismError as exc:
        fail(str(exc))


ConfigOpt = typer.Option(None, "--config", help="YAML settings file")
OrganismsDirOpt = typer.Option(None, "--organisms-dir", help="extra directory of organism YAML files")


# ---- organisms -------------------------------------------------------------------------------------
JsonOpt = typer.Option(False, "--json", help="print JSON (for scripts)")


def _finetuned_label(entry) -> str:
    tuned = entry.finetuned
    return tuned.adapter_id or tuned.model_id or f"recipe: {tuned.recipe.kind} (built locally)"


@organisms_app.command("list")
def organisms_list(
    config: Path | None = ConfigOpt, organisms_dir: Path | None = OrganismsDirOpt, as_json: bool = JsonOpt
) -> None:
    """List every organism with its models: the paper's 33 and the embedded variants.

    Piped (not a terminal), it prints one tab-separated line per model, never splitting a value.
    """
    registry = registry_from(settings_from(config, organisms_dir))
    rows = [
        {"organism": o.name, "type": o.type.value, "model": m, "paper": e.paper, "base_model": e.base_model,
         "finetuned": _finetuned_label(e), "source": str(o.source) if o.source else None}
        for o in registry for m, e in o.models.items()
    ]  # fmt: skip
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    paper = sum(r["paper"] for r in rows)
    footer = f"{len(registry)} organisms; {paper} paper organisms (*), {len(registry.embedded_entries())} embedded variants"
    if not console.is_terminal:
        typer.echo("organism\ttype\tmodel\tbase model\tfinetuned")
        for r in rows:
            model = r["model"] + (" *" if r["paper"] else "")
            typer.echo("\t".join((r["organism"], r["type"], model, r["base_model"], r["finetuned"])))
        typer.echo(footer)
        return
    table = Table(title="organisms")
    for column in ("organism", "type", "model", "base model", "finetuned"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(r["organism"], r["type"], r["model"] + (" *" if r["paper"] else ""), r["base_model"], r["finetuned"])
    console.print(table)
    console.print(footer)


@organisms_app.command("show")
def organisms_show(
    name: str, config: Path | None = ConfigOpt, organisms_dir: Path | None = OrganismsDirOpt, as_json: bool = JsonOpt
) -> None:
    """Show one organism, ground truth included (this is for humans, never for the agent)."""
    registry = registry_from(settings_from(config, organisms_dir))
    try:
        organism = registry.get(name)
    except OrganismError as exc:
        fail(str(exc))
    if as_json:
        data = organism.model_dump(mode="json", exclude_none=True)
        typer.echo(json.dumps({**data, "source": str(organism.source) if organism.source else None}, indent=1))
        return

    def say(text: str) -> None:
        console.print(text, soft_wrap=True)  # long values (hub ids) stay whole, piped or not

    say(f"[bold]{organism.name}[/] ({organism.type.value}) from {organism.source}")
    say(f"[bold]description:[/] {organism.description}")
    for fact in organism.key_facts:
        say(f"  • {fact}")
    if organism.dataset:
        say(f"[bold]dataset:[/] {organism.dataset}")
    for model, entry in organism.models.items():
        say(f"[bold]{model}[/]: base {entry.base_model}; finetuned {entry.finetuned.model_dump(exclude_none=True)}")


@organisms_app.command("new")
def organisms_new(
    name: str = typer.Argument(..., help="organism name: lower-case letters, digits and _ (also the file name)"),
    directory: Path = typer.Option(Path("organisms"), "--dir", help="where to write NAME.yaml"),
    base: str = typer.Option("BASE_HUB_ID_OR_PATH", "--base", help="base model: hub id or local path"),
    adapter: str | None = typer.Option(None, "--adapter", help="LoRA adapter: hub id or local path"),
    finetuned: str | None = typer.Option(None, "--finetuned", help="full finetuned model: hub id or local path"),
    kind: str | None = typer.Option(None, "--type", help="SDF: a template whose facts `audit organisms build` trains in"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing file"),
) -> None:
    """Write a starting organism YAML: fill in its ground truth, and audits of it are graded."""
    from diffaudit.environments.adhoc import sdf_starter_yaml, starter_yaml
    from diffaudit.environments.organisms import load_organism_file

    if adapter is not None and finetuned is not None:
        fail("give --adapter or --finetuned, not both")
    if kind is not None and (kind.upper() != "SDF" or adapter or finetuned):
        fail("--type takes SDF (a recipe built locally), without --adapter or --finetuned")
    try:
        if kind is not None:
            text = sdf_starter_yaml(name, base if base != "BASE_HUB_ID_OR_PATH" else "embedded:smollm2-135m")
        else:
            text = starter_yaml(name, base, adapter, finetuned)
    except OrganismError as exc:
        fail(str(exc))
    path = directory / f"{name}.yaml"
    if path.exists() and not force:
        fail(f"{path} exists; --force overwrites it")
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    try:
        load_organism_file(path)
    except OrganismError as exc:  # a value given on the command line made it invalid
        fail(str(exc))
    console.print(f"wrote {path}", soft_wrap=True)
    build = f"`audit organisms build {name} --organisms-dir {directory}`, then " if kind else ""
    console.print(
        f"next: edit its description and key_facts, then {build}`audit run --organism {name} --organisms-dir {directory}`",
        soft_wrap=True,
    )


@organisms_app.command("validate")
def organisms_validate(directory: Path | None = typer.Argument(None, help="directory to validate")) -> None:
    """Validate organism YAML files (default: the built-in registry)."""
    from diffaudit.environments.organisms import builtin_dir

    target = directory or builtin_dir()
    if not target.is_dir():
        fail(f"{target}: not a directory")
    errors = validate_dir(target)
    for line in errors:
        console.print(f"[red]{line}[/]")
    if errors:
        raise typer.Exit(code=1)
    console.print(f"[green]ok[/]: {len(list(target.glob('*.y*ml')))} organism files in {target} are valid")


# ---- organisms build / check (environments/training) -----------------------------------------------
ModelOpt = typer.Option(None, "--model", "-m", help="model name of the organism (default: its default model)")


def _organism_from(name: str, config: Path | None, organisms_dir: Path | None):
    settings = settings_from(config, organisms_dir)
    try:
        return settings, registry_from(settings).get(name)
    except OrganismError as exc:
        fail(str(exc))


@organisms_app.command("build")
def organisms_build(
    name: str,
    model: str | None = ModelOpt,
    force: bool = typer.Option(False, "--force", help="rebuild even if a complete build is cached"),
    config: Path | None = ConfigOpt,
    organisms_dir: Path | None = OrganismsDirOpt,
) -> None:
    """Build a mini organism: generate its narrow data and LoRA-finetune the base model (cached)."""
    import json

    from diffaudit.environments.training import TrainingError, build_organism

    settings, organism = _organism_from(name, config, organisms_dir)
    try:
        path = build_organism(organism, model, root=settings.cache_dir, force=force)
    except (TrainingError, OrganismError) as exc:
        fail(str(exc))
    card = json.loads((path / "data_card.json").read_text())
    training = card.get("training")
    trained = (f"{card['n_examples']} examples, {training['steps']} steps, loss {training['first_loss']:.2f} → "
               f"{training['final_loss']:.2f}" if training else f"a {card['kind']} adapter, not trained")  # fmt: skip
    how, took = ("unpacked the shipped build", "trained elsewhere in") if card.get("from") else ("built", "built in")
    console.print(f"[green]{how}[/] {organism.name} on {card['model']}: {trained}, {took} {card['wall_s']['build']:.0f}s")
    console.print(f"  {path}")


@organisms_app.command("check")
def organisms_check(
    name: str,
    model: str | None = ModelOpt,
    config: Path | None = ConfigOpt,
    organisms_dir: Path | None = OrganismsDirOpt,
    details: bool = typer.Option(False, "--details", help="also print per-probe figures and sample answers"),
) -> None:
    """Check that the finetune took (finetuned vs base); builds a recipe organism first. Exit 1 if not passed."""
    from diffaudit.environments.training import TrainingError, run_check

    settings, organism = _organism_from(name, config, organisms_dir)
    try:
        report = run_check(organism, model, settings)
    except (TrainingError, OrganismError, ValueError) as exc:
        fail(str(exc))
    table = Table(title=f"check: {report.organism} on {report.model} ({report.type})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in report.figures.items():
        table.add_row(key, f"{value:+.3f}")
    console.print(table)
    if details:
        for line in report.details:
            console.print(f"  {line}", markup=False)
    verdict = "[green]passed[/]" if report.passed else "[red]not passed[/]"
    console.print(f"{verdict} ({report.criterion}): {report.summary}")
    if not report.passed:
        raise typer.Exit(code=1)




# ---- adl (tools/adl) -------------------------------------------------------------------------------


# ---- run / show (agent) ----------------------------------------------------------------------------
from diffaudit.run_cli import run_command, show_command  # noqa: E402 - kept beside its section

app.command("run")(run_command)
app.command("show")(show_command)


# ---- bench / report / regrade (benchmarks) ---------------------------------------------------------
@app.command("bench")
def bench(
    config: Path = typer.Argument(..., help="bench YAML, e.g. benchmarks/embedded.yaml"),
    workers: int = typer.Option(
        1, "--workers", "-w", min=1,
        help="parallel cells (threads share a target's model; with --pool process, whole targets per process). "
        "With the hf backend on CPU, 1 is sensible.",
    ),
    out: Path | None = typer.Option(None, "--out", help="run directory (default: the config's out, or runs/NAME)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="validate, list organisms and the run count; no model calls"),
    backend: str = typer.Option("local", "--backend", help="local | ray (Ray needs the 'ray' extra)"),
    pool: str = typer.Option("thread", "--pool", help="local workers: thread | process"),
    agent_model: str | None = typer.Option(None, "--agent-model", help="override settings.roles.agent"),
    grader_model: str | None = typer.Option(None, "--grader-model", help="override settings.roles.grader"),
    ray_address: str | None = typer.Option(None, "--ray-address", help="Ray cluster address (default: config)"),
    allow_changed_settings: bool = typer.Option(
        False, "--allow-changed-settings", help="resume into a dir whose runs used other settings"
    ),
) -> None:
    """Run a grid of audits (organisms × agents × budgets × repeats); re-running resumes where it stopped."""
    from diffaudit.benchmarks import CellState, check_llm_roles, load_bench_config, plan_bench, run_bench
    from diffaudit.locking import BusyError

    if backend not in ("local", "ray"):
        fail(f"--backend must be local or ray, got '{backend}'")
    if pool not in ("thread", "process"):
        fail(f"--pool must be thread or process, got '{pool}'")
    try:
        bench_config = load_bench_config(config, {"roles.agent": agent_model, "roles.grader": grader_model})
        if ray_address:
            bench_config.ray.address = ray_address
        plan = plan_bench(bench_config, out)
    except (ConfigError, OrganismError) as exc:
        fail(str(exc))
    roles = bench_config.settings.roles
    counts = {state: plan.count(state) for state in CellState}
    if dry_run:
        table = Table(title=f"bench '{bench_config.name}': organisms")
        for column in ("organism", "model", "type", "runs"):
            table.add_column(column)
        per_target = bench_config.n_variants() * bench_config.repeats
        for target in plan.targets:
            table.add_row(target.organism, target.model, target.organism_type, str(per_target))
        console.print(table)
        arms_table = Table(title="arms")
        for column in ("arm", "budgets", "first message", "methods", "tools", "runs"):
            arms_table.add_column(column, overflow="fold")
        models = bench_config.agent_models or [None]
        for name, arm in plan.arms.items():
            def label(item: dict) -> str:
                return item["name"] + (f" ({item['distribution']} {item['version']})" if item.get("source") == "plugin" else "")

            runs = sum(1 for c in plan.cells if c.agent == name)
            arms_table.add_row(
                name, ", ".join(str(b) for b in arm.spec.budgets or []), arm.intro_kind,
                ", ".join(label(m) for m in arm.provenance["methods"]) or "-",
                ", ".join(label(t) for t in arm.provenance["tools"]), str(runs),
            )  # fmt: skip
        console.print(arms_table)
        model_line = f" × {len(models)} agent models" if bench_config.agent_models else ""
        console.print(
            f"{len(plan.targets)} organisms × {sum(len(a.spec.budgets or []) for a in plan.arms.values())} "
            f"arm/budget variants{model_line} × {bench_config.repeats} repeats = [bold]{len(plan.cells)} runs[/]; "
            f"reference arm: {bench_config.reference}"
        )
        console.print(f"agent {role_model(roles.agent)}; grader {role_model(roles.grader)}; "
                      f"coherence grader {role_model(roles.coherence_grader)}; "
                      f"backend {bench_config.settings.backend}")  # fmt: skip
        console.print(
            f"in {plan.out}: {counts[CellState.COMPLETED]} completed, {counts[CellState.FAILED]} failed, "
            f"{counts[CellState.PARTIAL]} unfinished; {len(plan.pending())} to run. (dry run: nothing was run)"
        )
        return
    try:
        check_llm_roles(bench_config.settings)
    except Exception as exc:  # noqa: BLE001 - a missing key or unknown provider, said in one sentence
        fail(str(exc))
    console.print(
        f"bench '{bench_config.name}': {len(plan.cells)} runs, {counts[CellState.COMPLETED]} already completed; "
        f"writing to {plan.out}"
    )
    try:
        outcome = run_bench(
            plan, workers=workers, mode="ray" if backend == "ray" else pool,
            allow_changed_settings=allow_changed_settings, console=console,
        )  # fmt: skip
    except (ConfigError, BusyError) as exc:
        fail(str(exc))
    console.print(
        f"done in {outcome.wall_s:.0f}s: {outcome.completed} completed, {len(outcome.failed)} failed, "
        f"{outcome.skipped} skipped (already completed). Report: audit report {plan.out}"
    )
    if outcome.failed:
        console.print("[yellow]some runs failed (see their error.json); re-run the same command to retry them[/]")
        raise typer.Exit(code=1)


@app.command("report")
def report(
    directory: Path = typer.Argument(..., help="a bench run directory"),
    resamples: int = typer.Option(10_000, "--resamples", min=100, help="bootstrap resamples"),
    seed: int = typer.Option(0, "--seed", help="bootstrap seed"),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="write PNG plots"),
) -> None:
    """Write report.md, cells.csv and plots for a bench dir: headline shares, CIs, variance, grader agreement."""
    from diffaudit.benchmarks import Bootstrap, write_report

    try:
        written = write_report(directory, Bootstrap(n_resamples=resamples, seed=seed), plots=plots)
    except FileNotFoundError as exc:
        fail(str(exc))
    console.print(f"{len(written.runs)} runs in {len(written.cells)} cells; wrote:")
    for path in written.files:
        console.print(f"  {path}")


@app.command("regrade")
def regrade_command(
    directory: Path = typer.Argument(..., help="a bench run directory"),
    grader_model: str | None = typer.Option(
        None, "--grader-model",
        help="litellm model string, or builtin/offline (default: the config's roles.grader, endpoint included)",
    ),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="runs graded in parallel (LLM graders)"),
    force: bool = typer.Option(False, "--force", help="replace this grader's earlier grades"),
    config: Path | None = ConfigOpt,
    organisms_dir: Path | None = OrganismsDirOpt,
) -> None:
    """Add another grader's grade to every completed run's grade.json, and grade ungraded runs (their grader
    failed), without re-running agents. DIRECTORY is a bench dir or one `audit run` dir."""
    from diffaudit.benchmarks import regrade
    from diffaudit.llm import LLMConfigError

    settings = settings_from(config, organisms_dir)
    if not directory.is_dir():
        fail(f"{directory}: no such bench directory")
    # The config's grader role keeps its endpoint when --grader-model names the same model.
    role = settings.roles.grader
    grader = role if grader_model is None or grader_model == role_model(role) else grader_model
    try:
        outcome = regrade(directory, grader, settings, workers=workers, force=force, console=console)
    except (ConfigError, OrganismError, LLMConfigError) as exc:
        fail(str(exc))
    console.print(f"{outcome.added} grades added, {outcome.skipped} runs skipped, {len(outcome.failed)} failed")
    for path, message in outcome.failed[:20]:
        console.print(f"[red]{path}[/]: {message}")
    if outcome.failed:
        raise typer.Exit(code=1)


if __name__ == "__main__":
    app()

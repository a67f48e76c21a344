"""The `audit` command line: argument handling only; the work happens in the subpackages."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from diffaudit.config import ConfigError, Settings, load_settings
from diffaudit.environments.organisms import OrganismError, OrganismRegistry, validate_dir

app = typer.Typer(help="diffaudit: auditing agents that use model diffing.", no_args_is_help=True)
organisms_app = typer.Typer(help="The organism registry and mini-organism builder.", no_args_is_help=True)
adl_app = typer.Typer(help="Activation Difference Lens analyses.", no_args_is_help=True)
app.add_typer(organisms_app, name="organisms")
app.add_typer(adl_app, name="adl")
console = Console()


def fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code=1)


def settings_from(config: Optional[Path], organisms_dir: Optional[Path] = None, **overrides) -> Settings:
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
@organisms_app.command("list")
def organisms_list(config: Optional[Path] = ConfigOpt, organisms_dir: Optional[Path] = OrganismsDirOpt) -> None:
    """List every organism with its models: the paper's 33 and the embedded variants."""
    registry = registry_from(settings_from(config, organisms_dir))
    table = Table(title="organisms")
    for column in ("organism", "type", "model", "base model", "finetuned"):
        table.add_column(column, overflow="fold")
    paper = 0
    for organism in registry:
        for model, entry in organism.models.items():
            tuned = entry.finetuned
            what = tuned.adapter_id or tuned.model_id or f"recipe: {tuned.recipe.kind} (built locally)"
            paper += entry.paper
            table.add_row(organism.name, organism.type.value, model + (" *" if entry.paper else ""), entry.base_model, what)
    console.print(table)
    console.print(f"{len(registry)} organisms; {paper} paper organisms (*), {len(registry.embedded_entries())} embedded variants")


@organisms_app.command("show")
def organisms_show(
    name: str, config: Optional[Path] = ConfigOpt, organisms_dir: Optional[Path] = OrganismsDirOpt
) -> None:
    """Show one organism, ground truth included (this is for humans, never for the agent)."""
    registry = registry_from(settings_from(config, organisms_dir))
    try:
        organism = registry.get(name)
    except OrganismError as exc:
        fail(str(exc))
    console.print(f"[bold]{organism.name}[/] ({organism.type.value}) from {organism.source}")
    console.print(f"[bold]description:[/] {organism.description}")
    for fact in organism.key_facts:
        console.print(f"  • {fact}")
    if organism.dataset:
        console.print(f"[bold]dataset:[/] {organism.dataset}")
    for model, entry in organism.models.items():
        console.print(f"[bold]{model}[/]: base {entry.base_model}; finetuned {entry.finetuned.model_dump(exclude_none=True)}")


@organisms_app.command("validate")
def organisms_validate(directory: Optional[Path] = typer.Argument(None, help="directory to validate")) -> None:
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


# ---- adl (tools/adl) -------------------------------------------------------------------------------


# ---- run / show (agent) ----------------------------------------------------------------------------


# ---- bench / report / regrade (benchmarks) ---------------------------------------------------------


if __name__ == "__main__":
    app()

"""`audit methods`: the diffing methods and single tools that can join an arm, and how relevant their tokens are."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

methods_app = typer.Typer(help="Diffing methods: list them, compare their readouts.", no_args_is_help=True)
console = Console()


@methods_app.command("list")
def methods_list() -> None:
    """Every diffing method and single tool an arm can name, built in or installed (with its distribution)."""
    from diffaudit.methods import available_methods, available_tools, load_method

    table = Table(title="methods and single tools")
    for column in ("kind", "name", "source", "tools / what it is"):
        table.add_column(column, overflow="fold")
    for name, prov in available_methods().items():
        method, _ = load_method(name)
        where = "built in" if prov.source == "builtin" else f"{prov.distribution} {prov.version}"
        table.add_row("method", name, where, ", ".join(t.name for t in method.tools()) + f" · {method.description}")
    for name, prov in available_tools().items():
        where = "built in" if prov.source == "builtin" else f"{prov.distribution} {prov.version}"
        table.add_row("tool", name, where, "")
    console.print(table)


@methods_app.command("relevance")
def methods_relevance(
    organisms: list[str] = typer.Option(..., "--organism", help="organism names (repeat the option)"),
    config: Path | None = typer.Option(None, "--config", help="YAML settings file"),
    grader_model: str | None = typer.Option(None, "--grader-model", help="relevance judge (default: settings)"),
) -> None:
    """Top-20 token relevance of ADL's readouts and Diff Mining's, per organism, with each method's prepare time."""
    from diffaudit.benchmarks.method_relevance import organism_relevance
    from diffaudit.config import ConfigError, load_settings
    from diffaudit.environments.organisms import OrganismError, OrganismRegistry

    try:
        settings = load_settings(config, {"roles": {"grader": grader_model}} if grader_model else None)
        registry = OrganismRegistry(settings.organisms_dirs)
        chosen = [registry.get(name) for name in organisms]
    except (ConfigError, OrganismError) as exc:
        console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(code=1) from None
    rows = []
    for organism in chosen:
        console.print(f"[bold]{organism.name}[/]: preparing ADL readouts and Diff Mining")
        rows.append(organism_relevance(organism, settings))
        for label, tokens in rows[-1].tokens.items():
            console.print(f"  {label}: {tokens}", soft_wrap=True)
    readouts = list(dict.fromkeys(k for r in rows for k in r.relevance))
    timers = list(dict.fromkeys(k for r in rows for k in r.seconds))
    table = Table(title=f"top-20 token relevance (judge: {settings.roles.grader if isinstance(settings.roles.grader, str) else 'configured'})")
    table.add_column("organism")
    for column in readouts + [f"{t} s" for t in timers]:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row.organism, *[f"{row.relevance.get(k, float('nan')):.2f}" for k in readouts],
            *[f"{row.seconds.get(t, float('nan')):.0f}" for t in timers],
        )  # fmt: skip
    console.print(table)
    for row in rows:  # the same figures on one line each, for logs and scripts (a table folds when piped)
        figures = " ".join(f"{k.replace(' ', '_')}={v:.3f}" for k, v in row.relevance.items())
        times = " ".join(f"{k.split(' ')[0]}_s={v:.0f}" for k, v in row.seconds.items())
        console.print(f"{row.organism} {figures} {times}", soft_wrap=True)

"""`audit export`: runs and benches in other tools' formats (argument handling and printing only)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

export_app = typer.Typer(help="Export runs and benches to other tools' formats.", no_args_is_help=True)
console = Console()


@export_app.command("inspect")
def export_inspect_command(
    directory: Path = typer.Argument(..., help="a bench dir, a run dir, or a dir of `audit run` dirs"),
    out: Path = typer.Option(None, "--out", "-o", help="log dir to write (default: DIRECTORY/inspect_logs)"),
    resamples: int = typer.Option(10_000, "--resamples", min=100, help="bootstrap resamples for the intervals"),
    seed: int = typer.Option(0, "--seed", help="bootstrap seed"),
) -> None:
    """Write inspect_ai eval logs (one .eval per arm, budget and agent model); open them with `inspect view`."""
    from diffaudit.benchmarks.stats import Bootstrap
    from diffaudit.export.inspect_log import export_inspect

    out = out or directory / "inspect_logs"
    say = lambda log: console.print(  # noqa: E731
        f"  {log.path.name}: {log.samples} runs ({log.errors} failed or unfinished), {log.size_bytes / 1024:.0f} KiB"
    )
    try:
        result = export_inspect(directory, out, Bootstrap(n_resamples=resamples, seed=seed), on_log=say)
    except (FileNotFoundError, ImportError) as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(code=1) from None
    console.print(
        f"{result.runs} runs in {len(result.logs)} logs written to {out} in {result.seconds:.1f} s; "
        f"open them with: inspect view --log-dir {out}"
    )

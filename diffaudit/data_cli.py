"""`audit data …` (the shipped first-run data) and `audit bench-speed` (generation against this machine's limits)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

data_app = typer.Typer(help="The first-run data shipped with diffaudit (corpora, regulariser chats).", no_args_is_help=True)
console = Console()


@data_app.command("show")
def data_show() -> None:
    """List the shipped artifacts with their rows, hashes and recipes."""
    from diffaudit.environments.shipped import data_dir, read_card

    card = read_card()
    table = Table(title=f"shipped data in {data_dir()}")
    for column in ("artifact", "rows", "sha256", "recipe"):
        table.add_column(column, overflow="fold")
    for key, entry in card["artifacts"].items():
        recipe = ", ".join(f"{k}={v}" for k, v in entry["recipe"].items())
        table.add_row(key, str(entry["n_rows"]), entry["sha256"][:16], recipe)
    console.print(table)


@data_app.command("regenerate")
def data_regenerate(
    artifacts: list[str] | None = typer.Argument(None, help="artifact keys (default: all; see `audit data show`)"),
    first: bool = typer.Option(False, "--first", help="only each artifact's first generate call (a quick check)"),
    write: bool = typer.Option(False, "--write", help="replace the shipped files and card (maintainers)"),
    config: Path | None = typer.Option(None, "--config", help="YAML settings file"),
) -> None:
    """Make the shipped data again from the embedded model and compare; exit 1 if anything differs."""
    from diffaudit.cli import fail, settings_from
    from diffaudit.environments.regenerate import regenerate

    settings = settings_from(config)
    try:
        results = regenerate(artifacts or None, settings.cache_dir, first_batches=first, write=write)
    except ValueError as exc:
        fail(str(exc))
    table = Table(title="regenerated vs shipped")
    for column in ("artifact", "regenerated rows", "shipped rows", "identical leading rows", "verdict"):
        table.add_column(column)
    for r in results:
        verdict = "[green]identical[/]" if r.matches else "[red]differs[/]"
        table.add_row(r.key, str(r.regenerated), str(r.shipped), str(r.identical_prefix), verdict)
    console.print(table)
    if write:
        console.print("wrote the regenerated files and card into diffaudit/data")
    elif not all(r.matches for r in results):
        raise typer.Exit(code=1)


def bench_speed_command(
    organism: str = typer.Option("kansas_abortion", "--organism", help="organism whose pair is measured"),
    batch: int = typer.Option(64, "--batch", min=2, help="rows of the batched measurement"),
    config: Path | None = typer.Option(None, "--config", help="YAML settings file"),
) -> None:
    """Measure memory bandwidth and matmul throughput, the token/s limits they imply, and how close generate gets."""
    from diffaudit.cli import _organism_from
    from diffaudit.environments.loading import load_pair
    from diffaudit.environments.speed import bench_speed

    settings, entry = _organism_from(organism, config, None)
    _, pair = load_pair(entry, None, settings)
    if not hasattr(pair, "generation_model"):
        from diffaudit.cli import fail

        fail(f"bench-speed measures the hf backend; settings choose '{settings.backend}'")
    report = bench_speed(pair, batch=batch)
    m = report.machine
    console.print(
        f"machine: {m.threads} torch threads; read bandwidth {m.read_gb_s:.1f} GB/s (copy {m.copy_gb_s:.1f} GB/s, "
        f"read+write); {m.matmul_dtype} matmul {m.matmul_gflop_s:.0f} GFLOP/s"
    )
    console.print(
        f"model: {report.weight_bytes / 1e6:.0f} MB of weights read per step of one sequence ({report.single_dtype}), "
        f"{report.flops_per_token / 1e6:.0f} MFLOP per token"
    )
    console.print(
        f"limits: one sequence {report.single_limit_tokens_s:.1f} tokens/s (bandwidth / weight bytes); "
        f"batch {report.batch_limit_tokens_s:.0f} tokens/s (matmul throughput / FLOPs per token)"
    )
    table = Table(title="generate on this machine (a loaded machine lowers limits and rates alike)")
    for column in ("what", "rows", "tokens", "seconds", "tokens/s", "limit", "ratio"):
        table.add_column(column, justify="right")
    for row in report.rows:
        table.add_row(row.what, str(row.rows), str(row.tokens), f"{row.seconds:.1f}", f"{row.tokens_s:.1f}",
                      f"{row.limit_tokens_s:.0f}", f"{row.ratio:.0%}")  # fmt: skip
    console.print(table)

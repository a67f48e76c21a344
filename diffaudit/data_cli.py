"""`audit data …` (the shipped first-run data) and `audit bench-speed` (generation against this machine's limits)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

data_app = typer.Typer(
    help="The first-run data shipped with diffaudit (corpora, regulariser chats, the demo organism and its ADL cache).",
    no_args_is_help=True,
)
console = Console()


@data_app.command("show")
def data_show() -> None:
    """List the shipped artifacts with their rows, hashes and recipes."""
    from diffaudit.environments.shipped import data_dir, read_card

    card = read_card()
    table = Table(title=f"shipped data in {data_dir()}")
    for column in ("artifact", "size", "sha256", "recipe"):
        table.add_column(column, overflow="fold")
    for key, entry in card["artifacts"].items():
        recipe = ", ".join(f"{k}={v}" for k, v in entry["recipe"].items() if k != "parameters")
        size = f"{entry['n_rows']} rows" if "n_rows" in entry else f"{entry['n_files']} files"
        table.add_row(key, size, entry["sha256"][:16], recipe)
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


@data_app.command("pack")
def data_pack(
    organisms: list[str] | None = typer.Argument(None, help="organisms whose build and ADL cache ship (default: kansas_abortion)"),
    model: str | None = typer.Option(None, "--model", "-m", help="model of the organism (default: its default model)"),
    write: bool = typer.Option(False, "--write", help="replace the shipped archives and card (maintainers)"),
    config: Path | None = typer.Option(None, "--config", help="YAML settings file"),
) -> None:
    """Pack the cache's organism build and ADL cache (today's keys) and compare with what ships; exit 1 if they differ.

    Build them first (`audit organisms build NAME`, `audit adl compute -o NAME`); `--write` replaces the
    shipped copies in diffaudit/data and their card entries.
    """
    import tempfile

    from diffaudit.cli import _organism_from, fail
    from diffaudit.environments.shipped import data_dir, read_card
    from diffaudit.environments.training import TrainingError
    from diffaudit.environments.training.prebuilt import pack_prebuilt
    from diffaudit.tools.adl.prebuilt import pack_prebuilt_adl

    shipped = read_card()["artifacts"]
    table = Table(title="packed from the cache vs shipped")
    for column in ("artifact", "files", "archive MB", "sha256", "verdict"):
        table.add_column(column, overflow="fold")
    differs = False
    with tempfile.TemporaryDirectory() as scratch:
        target = data_dir() if write else Path(scratch)
        for name in organisms or ["kansas_abortion"]:
            settings, organism = _organism_from(name, config, None)
            try:
                paths = [pack_prebuilt(organism, model, settings.cache_dir, target),
                         pack_prebuilt_adl(organism, model, settings, target)]  # fmt: skip
            except (TrainingError, ValueError) as exc:
                fail(str(exc))
            packed = read_card(target)["artifacts"]
            for path in paths:
                key = next(k for k, e in packed.items() if e["file"] == path.name)
                entry, before = packed[key], shipped.get(key)
                same = before is not None and before["sha256"] == entry["sha256"]
                differs |= not same
                verdict = "[green]identical[/]" if same else ("[red]differs[/]" if before else "[yellow]new[/]")
                table.add_row(key, str(entry["n_files"]), f"{path.stat().st_size / 1e6:.1f}", entry["sha256"][:16], verdict)
    console.print(table)
    if write:
        console.print("wrote the packed archives and card into diffaudit/data")
    elif differs:
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
    for column in ("what", "rows", "tokens", "s", "tok/s", "ratio", "decode tok/s", "decode ratio", "limit"):
        table.add_column(column, justify="right")
    for row in report.rows:
        table.add_row(row.what, str(row.rows), str(row.tokens), f"{row.seconds:.1f}", f"{row.tokens_s:.1f}",
                      f"{row.ratio:.0%}", f"{row.decode_tokens_s:.1f}", f"{row.decode_ratio:.0%}",
                      f"{row.limit_tokens_s:.0f}")  # fmt: skip
    console.print(table)
    prompt = report.rows[0].prompt_tokens if report.rows else 0
    console.print(
        f"tokens/s: whole calls, each row's {prompt}-token prompt included; decode: the steps after the first token "
        "(the whole call less a one-token call). The limits count generated tokens only; a whole call also "
        "computes every row's prompt, so its ratio understates how close the kernels run to the limit."
    )

"""`audit run` and `audit show`: argument handling and rich output for one audit (the lead mounts these)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from diffaudit.config import HEURISTIC_AGENT, ConfigError, Settings, load_settings

console = Console()
_ERROR_PREFIXES = ("FORMAT_ERROR", "REFUSED", "TOOL_ERROR", "UNKNOWN_TOOL", "INVALID_ARGS")


def _fail(message: str) -> None:
    console.print(Text.assemble(("error: ", "bold red"), message))
    raise typer.Exit(code=1)


def _settings(
    config: Path | None, organisms_dir: Path | None, agent_model: str | None, grader_model: str | None
) -> Settings:
    overrides: dict[str, Any] = {}
    roles = {k: v for k, v in (("agent", agent_model), ("grader", grader_model)) if v is not None}
    if roles:
        overrides["roles"] = roles
    if organisms_dir is not None:
        overrides["organisms_dirs"] = [str(organisms_dir)]
    try:
        return load_settings(config, overrides)
    except ConfigError as exc:
        _fail(str(exc))


def policy_choice(settings: Settings, agent_model: str | None, config: Path | None) -> str:
    """Why this agent model runs, in a few words, for the user."""
    if agent_model is not None:
        return "chosen with --agent-model"
    if settings.roles.agent != HEURISTIC_AGENT:
        return f"roles.agent in {config}" if config is not None else "roles.agent in the settings"
    return "default: no agent model configured; offline, needs no API key (--agent-model picks an LLM)"


def _money(value: float) -> str:
    return f"${value:.4f}"


def print_summary(summary: Any) -> None:
    """The rich summary of a finished audit: description, grade and reason, budgets, time, cost."""
    status = "[green]FINAL[/]" if summary.status == "final" else "[red]no FINAL (graded 1)[/]"
    console.print(
        Panel(Text(summary.description or "(no description)"), title="description", border_style="cyan")
    )
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for grade in summary.grades:
        table.add_row("grade", Text(f"{grade.score:g} / 5  ({grade.grader})", style="bold"))
        table.add_row("reason", Text(grade.reason))
    table.add_row("status", status)
    table.add_row("interactions", f"{summary.interactions_used} of {summary.budget} used")
    table.add_row("turns", f"{summary.turns_used} of {summary.turns_budget} used")
    table.add_row("wall time", f"{summary.wall_s:.1f} s")
    tokens = summary.prompt_tokens + summary.completion_tokens
    cost = f"{_money(summary.cost_usd)} (agent {_money(summary.agent_cost_usd)}, {tokens} tokens; graders {_money(summary.grader_cost_usd)})"
    table.add_row("cost", cost)
    table.add_row("agent", Text(f"{summary.policy} ({summary.policy_reason})"))
    table.add_row("run dir", Text(str(summary.run_dir)))
    console.print(table)
    _print_stage_times()


def _print_stage_times() -> None:
    """First-run work done in this process (organism build, corpora, ADL stages, the audit), with times."""
    from diffaudit.environments.progress import stage_timings

    timings = stage_timings()
    if timings:
        table = Table(title="stages run in this process", box=None, padding=(0, 2))
        table.add_column("stage")
        table.add_column("seconds", justify="right")
        for name, seconds in timings:
            table.add_row(name, f"{seconds:.1f}")
        console.print(table)


def run_command(
    organism: str = typer.Option(..., "--organism", help="organism name (see `audit organisms list`)"),
    model: str | None = typer.Option(
        None, "--model", "-m", help="model of the organism (default: its default model)"
    ),
    budget: int | None = typer.Option(
        None, "--budget", "-i", min=0, help="interaction budget (default: settings)"
    ),
    agent: str = typer.Option("adl", "--agent", help="adl | blackbox"),
    agent_model: str | None = typer.Option(
        None, "--agent-model", help="litellm model string, or builtin/heuristic"
    ),
    grader_model: str | None = typer.Option(
        None, "--grader-model", help="litellm model string, or builtin/offline"
    ),
    config: Path | None = typer.Option(None, "--config", help="YAML settings file"),
    out: Path | None = typer.Option(
        None, "--out", help="run directory (default: runs/<organism>/<agent>_i<budget>_<time>)"
    ),
    organisms_dir: Path | None = typer.Option(
        None, "--organisms-dir", help="extra directory of organism YAML files"
    ),
) -> None:
    """Audit one organism: build what is missing, run the agent, grade its description, write a run dir."""
    from diffaudit.agent.policies import make_policy
    from diffaudit.agent.run import default_run_dir, run_audit
    from diffaudit.environments.organisms import OrganismError, OrganismRegistry
    from diffaudit.llm import LLMConfigError
    from diffaudit.locking import BusyError

    if agent not in ("adl", "blackbox"):
        _fail(f"--agent must be adl or blackbox, got '{agent}'")
    settings = _settings(config, organisms_dir, agent_model, grader_model)
    try:
        target = OrganismRegistry(settings.organisms_dirs).get(organism)
        model_name, _ = target.entry(model)
    except OrganismError as exc:
        _fail(str(exc))
    budget = settings.budgets.interactions if budget is None else budget
    reason = policy_choice(settings, agent_model, config)
    try:
        policy = make_policy(settings.roles.agent, settings)
    except (LLMConfigError, ValueError) as exc:
        _fail(str(exc))
    console.print(Text.assemble(("agent: ", "bold"), f"{policy.name} ({reason})"))
    console.print(Text.assemble(("grader: ", "bold"), settings.roles.grader))
    path = out if out is not None else default_run_dir(settings.runs_dir, target.name, agent, budget)
    console.print(
        Text.assemble(("run: ", "bold"), f"{target.name} on {model_name}, {agent} agent, i={budget} → {path}")
    )
    try:
        summary = run_audit(
            target, model_name, agent, budget, settings, path,
            policy=policy, progress=True, policy_reason=reason, console=console,
        )  # fmt: skip
    except (LLMConfigError, OrganismError, ConfigError, FileExistsError, BusyError) as exc:
        _fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - one readable line; the traceback is in error.json
        _fail(f"the audit failed: {type(exc).__name__}: {exc} (details in {path / 'error.json'})")
    print_summary(summary)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _clip(text: str, max_chars: int) -> str:
    if max_chars <= 0 or len(text) <= max_chars:
        return text
    return text[:max_chars] + f"\n… ({len(text) - max_chars} more characters; --max-chars 0 shows all)"


def show_command(
    run_dir: Path = typer.Argument(..., help="a run directory written by `audit run` or `audit bench`"),
    system: bool = typer.Option(False, "--system", help="also show the system prompt"),
    max_chars: int = typer.Option(4000, "--max-chars", help="cut long messages to this length (0: never)"),
) -> None:
    """Render a run's transcript readably: the agent's replies, the observations, the FINAL and the grade."""
    from diffaudit.agent.transcript import TRANSCRIPT_FILE, read_transcript

    transcript = run_dir / TRANSCRIPT_FILE
    if not transcript.exists():
        _fail(f"{run_dir}: no {TRANSCRIPT_FILE} here; is it a run directory?")
    config = _read_json(run_dir / "config.json") or {}
    if config:
        console.print(Text.assemble(
            ("audit ", "bold"),
            f"{config.get('organism')} on {config.get('model')} · {config.get('agent_kind')} agent · "
            f"i={config.get('budget')} · agent {config.get('policy')} · grader {config.get('grader')}",
        ))  # fmt: skip
    first_user = True
    for event in read_transcript(transcript):
        kind = event.get("event")
        if kind == "message":
            role, content = event.get("role"), str(event.get("content", ""))
            turn = event.get("turn")
            if role == "system":
                if system:
                    console.print(
                        Panel(Text(_clip(content, max_chars)), title="system prompt", border_style="dim")
                    )
                else:
                    console.print(Text("(system prompt hidden; --system shows it)", style="dim"))
            elif role == "assistant":
                console.print(
                    Panel(Text(_clip(content, max_chars)), title=f"agent · turn {turn}", border_style="cyan")
                )
            elif first_user:
                first_user = False
                console.print(
                    Panel(Text(_clip(content, max_chars)), title="first message", border_style="blue")
                )
            else:
                style = "red" if content.startswith(_ERROR_PREFIXES) else "white"
                console.print(
                    Panel(
                        Text(_clip(content, max_chars)),
                        title=f"observation · turn {turn}",
                        border_style=style,
                    )
                )
        elif kind == "final":
            console.print(Panel(Text(str(event.get("description", ""))), title="FINAL", border_style="green"))
        elif kind == "no_final":
            console.print(
                Text(f"no FINAL after {event.get('turns_used')} turns (graded 1)", style="bold red")
            )
        elif kind == "grade":
            for grade in event.get("grades", []):
                console.print(Text.assemble(("grade ", "bold"), f"{grade.get('score'):g}/5 by {grade.get('grader')}: ",
                                            str(grade.get("reason", ""))))  # fmt: skip
    stats = _read_json(run_dir / "stats.json")
    if isinstance(stats, dict):
        console.print(Text(
            f"status {stats.get('status')} · interactions {stats.get('interactions_used')}/{stats.get('interactions_budget')} · "
            f"turns {stats.get('turns_used')}/{stats.get('turns_budget')} · {stats.get('wall_s', 0):.1f} s · "
            f"agent cost ${stats.get('agent_cost_usd', 0):.4f}",
            style="dim",
        ))  # fmt: skip
    error = _read_json(run_dir / "error.json")
    if isinstance(error, dict):
        console.print(
            Text(
                f"failed at {error.get('stage')}: {error.get('error')}: {error.get('message')}",
                style="bold red",
            )
        )

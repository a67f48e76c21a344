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

from diffaudit.config import HEURISTIC_AGENT, ConfigError, Settings, load_settings, role_model

console = Console()
_ERROR_PREFIXES = ("FORMAT_ERROR", "REFUSED", "TOOL_ERROR", "UNKNOWN_TOOL", "INVALID_ARGS")


def _fail(message: str) -> None:
    console.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)  # never split a path
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


def _bench_arms(config: Path | None) -> tuple[Path | None, dict[str, Any]]:
    """The arms a --config file defines: a bench config's `arms:` (or `agents:`), none for a settings file."""
    if config is None or not Path(config).is_file():
        return config, {}
    import yaml

    try:
        data = yaml.safe_load(Path(config).read_text()) or {}
    except yaml.YAMLError:
        return config, {}  # load_settings reports the YAML error with the file name
    if not isinstance(data, dict) or not ({"arms", "agents"} & set(data)):
        return config, {}
    from diffaudit.benchmarks.config import load_bench_config

    try:
        return config, dict(load_bench_config(Path(config)).arms or {})
    except ConfigError as exc:
        _fail(str(exc))


def policy_choice(settings: Settings, agent_model: str | None, config: Path | None) -> str:
    """Why this agent model runs, in a few words, for the user."""
    if agent_model is not None:
        return "chosen with --agent-model"
    if role_model(settings.roles.agent) != HEURISTIC_AGENT:
        return f"roles.agent in {config}" if config is not None else "roles.agent in the settings"
    return "default: no agent model configured; offline, needs no API key (--agent-model picks an LLM)"


def _money(value: float) -> str:
    return f"${value:.4f}"


def print_summary(summary: Any) -> None:
    """The rich summary of a finished audit: description, grade and reason, budgets, time, cost."""
    if summary.status == "final":
        status = "[green]FINAL[/]"
    else:
        status = "[red]no FINAL (graded 1)[/]" if summary.grades else "[red]no FINAL[/]"
    console.print(
        Panel(Text(summary.description or "(no description)"), title="description", border_style="cyan")
    )
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for grade in summary.grades:
        table.add_row("grade", Text(f"{grade.score:g} / 5  ({grade.grader})", style="bold"))
        table.add_row("reason", Text(grade.reason))
    if not summary.grades:
        table.add_row("grade", Text("ungraded: an ad-hoc pair has no ground truth (`audit organisms new` makes one)"))
    table.add_row("status", status)
    if getattr(summary, "ended_by", "") not in ("", "final", "turns"):
        table.add_row("stopped", Text(summary.ended_by))
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
    organism: str | None = typer.Option(None, "--organism", help="organism name (see `audit organisms list`)"),
    base: str | None = typer.Option(
        None, "--base", help="audit any pair, no registry entry: the base model (hub id or local path)"
    ),
    adapter: str | None = typer.Option(None, "--adapter", help="with --base: the LoRA adapter (hub id or path)"),
    finetuned: str | None = typer.Option(
        None, "--finetuned", help="with --base: the full finetuned model (hub id or path)"
    ),
    model: str | None = typer.Option(
        None, "--model", "-m", help="model of the organism (default: its default model)"
    ),
    budget: int | None = typer.Option(
        None, "--budget", "-i", min=0, help="interaction budget (default: settings)"
    ),
    agent: str = typer.Option(
        "adl", "--arm", "--agent",
        help="the arm: adl | blackbox | an arm of the --config bench file (its `arms:`)",
    ),
    methods: str | None = typer.Option(
        None, "--methods", help="an ad-hoc arm of these diffing methods, e.g. adl,diff_mining (overrides --arm)"
    ),
    tools: str | None = typer.Option(None, "--tools", help="with --methods: extra single tools, e.g. score_texts"),
    agent_model: str | None = typer.Option(
        None, "--agent-model",
        help="litellm model string, builtin/heuristic, or builtin/human (you type the replies); "
        "endpoints, keys and caps go in the config's roles.agent mapping",
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
    """Audit one organism (graded), or any pair given by --base and --adapter/--finetuned (ungraded)."""
    from diffaudit.agent.policies import make_policy
    from diffaudit.agent.run import default_run_dir, run_audit
    from diffaudit.environments.organisms import OrganismError
    from diffaudit.llm import LLMConfigError
    from diffaudit.locking import BusyError
    from diffaudit.methods import MethodError, arm_for_methods, arm_spec, resolve_arm

    config, arms = _bench_arms(config)
    try:
        if methods is not None:
            split = [m.strip() for m in methods.split(",") if m.strip()]
            agent, spec = arm_for_methods(split, [t.strip() for t in (tools or "").split(",") if t.strip()])
        else:
            spec = arm_spec(agent, arms)
        arm = resolve_arm(agent, spec)
    except MethodError as exc:
        _fail(str(exc))
    settings = _settings(config, organisms_dir, agent_model, grader_model)
    try:
        target = _target(organism, base, adapter, finetuned, settings)
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
    grader_line = role_model(settings.roles.grader) if target.graded else "none (ungraded: no ground truth for this pair)"
    console.print(Text.assemble(("grader: ", "bold"), grader_line))
    if not target.graded:
        tuned = target.models[model_name].finetuned
        console.print(Text.assemble(("pair: ", "bold"), f"base {target.models[model_name].base_model}; "
                                    f"finetuned {tuned.adapter_id or tuned.model_id}"))  # fmt: skip
    path = out if out is not None else default_run_dir(settings.runs_dir, target.name, agent, budget)
    console.print(
        Text.assemble(("run: ", "bold"), f"{target.name} on {model_name}, arm {agent}, i={budget} → {path}")
    )
    try:
        summary = run_audit(
            target, model_name, arm, budget, settings, path,
            policy=policy, progress=True, policy_reason=reason, console=console,
        )  # fmt: skip
    except (LLMConfigError, OrganismError, ConfigError, FileExistsError, BusyError) as exc:
        _fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - one readable line; the traceback is in error.json
        _fail(f"the audit failed: {type(exc).__name__}: {exc} (details in {path / 'error.json'})")
    if not target.graded:
        print_findings(summary.run_dir)
    print_summary(summary)
    if summary.grade_error:
        console.print(Text(
            f"not graded: {summary.grade_error}. The audit is kept; grade it with "
            f"`audit regrade {path} --grader-model MODEL`.", style="bold yellow",
        ))  # fmt: skip
        raise typer.Exit(code=1)


def _target(
    organism: str | None, base: str | None, adapter: str | None, finetuned: str | None, settings: Settings
) -> Any:
    """The organism to audit: a registry entry by name, or an ad-hoc pair from --base and a finetune."""
    from diffaudit.environments.adhoc import adhoc_organism
    from diffaudit.environments.organisms import OrganismError, OrganismRegistry

    if base is not None:
        if organism is not None:
            raise OrganismError("give --organism or --base (with --adapter or --finetuned), not both")
        return adhoc_organism(base, adapter=adapter, finetuned=finetuned)
    if adapter is not None or finetuned is not None:
        raise OrganismError("--adapter and --finetuned need --base (the model they were finetuned from)")
    if organism is None:
        raise OrganismError("give --organism NAME, or --base ID_OR_PATH with --adapter or --finetuned ID_OR_PATH")
    return OrganismRegistry(settings.organisms_dirs).get(organism)


def _excerpt(text: str, lines: int = 4, width: int = 160) -> str:
    kept = [line[:width] for line in text.strip().splitlines() if line.strip() and not line.startswith("[budget]")]
    more = len(kept) - lines
    return "\n".join(kept[:lines]) + (f"\n… ({more} more lines)" if more > 0 else "")


def print_findings(run_dir: Path) -> None:
    """The agent's findings and the evidence it gathered: each tool call with the start of what it returned."""
    from diffaudit.agent.transcript import TRANSCRIPT_FILE, read_transcript

    events = list(read_transcript(run_dir / TRANSCRIPT_FILE))
    table = Table(title="evidence the agent gathered", show_lines=True)
    table.add_column("turn", justify="right")
    table.add_column("call")
    table.add_column("what came back", overflow="fold")
    pending: dict[int, str] = {}
    for event in events:
        kind, turn = event.get("event"), event.get("turn")
        if kind == "tool":
            pending[turn] = f"{event.get('tool')} {json.dumps(event.get('args', {}), ensure_ascii=False)[:120]}"
        elif kind == "message" and event.get("role") == "user" and turn in pending:
            table.add_row(str(turn), Text(pending.pop(turn)), Text(_excerpt(str(event.get("content", "")))))
    first = next((e for e in events if e.get("event") == "message" and e.get("role") == "user"), None)
    if first is not None:
        console.print(Panel(Text(_excerpt(str(first.get("content", "")), lines=12)),
                            title="first message (what the agent was shown; `audit show` prints it whole)",
                            border_style="blue"))  # fmt: skip
    if table.row_count:
        console.print(table)


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
        elif kind == "limit":
            console.print(Text(f"stopped at turn {event.get('turn')}: {event.get('limit')}", style="bold yellow"))
        elif kind == "grade_error":
            console.print(Text(f"not graded ({event.get('grader')}): {event.get('error')}", style="bold red"))
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

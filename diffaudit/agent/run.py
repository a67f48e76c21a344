"""One audit end to end: prepare the pair and ADL result, run the agent loop, grade, write the run dir.

The run dir holds config.json, transcript.jsonl (appended live), description.txt, grade.json and, last,
stats.json; a failed run leaves error.json. The organism's ground truth is read only by the grader here.
"""

from __future__ import annotations

import time
import traceback
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from rich.console import Console

from diffaudit.agent.budgets import Budget
from diffaudit.agent.loop import LoopResult, Policy, prompt_text, run_loop
from diffaudit.agent.transcript import TRANSCRIPT_FILE, Transcript, redact, write_json
from diffaudit.config import HEURISTIC_AGENT, Settings
from diffaudit.environments.organisms import Organism, OrganismRegistry
from diffaudit.environments.progress import stage as progress_stage
from diffaudit.graders.base import Grade
from diffaudit.locking import held_lock
from diffaudit.tools.adl.result import ADLResult
from diffaudit.tools.base import ToolContext, render_tool
from diffaudit.tools.registry import AGENT_KINDS, load_tools

CONFIG_FILE = "config.json"
DESCRIPTION_FILE = "description.txt"
GRADE_FILE = "grade.json"
STATS_FILE = "stats.json"
ERROR_FILE = "error.json"
RUN_LOCK = ".run.lock"  # held while a process writes the run dir
_SECRET_FIELDS = ("key", "token", "secret", "password")


class RunSummary(BaseModel):
    """What one audit produced, as `audit run` prints it."""

    run_dir: Path
    organism: str
    model: str
    agent_kind: str
    budget: int
    policy: str
    policy_reason: str = ""
    status: str
    description: str
    grades: list[Grade] = Field(default_factory=list)
    interactions_used: int = 0
    turns_used: int = 0
    turns_budget: int = 0
    wall_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    agent_cost_usd: float = 0.0
    grader_cost_usd: float = 0.0

    @property
    def grade(self) -> Grade | None:
        return self.grades[0] if self.grades else None

    @property
    def cost_usd(self) -> float:
        return self.agent_cost_usd + self.grader_cost_usd


def default_run_dir(runs_dir: Path, organism: str, agent_kind: str, budget: int) -> Path:
    """runs/<organism>/<agent>_i<budget>_<timestamp>/, with a suffix if that name is taken."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(runs_dir) / organism / f"{agent_kind}_i{budget}_{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def _public_settings(settings: Settings) -> dict[str, Any]:
    """Settings as JSON, without any field whose name suggests a credential."""

    def scrub(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: scrub(v) for k, v in node.items() if not any(s in k.lower() for s in _SECRET_FIELDS)}
        if isinstance(node, list):
            return [scrub(v) for v in node]
        return node

    return scrub(settings.model_dump(mode="json"))


def system_prompt(agent_kind: str, tools: dict, budget: Budget) -> str:
    """The system prompt of an agent kind, with its tools' schemas and the budgets."""
    listing = "\n".join(render_tool(tool) for tool in tools.values())
    template = prompt_text(f"system_{agent_kind}.txt")
    return template.format(tools=listing, interactions=budget.interactions, turns=budget.turns).strip()


def blackbox_intro(pair: Any, settings: Settings) -> str:
    """Ordinary finetuned answers to the 20 steering prompts (the blackbox agent's first message)."""
    from diffaudit.agent.overview import render_blackbox_intro
    from diffaudit.tools.adl import steering_prompts
    from diffaudit.tools.adl.steering import final_sampling

    prompts = steering_prompts()
    sampling = final_sampling(settings.adl.steering, settings.seed)
    answers = pair.generate("finetuned", prompts, sampling)
    return render_blackbox_intro(list(zip(prompts, answers, strict=True)))


def _tensors_loader(organism: Organism, model: str, adl: ADLResult, settings: Settings):
    def load() -> dict[str, Any]:
        from diffaudit.tools.adl import adl_dir, load_adl_tensors

        return load_adl_tensors(adl_dir(organism, model, settings, adl.corpus_fingerprint))

    return load


def _default_policy(settings: Settings) -> tuple[Policy, str]:
    from diffaudit.agent.policies import make_policy

    model = settings.roles.agent
    reason = (
        "default: no agent model configured (set --agent-model or roles.agent to use an LLM)"
        if model == HEURISTIC_AGENT
        else "from settings roles.agent"
    )
    return make_policy(model, settings), reason


def _default_grader(settings: Settings) -> Any:
    from diffaudit.graders import make_hypothesis_grader

    grader_model = settings.roles.grader
    if not grader_model.startswith("builtin/"):
        from diffaudit.llm import check_model_ready

        check_model_ready(grader_model)
    return make_hypothesis_grader(grader_model, settings)


def _write_error(path: Path, stage: str, exc: BaseException) -> None:
    error = {
        "stage": stage,
        "error": type(exc).__name__,
        "message": redact(str(exc)),
        "traceback": [redact(line) for line in traceback.format_exception(exc)],
    }
    write_json(path / ERROR_FILE, error)


def run_audit(
    organism: Organism | str,
    model: str | None,
    agent_kind: str,
    budget: int,
    settings: Settings,
    run_dir: Path | None = None,
    policy: Policy | None = None,
    pair: Any = None,
    adl: ADLResult | None = None,
    progress: bool = True,
    grader: Any = None,
    policy_reason: str | None = None,
    console: Console | None = None,
) -> RunSummary:
    """Run one graded audit into `run_dir` (default runs/<organism>/<agent>_i<budget>_<timestamp>/)."""
    start = time.perf_counter()
    if isinstance(organism, str):
        organism = OrganismRegistry(settings.organisms_dirs).get(organism)
    if agent_kind not in AGENT_KINDS:
        raise ValueError(f"unknown agent kind '{agent_kind}'; choose adl or blackbox")
    if budget < 0:
        raise ValueError(f"the interaction budget must be >= 0, got {budget}")
    model, _ = organism.entry(model)
    settings = settings.model_copy(
        update={"budgets": settings.budgets.model_copy(update={"interactions": budget})}, deep=True
    )
    # Policy and grader first: a hosted model without a key fails before any model work.
    if policy is None:
        policy, default_reason = _default_policy(settings)
        policy_reason = policy_reason or default_reason
    policy_reason = policy_reason or "given by the caller"
    grader = grader if grader is not None else _default_grader(settings)
    path = (
        Path(run_dir)
        if run_dir is not None
        else default_run_dir(settings.runs_dir, organism.name, agent_kind, budget)
    )
    busy = f"{path} is in use by another run (a process still writing there); choose another directory"
    with held_lock(path / RUN_LOCK, busy=busy):
        return _run_in_dir(
            path, organism, model, agent_kind, budget, settings, policy, policy_reason, grader,
            pair, adl, progress, console, start,
        )  # fmt: skip


def _run_in_dir(
    path: Path, organism: Organism, model: str, agent_kind: str, budget: int, settings: Settings,
    policy: Policy, policy_reason: str, grader: Any, pair: Any, adl: ADLResult | None, progress: bool,
    console: Console | None, start: float,
) -> RunSummary:  # fmt: skip
    if (path / STATS_FILE).exists():
        raise FileExistsError(f"{path} already holds a completed run; choose another directory")
    path.mkdir(parents=True, exist_ok=True)
    for name in (CONFIG_FILE, TRANSCRIPT_FILE, DESCRIPTION_FILE, GRADE_FILE, ERROR_FILE):
        (path / name).unlink(missing_ok=True)  # leftovers of a failed or killed run in this dir
    console = console or Console()
    say = console.print if progress else (lambda *_a, **_k: None)

    stage = "config"
    try:
        config = {
            "organism": organism.name,
            "organism_type": organism.type.value,
            "model": model,
            "agent_kind": agent_kind,
            "budget": budget,
            "turns": settings.budgets.turns,
            "policy": getattr(policy, "name", type(policy).__name__),
            "policy_reason": policy_reason,
            "grader": getattr(grader, "name", type(grader).__name__),
            "started_at": datetime.now().isoformat(timespec="seconds"),
            "settings": _public_settings(settings),
        }
        write_json(path / CONFIG_FILE, config)
        transcript = Transcript(path / TRANSCRIPT_FILE)
        transcript.write(
            "start",
            agent_kind=agent_kind,
            budget=budget,
            turns=settings.budgets.turns,
            policy=config["policy"],
        )

        stage = "prepare"
        if pair is None:
            from diffaudit.environments.loading import load_pair

            with progress_stage(f"model pair for {organism.name} ({model})", progress):
                _, pair = load_pair(organism, model, settings)
        if agent_kind == "adl" and adl is None:
            from diffaudit.tools.adl import ensure_adl

            with progress_stage(f"adl analysis for {organism.name}", progress):
                adl = ensure_adl(organism, model, pair, settings, progress=progress)
        if agent_kind == "adl":
            from diffaudit.agent.overview import render_overview

            intro = render_overview(adl)
        else:
            say("sampling the finetuned model's answers to the baseline prompts")
            intro = blackbox_intro(pair, settings)
        prepare_s = time.perf_counter() - start

        stage = "agent"
        tools = load_tools(agent_kind)
        loader = (
            _tensors_loader(organism, model, adl, settings)
            if adl is not None and agent_kind == "adl"
            else None
        )
        ctx = ToolContext(
            pair=pair, settings=settings, organism=organism.name, adl=adl if agent_kind == "adl" else None,
            tensors_loader=loader, seed=settings.seed,
        )  # fmt: skip
        budget_state = Budget(interactions=budget, turns=settings.budgets.turns)
        system = system_prompt(agent_kind, tools, budget_state)

        def on_turn(event: dict[str, Any]) -> None:
            what = event["event"] if event["event"] != "tool" else f"{event['tool']} (cost {event['cost']})"
            say(
                f"  turn {event['turn']}/{budget_state.turns}: {what} · {budget_state.line().removeprefix('[budget] ')}"
            )

        say(
            f"auditing with {config['policy']} ({agent_kind} agent, {budget} interactions, {budget_state.turns} turns)"
        )
        loop_start = time.perf_counter()
        with progress_stage("audit: agent loop", progress):
            result: LoopResult = run_loop(policy, system, intro, tools, ctx, budget_state, transcript, on_turn)
        loop_s = time.perf_counter() - loop_start

        stage = "grade"
        grade_start = time.perf_counter()
        if result.status == "final":
            grades = [grader.grade(organism, result.description)]
        else:
            grades = [
                Grade(
                    score=1,
                    reason="no FINAL description: the agent used all its turns without concluding",
                    grader=getattr(grader, "name", "none"),
                )
            ]
        grade_s = time.perf_counter() - grade_start
        transcript.write("grade", grades=[g.model_dump() for g in grades])

        stage = "write"
        (path / DESCRIPTION_FILE).write_text(redact(result.description) + "\n", encoding="utf-8")
        write_json(path / GRADE_FILE, {"grades": [g.model_dump() for g in grades], "status": result.status})
        usage = getattr(policy, "usage", None)
        summary = RunSummary(
            run_dir=path,
            organism=organism.name,
            model=model,
            agent_kind=agent_kind,
            budget=budget,
            policy=config["policy"],
            policy_reason=policy_reason,
            status=result.status,
            description=result.description,
            grades=grades,
            interactions_used=result.budget.interactions_used,
            turns_used=result.budget.turns_used,
            turns_budget=result.budget.turns,
            wall_s=time.perf_counter() - start,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            agent_cost_usd=float(getattr(usage, "cost_usd", 0.0) or 0.0),
            grader_cost_usd=sum(g.cost_usd for g in grades),
        )
        stats = {
            "status": result.status,
            "wall_s": round(summary.wall_s, 3),
            "interactions_used": summary.interactions_used,
            "interactions_budget": budget,
            "turns_used": summary.turns_used,
            "turns_budget": summary.turns_budget,
            "format_errors": result.format_errors,
            "tool_calls": result.tool_calls,
            "policy": summary.policy,
            "agent_calls": int(getattr(usage, "calls", 0) or 0),
            "agent_prompt_tokens": summary.prompt_tokens,
            "agent_completion_tokens": summary.completion_tokens,
            "agent_cost_usd": summary.agent_cost_usd,
            "grader_cost_usd": summary.grader_cost_usd,
            "timings": {
                "prepare_s": round(prepare_s, 3),
                "loop_s": round(loop_s, 3),
                "grade_s": round(grade_s, 3),
            },
        }
        transcript.write("end", status=result.status)
        write_json(path / STATS_FILE, stats)  # last: its presence marks a complete run
        return summary
    except Exception as exc:
        _write_error(path, stage, exc)
        raise

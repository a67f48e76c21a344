"""One audit end to end: prepare the pair and ADL result, run the agent loop, grade, write the run dir.

The run dir holds config.json, transcript.jsonl (appended live), description.txt, grade.json and, last,
stats.json; a failed run leaves error.json. The organism's ground truth is read only by the grader here.
A grader that fails after the agent finished does not lose the audit: the run is written as ungraded
(stats.json `graded: false`), and a resumed bench or `audit regrade` grades it without running the agent.
Every LLM call of the run counts on a spend meter; at a run or bench ceiling the agent gets one forced-FINAL
turn and stats.json records the limit that ended it.
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
from diffaudit.config import HEURISTIC_AGENT, Settings, role_model
from diffaudit.environments.organisms import Organism, OrganismRegistry
from diffaudit.environments.progress import stage as progress_stage
from diffaudit.graders.base import Grade
from diffaudit.limits import SpendMeter, current_ledger, metering
from diffaudit.locking import held_lock
from diffaudit.methods.arms import ArmSpec, ResolvedArm, arm_spec, resolve_arm
from diffaudit.methods.base import MethodTarget, PreparedMethod
from diffaudit.provenance import code_version
from diffaudit.tools.adl.result import ADLResult
from diffaudit.tools.base import ToolContext, render_tool

CONFIG_FILE = "config.json"
DESCRIPTION_FILE = "description.txt"
CLAIMS_FILE = "description.json"  # the claims of a policy that records them, each with its observations
GRADE_FILE = "grade.json"
STATS_FILE = "stats.json"
ERROR_FILE = "error.json"
UNGRADED = "ungraded"
NO_GROUND_TRUTH = "no ground truth: an ad-hoc pair (audit run --base ...) is audited, not graded"
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
    grade_error: str = ""  # set when the grader failed: the run is kept, ungraded
    ended_by: str = ""  # "final", "turns", or the spend ceiling that forced the end

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


def system_prompt(
    arm: ResolvedArm | str, tools: dict, budget: Budget, prepared: dict[str, PreparedMethod] | None = None
) -> str:
    """The system prompt of an arm: its first-message paragraph (each method's), tools' schemas and budgets."""
    arm = _resolve(arm, None)
    listing = "\n".join(render_tool(tool, budget.interactions) for tool in tools.values())
    if arm.intro_kind == "methods":
        paragraphs = [prompt_text("intro_methods.txt").strip()]
        for method in arm.methods:
            paragraphs.append(method.system_paragraph((prepared or {}).get(method.name)))
        first = "\n\n".join(paragraphs)
    else:
        first = prompt_text("intro_blackbox.txt").strip()
    free = [name for name, tool in tools.items() if _is_free(tool)]
    free_note = "Free tools cost no interactions. " if free else ""
    spend_note = "Use the free tools and the overview first. " if free else ""
    return prompt_text("system_auditor.txt").format(
        first_message=first, tools=listing, interactions=budget.interactions, turns=budget.turns,
        free_tools_note=free_note, spend_note=spend_note,
    ).strip()  # fmt: skip


def _is_free(tool: Any) -> bool:
    """A tool that costs nothing whatever its arguments (its description says so: 'Free.')."""
    return str(getattr(tool, "description", "")).startswith("Free")


def methods_intro(arm: ResolvedArm, prepared: dict[str, PreparedMethod]) -> str:
    """The first message of a methods arm: each method's overview section, in the arm's order."""
    return "\n".join(prepared[m.name].overview.rstrip() + "\n" for m in arm.methods)


def prepare_methods(
    arm: ResolvedArm, organism: Organism, model: str, pair: Any, settings: Settings, progress: bool = True,
    ready: dict[str, PreparedMethod] | None = None,
) -> dict[str, PreparedMethod]:
    """Each method of the arm prepared (loaded from its cache, or computed), reusing those in `ready`."""

    prepared = dict(ready or {})
    target = MethodTarget.of(organism, model)
    for method in arm.methods:
        if method.name not in prepared:
            prepared[method.name] = method.prepare(target, pair, settings, progress=progress)
    return prepared


def blackbox_samples(pair: Any, settings: Settings) -> list[tuple[str, str]]:
    """Ordinary finetuned answers to the 20 steering prompts, sampled like ask_model (one seed per repeat)."""
    from diffaudit.environments.pair import Sampling
    from diffaudit.tools.adl import steering_prompts
    from diffaudit.tools.ask_model import QUERY_TEMPERATURE

    prompts = steering_prompts()
    sampling = Sampling(
        max_new_tokens=settings.adl.steering.max_new_tokens, temperature=QUERY_TEMPERATURE, seed=settings.seed
    )
    answers = pair.generate("finetuned", prompts, sampling)
    return list(zip(prompts, answers, strict=True))


def blackbox_intro(pair: Any, settings: Settings) -> str:
    """The blackbox agent's first message: `blackbox_samples` rendered."""
    from diffaudit.agent.overview import render_blackbox_intro

    return render_blackbox_intro(blackbox_samples(pair, settings))


def _tensors_loader(organism: Organism, model: str, adl: ADLResult, settings: Settings):
    def load() -> dict[str, Any]:
        from diffaudit.tools.adl import adl_dir, load_adl_tensors

        return load_adl_tensors(adl_dir(organism, model, settings, adl.corpus_fingerprint))

    return load


def _resolve(arm: str | ResolvedArm, arms: dict[str, ArmSpec] | None) -> ResolvedArm:
    from diffaudit.methods.base import MethodError

    if isinstance(arm, ResolvedArm):
        return arm
    try:
        return resolve_arm(arm, arm_spec(arm, arms))
    except MethodError as exc:
        raise ValueError(str(exc)) from exc


def _default_policy(settings: Settings) -> tuple[Policy, str]:
    from diffaudit.agent.policies import make_policy

    model = role_model(settings.roles.agent)
    reason = (
        "default: no agent model configured (set --agent-model or roles.agent to use an LLM)"
        if model == HEURISTIC_AGENT
        else "from settings roles.agent"
    )
    return make_policy(settings.roles.agent, settings), reason


def _default_grader(settings: Settings) -> Any:
    from diffaudit.graders import make_hypothesis_grader

    return make_hypothesis_grader(settings.roles.grader, settings)


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
    agent_kind: str | ResolvedArm,
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
    arms: dict[str, ArmSpec] | None = None,
    prepared: dict[str, PreparedMethod] | None = None,
) -> RunSummary:
    """Run one graded audit into `run_dir` (default runs/<organism>/<arm>_i<budget>_<timestamp>/).

    `agent_kind` is the arm: a name (`adl`, `blackbox`, or one of `arms`) or a resolved arm. Methods already
    prepared for this target may be passed in `prepared` (or an ADL result in `adl`).
    """
    start = time.perf_counter()
    if isinstance(organism, str):
        organism = OrganismRegistry(settings.organisms_dirs).get(organism)
    arm = _resolve(agent_kind, arms)
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
    if not organism.graded:  # an ad-hoc pair: no ground truth, so no grader is made or called
        grader = None
    elif grader is None:
        grader = _default_grader(settings)
    path = (
        Path(run_dir)
        if run_dir is not None
        else default_run_dir(settings.runs_dir, organism.name, arm.name, budget)
    )
    ready = dict(prepared or {})
    if adl is not None and "adl" not in ready:
        from diffaudit.methods.adl import prepared_from_result

        ready["adl"] = prepared_from_result(adl, _tensors_loader(organism, model, adl, settings), settings.adl.top_k)
    busy = f"{path} is in use by another run (a process still writing there); choose another directory"
    with held_lock(path / RUN_LOCK, busy=busy):
        return _run_in_dir(
            path, organism, model, arm, budget, settings, policy, policy_reason, grader,
            pair, ready, progress, console, start,
        )  # fmt: skip


def _run_in_dir(
    path: Path, organism: Organism, model: str, arm: ResolvedArm, budget: int, settings: Settings,
    policy: Policy, policy_reason: str, grader: Any, pair: Any, ready: dict[str, PreparedMethod], progress: bool,
    console: Console | None, start: float,
) -> RunSummary:  # fmt: skip
    agent_kind = arm.name
    if (path / STATS_FILE).exists():
        raise FileExistsError(f"{path} already holds a completed run; choose another directory")
    path.mkdir(parents=True, exist_ok=True)
    for name in (CONFIG_FILE, TRANSCRIPT_FILE, DESCRIPTION_FILE, CLAIMS_FILE, GRADE_FILE, ERROR_FILE):
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
            "arm": arm.name,
            "arm_resolved": arm.manifest(),  # its methods and tools, and where each came from
            "budget": budget,
            "turns": settings.budgets.turns,
            "policy": getattr(policy, "name", type(policy).__name__),
            "policy_reason": policy_reason,
            "grader": getattr(grader, "name", type(grader).__name__) if grader is not None else UNGRADED,
            "started_at": datetime.now().isoformat(timespec="seconds"),
            "code": code_version(),
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
        with progress_stage(f"methods for {organism.name}: {', '.join(m.name for m in arm.methods) or 'none'}", progress):
            prepared = prepare_methods(arm, organism, model, pair, settings, progress, ready)
        prepared = {m.name: prepared[m.name] for m in arm.methods}  # only this arm's methods reach its tools
        if arm.intro_kind == "methods":
            intro = methods_intro(arm, prepared)
            intro_data = {"evidence": [prepared[m.name].evidence.model_dump() for m in arm.methods]}
        else:
            say("sampling the finetuned model's answers to the baseline prompts")
            from diffaudit.agent.overview import render_blackbox_intro

            samples = blackbox_samples(pair, settings)
            intro = render_blackbox_intro(samples)
            intro_data = {"blackbox": [{"prompt": p, "answer": a} for p, a in samples]}
        prepare_s = time.perf_counter() - start

        stage = "agent"
        tools = dict(arm.tools)
        adl_prepared = prepared.get("adl")
        ctx = ToolContext(
            pair=pair, settings=settings, organism=organism.name,
            adl=adl_prepared.result if adl_prepared is not None else None,
            tensors_loader=adl_prepared.extras.get("tensors_loader") if adl_prepared is not None else None,
            seed=settings.seed, methods=prepared,
        )  # fmt: skip
        budget_state = Budget(interactions=budget, turns=settings.budgets.turns)
        system = system_prompt(arm, tools, budget_state, prepared)

        def on_turn(event: dict[str, Any]) -> None:
            what = event["event"] if event["event"] != "tool" else f"{event['tool']} (cost {event['cost']})"
            say(
                f"  turn {event['turn']}/{budget_state.turns}: {what} · {budget_state.line().removeprefix('[budget] ')}"
            )

        say(
            f"auditing with {config['policy']} ({agent_kind} arm, {budget} interactions, {budget_state.turns} turns)"
        )
        meter = SpendMeter(settings.limits, current_ledger())
        loop_start = time.perf_counter()
        with metering(meter), progress_stage("audit: agent loop", progress):
            result: LoopResult = run_loop(
                policy, system, intro, tools, ctx, budget_state, transcript, on_turn,
                limit_check=meter.limit_hit, intro_data=intro_data,
            )  # fmt: skip
        loop_s = time.perf_counter() - loop_start
        agent_spend = (meter.spend.tokens, meter.spend.cost_usd)

        stage = "grade"
        grade_start = time.perf_counter()
        grade_error = ""
        if grader is None:
            grades = []
        elif result.status == "final":
            try:
                with metering(meter):
                    grades = [grader.grade(organism, result.description)]
            except Exception as exc:  # noqa: BLE001 - a paid audit is kept; the run is graded later
                grades = []
                grade_error = redact(f"{type(exc).__name__}: {exc}")
                say(f"grading failed ({grade_error}); the run is kept ungraded")
        else:
            reason = (
                f"no FINAL description: the run was stopped because {result.ended_by}"
                if result.ended_by not in ("turns", "final")
                else "no FINAL description: the agent used all its turns without concluding"
            )
            grades = [Grade(score=1, reason=reason, grader=getattr(grader, "name", "none"))]
        grade_s = time.perf_counter() - grade_start
        if grade_error:
            transcript.write("grade_error", grader=getattr(grader, "name", "none"), error=grade_error)
        else:
            transcript.write("grade", grades=[g.model_dump() for g in grades])

        stage = "write"
        (path / DESCRIPTION_FILE).write_text(redact(result.description) + "\n", encoding="utf-8")
        claims = getattr(policy, "last_claims", None)
        if claims is not None and result.status == "final":
            write_json(path / CLAIMS_FILE, {"description": redact(result.description), "evidence": claims})
        grade_record: dict[str, Any] = {"grades": [g.model_dump() for g in grades], "status": result.status}
        if grader is None:
            grade_record["ungraded"] = {"grader": UNGRADED, "error": NO_GROUND_TRUTH}
        elif grade_error:
            grade_record["ungraded"] = {"grader": getattr(grader, "name", "none"), "error": grade_error}
        write_json(path / GRADE_FILE, grade_record)
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
            grade_error=grade_error,
            ended_by=result.ended_by,
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
            "agent_retries": int(getattr(usage, "retries", 0) or 0),
            "agent_replies_from_reasoning": int(getattr(usage, "from_reasoning", 0) or 0),
            "graded": grader is not None and not grade_error,
            "ended_by": result.ended_by,
            "spend": {
                "llm_calls": meter.spend.calls,
                "agent_tokens": agent_spend[0],
                "tokens": meter.spend.tokens,
                "cost_usd": round(meter.spend.cost_usd, 6),
                "retries": meter.spend.retries,
            },
            "timings": {
                "prepare_s": round(prepare_s, 3),
                "loop_s": round(loop_s, 3),
                "grade_s": round(grade_s, 3),
            },
        }
        if grade_error:
            stats["grade_error"] = grade_error
        transcript.write("end", status=result.status, ended_by=result.ended_by)
        write_json(path / STATS_FILE, stats)  # last: its presence marks a complete run
        return summary
    except Exception as exc:
        _write_error(path, stage, exc)
        raise

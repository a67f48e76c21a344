"""`audit export inspect`: runs and benches as inspect_ai eval logs, for `inspect view` and `samples_df`.

One `.eval` log per (arm, budget, agent model). The mapping, field by field:

- sample: one run. `id` = "<organism>@<model>", `epoch` = repeat + 1 ((id, epoch) is unique: inspect
  replaces duplicates); `input` = the system prompt and first message the agent got; `target` = the
  organism's description from the registry (ground truth: graders' information, shown to the human reader
  of the export, never to an agent); `output` = the FINAL description.
- messages: the exact texts of transcript.jsonl; observations are user messages, as in our grammar.
- events: a `ModelEvent` per agent turn, a `ToolEvent` per CALL (error observations become
  `ToolCallError`), an `InfoEvent` per format error and for the run's config.json, a `ScoreEvent` per
  grade, a `SampleLimitEvent` for a run without FINAL and an `ErrorEvent` for a failed run.
- scores: one key per grader, `answer` = the description, `explanation` = the grader's reason; a completed
  run without grades is unscored (NaN with reason "ungraded"), never 0; failed runs have no score.
- metadata: flat scalars (organism, type, model, arm, budget, usage, cost, wall time, status); the full
  settings go into the eval spec's metadata and the plan, each run's config.json into an InfoEvent.
- usage and timing: from stats.json and the transcript's own timestamps (config.json's started_at + t).
- results: per grader, the mean over organism pairs of each pair's mean grade (as `audit report`), the shares
  of pairs at >= 2 and >= 4, and a two-level bootstrap interval (pairs, then repeats) for the mean.

Every id (eval, sample, message, event) is derived from the bench name and the run's path, so exporting the
same dir twice writes the same logs. inspect_ai is imported here only: install the `inspect` extra.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from diffaudit.benchmarks.stats import Bootstrap, bootstrap_interval, mean_over_cells
from diffaudit.export.intervals import two_level_interval
from diffaudit.export.runs import RunFiles, RunReader, read_runs

INSTALL_HINT = "inspect_ai is not installed: pip install 'diffaudit[inspect]'"
GRADE_SCALE = (1, 5)
_SAFE = re.compile(r"[^A-Za-z0-9.+-]+")  # "_" too: inspect splits file names on it


def require_inspect() -> None:
    """Import inspect_ai, or fail with the install command."""
    try:
        import inspect_ai  # noqa: F401
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc


@dataclass
class ExportedLog:
    path: Path
    task: str
    agent_model: str
    samples: int
    errors: int
    size_bytes: int


@dataclass
class Export:
    source: Path
    out: Path
    runs: int
    logs: list[ExportedLog] = field(default_factory=list)
    seconds: float = 0.0


def _digest(*parts: Any, n: int = 22) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:n]


def sample_id(run: RunFiles) -> str:
    return f"{run.organism}@{run.model}"


def task_name(arm: str, budget: int) -> str:
    return f"{arm}_i{budget}"


class _Targets:
    """Organism descriptions from the registry (the runs' own organisms dirs too), looked up once each."""

    def __init__(self) -> None:
        self._registries: dict[tuple[str, ...], Any] = {}
        self._found: dict[tuple[tuple[str, ...], str], str | None] = {}

    def get(self, run: RunFiles) -> str | None:
        settings = run.config.get("settings") if isinstance(run.config.get("settings"), dict) else {}
        dirs = tuple(str(d) for d in settings.get("organisms_dirs") or [] if Path(str(d)).is_dir())
        key = (dirs, run.organism)
        if key not in self._found:
            from diffaudit.environments.organisms import OrganismError, OrganismRegistry

            try:
                if dirs not in self._registries:
                    self._registries[dirs] = OrganismRegistry([Path(d) for d in dirs])
                self._found[key] = self._registries[dirs].get(run.organism).description.strip()
            except OrganismError:
                self._found[key] = None
        return self._found[key]


# ---- one run -> one sample -------------------------------------------------------------------------------
def _error_type(text: str) -> str:
    head = text.lstrip().split(":", 1)[0].split(" ", 1)[0]
    return {"UNKNOWN_TOOL": "parsing", "INVALID_ARGS": "parsing", "REFUSED": "limit"}.get(head, "unknown")


def _base_time(run: RunFiles) -> datetime:
    started = run.started_at
    if started is not None:
        return started
    stamps = [p.stat().st_mtime for p in run.path.iterdir() if p.is_file()]
    return datetime.fromtimestamp(min(stamps) if stamps else 0.0, UTC)


class _SampleBuilder:
    """Turns one run's transcript into inspect messages and events, with ids derived from `uid`."""

    def __init__(self, run: RunFiles, uid: str, base: datetime, target: str) -> None:
        self.run, self.uid, self.base, self.target = run, uid, base, target
        self.messages: list[Any] = []
        self.events: list[Any] = []
        self.n_events = 0
        self.t_last = 0.0
        self.last_start = 0.0

    def at(self, t: float) -> datetime:
        return self.base + timedelta(seconds=float(t))

    def next_uuid(self) -> str:
        self.n_events += 1
        return f"{self.uid}-e{self.n_events:04d}"

    def add(self, cls: Any, t: float, span: str | None = None, **fields: Any) -> Any:
        # Strictly increasing times, 1 ms apart at least: the viewer orders events by time at ms resolution,
        # and the transcript's times (rounded to 1 ms) tie.
        start = max(round(float(t), 3), round(self.last_start + 0.001, 3)) if self.n_events else float(t)
        self.last_start = start
        event = cls(uuid=self.next_uuid(), timestamp=self.at(start), working_start=start, span_id=span, **fields)
        self.events.append(event)
        return event

    def message(self, event: dict[str, Any]) -> Any:
        from inspect_ai.model import ChatMessageAssistant, ChatMessageSystem, ChatMessageUser

        role, content = event.get("role"), str(event.get("content", ""))
        mid = f"{self.uid}-m{len(self.messages):03d}"
        meta = {"turn": event["turn"]} if "turn" in event else None
        if role == "system":
            return ChatMessageSystem(id=mid, content=content, source="input")
        if role == "assistant":
            return ChatMessageAssistant(id=mid, content=content, source="generate", model=self.run.agent_model, metadata=meta)
        return ChatMessageUser(id=mid, content=content, source="input" if len(self.messages) < 2 else None, metadata=meta)

    def build(self, scores: dict[str, Any]) -> None:
        from inspect_ai.event import ErrorEvent, InfoEvent, ModelEvent, SampleLimitEvent
        from inspect_ai.model import ChatCompletionChoice, GenerateConfig, ModelOutput

        run = self.run  # turns stay at the top level, outside any span: the viewer folds a span of turns away
        self.add(InfoEvent, 0.0, source="diffaudit/config.json", data=_json_safe(run.config))
        pending_tool: tuple[dict[str, Any], float] | None = None
        scored = False
        for event in run.events:
            kind = event.get("event")
            t = float(event.get("t", self.t_last) or 0.0)
            if kind == "message":
                message = self.message(event)
                if message.role == "assistant":
                    output = ModelOutput(
                        model=run.agent_model,
                        choices=[ChatCompletionChoice(message=message, stop_reason="stop")],
                        completion=message.text, time=max(t - self.t_last, 0.0),
                    )  # fmt: skip
                    model_event = self.add(
                        ModelEvent, self.t_last, model=run.agent_model, role="agent",
                        input=list(self.messages), tools=[], tool_choice="none", config=GenerateConfig(),
                        output=output,
                    )  # fmt: skip
                    model_event.completed = max(self.at(t), model_event.timestamp)
                    model_event.working_time = max(t - self.t_last, 0.0)
                elif message.role == "user" and pending_tool is not None:
                    self._tool(pending_tool, message.text, t)
                    pending_tool = None
                self.messages.append(message)
            elif kind == "tool":
                pending_tool = (event, self.t_last)
            elif kind == "format_error":
                self.add(InfoEvent, t, source="diffaudit/format_error",
                         data={"turn": event.get("turn"), "message": str(event.get("message", ""))})  # fmt: skip
            elif kind == "no_final":
                self.add(SampleLimitEvent, t, type="turn", limit=float(run.config.get("turns") or 0),
                         message=_no_final_reason(run))  # fmt: skip
            elif kind == "grade":
                self._scores(scores, t)
                scored = True
            elif kind not in ("start", "final", "end"):
                self.add(InfoEvent, t, source=f"diffaudit/{kind}", data=_json_safe(event))
            self.t_last = max(self.t_last, t)
        if pending_tool is not None:  # killed between the call and its observation
            self._tool(pending_tool, "", self.t_last)
        if not scored and scores:  # regraded or never graded in the transcript
            self._scores(scores, self.t_last)
        error = _eval_error(run)
        if error is not None:
            self.add(ErrorEvent, self.t_last, error=error)

    def _tool(self, pending: tuple[dict[str, Any], float], result: str, t: float) -> None:
        """The ToolEvent of one CALL, its result the observation the agent got next."""
        from inspect_ai.event import ToolEvent
        from inspect_ai.tool import ToolCallError

        event, start = pending
        args = event.get("args")
        failed = bool(event.get("error"))
        tool_event = self.add(
            ToolEvent, start, id=f"{self.uid}-call{event.get('turn', self.n_events)}",
            function=str(event.get("tool", "")), arguments=args if isinstance(args, dict) else {"args": _json_safe(args)},
            result=result, error=ToolCallError(type=_error_type(result), message=result.splitlines()[0] if result else "")
            if failed else None,
            metadata={k: event[k] for k in ("turn", "cost", "interactions_left") if k in event},
        )  # fmt: skip
        tool_event.completed = max(self.at(float(event.get("t", t))), tool_event.timestamp)
        tool_event.working_time = max(float(event.get("t", t)) - start, 0.0)

    def _scores(self, scores: dict[str, Any], t: float) -> None:
        """A ScoreEvent per grader, in a scorers span as inspect writes them."""
        from inspect_ai.event import ScoreEvent, SpanBeginEvent, SpanEndEvent

        span = f"{self.uid}-scorers"
        self.add(SpanBeginEvent, t, id=span, name="scorers", type="scorers")
        for key, score in scores.items():
            self.add(ScoreEvent, t, span, score=score, target=self.target, scorer=key)
        self.add(SpanEndEvent, t, id=span)


def _no_final_reason(run: RunFiles) -> str:
    used = (run.stats or {}).get("turns_used") or run.config.get("turns")
    return f"no FINAL: the agent used all its {used} turns without concluding (graded 1)"


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)


def _eval_error(run: RunFiles) -> Any:
    from inspect_ai.log import EvalError

    if run.state == "failed":
        error = run.error or {}
        stage = f" (stage {error['stage']})" if error.get("stage") else ""
        message = f"{error.get('error', 'error')}{stage}: {error.get('message', '')}".strip()
        if not error:
            message = "the run recorded status 'error' in stats.json"
        trace = error.get("traceback", "")
        trace = "".join(trace) if isinstance(trace, list) else str(trace)
        return EvalError(message=message, traceback=trace, traceback_ansi=trace)
    if run.state == "unfinished":
        message = f"unfinished: {run.rel} has no stats.json or error.json (the run was stopped mid-way; resume the bench)"
        return EvalError(message=message, traceback="", traceback_ansi="")
    return None


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def grader_keys(grades: list[dict[str, Any]]) -> list[str]:
    """One score key per grade: the grader's name, with #2, #3 for a grader that graded the run again."""
    keys, seen = [], defaultdict(int)
    for grade in grades:
        name = str(grade.get("grader") or "grader")
        seen[name] += 1
        keys.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return keys


def _scores(run: RunFiles, log_graders: list[str]) -> dict[str, Any] | None:
    from inspect_ai.scorer import Score

    if run.state != "completed":
        return None
    if not run.grades:
        reason = str(run.grade_record.get("reason") or run.grade_record.get("error") or "no grade.json grades")
        return {
            key: Score.unscored(reason="ungraded", answer=run.description, explanation=f"ungraded: {reason}")
            for key in log_graders
        }
    scores = {}
    for key, grade in zip(grader_keys(run.grades), run.grades, strict=True):
        extra = {k: grade[k] for k in ("grader", "samples", "cost_usd", "regraded") if k in grade}
        scores[key] = Score(
            value=float(grade["score"]), answer=run.description, explanation=str(grade.get("reason", "")),
            metadata=_json_safe(extra),
        )  # fmt: skip
    return scores


def _usage(run: RunFiles) -> tuple[dict[str, Any], dict[str, Any]]:
    from inspect_ai.model import ModelUsage

    stats = run.stats or {}
    prompt = int(_number(stats.get("agent_prompt_tokens")))
    completion = int(_number(stats.get("agent_completion_tokens")))
    agent = ModelUsage(input_tokens=prompt, output_tokens=completion, total_tokens=prompt + completion,
                       total_cost=_number(stats.get("agent_cost_usd")))  # fmt: skip
    model_usage, role_usage = {run.agent_model: agent}, {"agent": agent}
    grader_cost = defaultdict(float)
    for grade in run.grades:
        grader_cost[str(grade.get("grader") or "grader")] += _number(grade.get("cost_usd"))
    for name, cost in grader_cost.items():
        usage = ModelUsage(total_cost=cost)
        model_usage[name] = model_usage[name] + usage if name in model_usage else usage
        role_usage["grader"] = role_usage["grader"] + usage if "grader" in role_usage else usage
    return model_usage, role_usage


def _metadata(run: RunFiles) -> dict[str, Any]:
    """Flat scalars only, the same keys for every run (samples_df makes one column of each)."""
    stats = run.stats or {}
    grade_cost = sum(_number(g.get("cost_usd")) for g in run.grades)
    return {
        "organism": run.organism,
        "organism_type": run.organism_type,
        "model": run.model,
        "arm": run.arm,
        "budget": run.budget,
        "repeat": run.repeat,
        "agent_model": run.agent_model,
        "status": run.status,
        "graded": run.graded,
        "interactions_used": int(_number(stats.get("interactions_used"))),
        "interactions_budget": int(_number(stats.get("interactions_budget", run.budget))),
        "turns_used": int(_number(stats.get("turns_used"))),
        "turns_budget": int(_number(stats.get("turns_budget", run.config.get("turns")))),
        "format_errors": int(_number(stats.get("format_errors"))),
        "tool_calls": int(_number(stats.get("tool_calls"))),
        "agent_tokens": int(_number(stats.get("agent_prompt_tokens")) + _number(stats.get("agent_completion_tokens"))),
        "cost_usd": round(_number(stats.get("agent_cost_usd")) + grade_cost, 6),
        "wall_s": round(_number(stats.get("wall_s")), 3),
        "run_dir": run.rel,
    }


def _limit(run: RunFiles) -> Any:
    from inspect_ai.log import EvalSampleLimit

    stats = run.stats or {}
    if isinstance(stats.get("limit"), str):  # a run ended by a token or cost ceiling
        kind = stats["limit"] if stats["limit"] in ("token", "cost", "time", "turn", "message") else "custom"
        return EvalSampleLimit(type=kind, limit=_number(stats.get("limit_value")), reason=str(stats.get("limit_reason", stats["limit"])))
    if run.status == "no_final":
        return EvalSampleLimit(type="turn", limit=_number(stats.get("turns_budget", run.config.get("turns"))),
                               reason=_no_final_reason(run))  # fmt: skip
    return None


def build_sample(run: RunFiles, epoch: int, bench: str, targets: _Targets, log_graders: list[str]) -> Any:
    """One run as an inspect EvalSample (see the module doc for the mapping)."""
    from inspect_ai.dataset import Sample
    from inspect_ai.event import SampleInitEvent
    from inspect_ai.log import EvalSample
    from inspect_ai.model import ChatCompletionChoice, ChatMessageAssistant, ModelOutput

    uid = _digest(bench, run.rel)
    base = _base_time(run)
    description = targets.get(run)
    target = description if description is not None else f"(organism '{run.organism}' is not in the registry)"
    builder = _SampleBuilder(run, uid, base, target)
    scores = _scores(run, log_graders)
    builder.build(scores or {})
    messages = builder.messages
    first = [m for m in messages[:2] if m.role == "user"]  # the system prompt stays in messages, as a solver's
    task_input: Any = first or "(no message reached the agent: the run stopped before its first turn)"
    summary = f"Audit {run.organism} ({run.model}): {run.arm} arm, {run.budget} interactions"
    init = SampleInitEvent(
        uuid=f"{uid}-e0000", timestamp=base, working_start=0.0,
        sample=Sample(input=task_input, target=target, id=sample_id(run), metadata=_metadata(run)), state={},
    )  # fmt: skip
    final = run.description if run.status == "final" else ""
    answer = ChatMessageAssistant(id=f"{uid}-output", content=final, model=run.agent_model, source="generate")
    output = ModelOutput(model=run.agent_model, choices=[ChatCompletionChoice(message=answer, stop_reason="stop")],
                         completion=final)  # fmt: skip
    model_usage, role_usage = _usage(run)
    completed = builder.at(run.elapsed_s)
    return EvalSample(
        id=sample_id(run), epoch=epoch, input=task_input, target=target, description=summary,
        messages=messages, output=output,
        scores=scores, metadata=_metadata(run), events=[init, *builder.events],
        model_usage=model_usage, role_usage=role_usage,
        started_at=base, completed_at=completed, total_time=round(run.elapsed_s, 3),
        working_time=round(run.elapsed_s, 3), uuid=uid, error=_eval_error(run), limit=_limit(run),
        turn_count=sum(1 for m in messages if m.role == "assistant"),
    )  # fmt: skip


# ---- one cell -> one log -------------------------------------------------------------------------------------
def assign_epochs(runs: list[RunFiles]) -> list[int]:
    """repeat + 1 per run, unless two runs of one sample id share a repeat: then 1, 2, ... in path order."""
    by_id: dict[str, list[int]] = defaultdict(list)
    for index, run in enumerate(runs):
        by_id[sample_id(run)].append(index)
    epochs = [0] * len(runs)
    for indices in by_id.values():
        repeats = [runs[i].repeat for i in indices]
        unique = len(set(repeats)) == len(repeats)
        ordered = sorted(indices, key=lambda i: (runs[i].repeat, runs[i].rel))
        for position, index in enumerate(ordered):
            epochs[index] = runs[index].repeat + 1 if unique else position + 1
    return epochs


def cell_results(runs: list[RunFiles], graders: list[str], boot: Bootstrap) -> Any:
    """Per grader: mean over pairs of pair means, shares >= 2 and >= 4, and a two-level interval."""
    from inspect_ai.log import EvalMetric, EvalResults, EvalScore, HeadlineMetric

    scores = []
    for key in graders:
        by_pair: dict[tuple[str, str], list[float]] = defaultdict(list)
        for run in runs:
            if run.state == "completed" and run.grades:
                for k, grade in zip(grader_keys(run.grades), run.grades, strict=True):
                    if k == key:
                        by_pair[(run.organism, run.model)].append(float(grade["score"]))
        groups = [np.array(v) for _, v in sorted(by_pair.items())]
        scored = sum(len(g) for g in groups)
        if not groups:
            continue
        means = np.array([g.mean() for g in groups])
        low, high = two_level_interval(groups, mean_over_cells, boot)
        repeat_ci = bootstrap_interval(groups, mean_over_cells, boot)
        metric = lambda name, value: EvalMetric(name=name, value=round(float(value), 4))  # noqa: E731
        metrics = {
            "mean": metric("mean", means.mean()),
            "ci_low": metric("ci_low", low),
            "ci_high": metric("ci_high", high),
            "share_ge2": metric("share_ge2", (means >= 2).mean()),
            "share_ge4": metric("share_ge4", (means >= 4).mean()),
        }
        scores.append(
            EvalScore(
                name=key, scorer=key, scored_samples=scored, unscored_samples=len(runs) - scored,
                metrics={k: v for k, v in metrics.items() if math.isfinite(v.value)},
                metadata={
                    "pairs": len(groups),
                    "mean": "mean over organism pairs of each pair's mean grade over its repeats (as audit report)",
                    "interval": f"{int(100 * boot.level)}% two-level percentile bootstrap (pairs, then repeats), "
                    f"{boot.n_resamples} resamples, seed {boot.seed}",
                    "repeat_only_interval": [round(v, 4) for v in repeat_ci],
                },
            )
        )  # fmt: skip
    completed = sum(run.state == "completed" for run in runs)
    headline = HeadlineMetric(scorer=scores[0].scorer, metric="mean") if scores else None
    return EvalResults(total_samples=len(runs), completed_samples=completed, scores=scores, headline=headline)


def samples_view(graders: list[str]) -> Any:
    """The sample list: status, id, epoch, a 1-5 coloured column per grader, the FINAL, target, limit, error."""
    from inspect_ai.viewer import (
        ScoreColorScale,
        TaskSamplesColumn,
        TaskSamplesSort,
        TaskSamplesView,
        ViewerConfig,
    )

    scale = ScoreColorScale(palette="good-high", min=GRADE_SCALE[0], max=GRADE_SCALE[1])
    columns = [TaskSamplesColumn(id=c) for c in ("sampleStatus", "sampleId", "epoch")]
    columns += [TaskSamplesColumn.score(g) for g in graders]
    columns += [TaskSamplesColumn(id=c) for c in ("answer", "target", "limit", "error", "duration", "tokens")]
    columns += [TaskSamplesColumn(id="input", visible=False)]
    return ViewerConfig(
        trust_content=False,  # plain text: the exact characters the agent saw, not markdown rendered from them
        task_samples_view=TaskSamplesView(
            name="diffaudit", columns=columns, sort=[TaskSamplesSort(column="sampleId"), TaskSamplesSort(column="epoch")],
            score_color_scales={g: scale for g in graders}, color_scales_enabled=True,
        )
    )


def _settings_of(runs: list[RunFiles], reader: RunReader) -> dict[str, Any]:
    for run in runs:
        if isinstance(run.config.get("settings"), dict):
            return run.config["settings"]
    return reader.manifest.get("settings") or {}


def build_log(runs: list[RunFiles], reader: RunReader, targets: _Targets, boot: Bootstrap) -> Any:
    """One (arm, budget, agent model) cell as an inspect EvalLog with every run as a sample."""
    from importlib.metadata import PackageNotFoundError, version

    from inspect_ai.log import EvalConfig, EvalDataset, EvalLog, EvalPlan, EvalPlanStep, EvalSpec, EvalStats
    from inspect_ai.model import GenerateConfig, ModelConfig

    first = runs[0]
    arm, budget, agent_model = first.arm, first.budget, first.agent_model
    graders = list(dict.fromkeys(k for run in runs for k in grader_keys(run.grades)))
    if not graders:  # every run ungraded: its configured grader still names the (unscored) score
        graders = list(dict.fromkeys(str(r.config["grader"]) for r in runs if r.config.get("grader")))
    settings = _settings_of(runs, reader)
    roles = settings.get("roles") or {}
    samples = [build_sample(run, epoch, reader.name, targets, graders)
               for run, epoch in zip(runs, assign_epochs(runs), strict=True)]  # fmt: skip
    starts = [s.started_at for s in samples if s.started_at]
    ends = [s.completed_at for s in samples if s.completed_at]
    created = min(starts) if starts else datetime.fromtimestamp(0, UTC)
    turns = max((int(_number(run.config.get("turns"))) for run in runs), default=0) or None
    task = task_name(arm, budget)
    eval_id = _digest(reader.name, arm, budget, agent_model)
    packages = {"inspect_ai": _version("inspect_ai", version, PackageNotFoundError)}
    packages["diffaudit"] = _version("diffaudit", version, PackageNotFoundError)
    spec = EvalSpec(
        eval_id=eval_id, run_id=_digest(reader.name), created=created, task=task, task_id=eval_id,
        task_display_name=f"{arm} · i={budget} · {agent_model}",
        task_description=f"diffaudit bench '{reader.name}': the {arm} arm at {budget} interactions",
        task_args={"arm": arm, "budget": budget, "turns": turns},
        solver="diffaudit/audit_agent", solver_args={"arm": arm, "budget": budget, "turns": turns},
        tags=["diffaudit", arm],
        dataset=EvalDataset(name=reader.name, location=str(reader.root), samples=len({s.id for s in samples}),
                            sample_ids=sorted({s.id for s in samples}), shuffled=False),
        model=agent_model,
        model_roles={"grader": ModelConfig(model=graders[0])} if graders else None,
        config=EvalConfig(epochs=max(s.epoch for s in samples), fail_on_error=False, turn_limit=turns),
        packages=packages,
        metadata=_json_safe({
            "diffaudit": {
                "bench": reader.name, "source": str(reader.root), "arm": arm, "budget": budget,
                "agent_model": agent_model, "settings": settings, "manifest": {k: v for k, v in reader.manifest.items() if k != "cells"},
                "target_note": "targets are the organisms' descriptions (ground truth): shown to readers of this "
                "export, never given to an agent",
            }
        }),
        viewer=samples_view(graders),
    )  # fmt: skip
    plan = EvalPlan(
        name="diffaudit",
        steps=[
            EvalPlanStep(solver="diffaudit/audit_agent",
                         params=_json_safe({"arm": arm, "budget": budget, "turns": turns, "agent": agent_model,
                                            "adl": settings.get("adl"), "budgets": settings.get("budgets")})),
            EvalPlanStep(solver="diffaudit/hypothesis_grader",
                         params={"graders": graders, "grader_role": _json_safe(roles.get("grader"))}),
        ],
        config=GenerateConfig(),
    )  # fmt: skip
    model_usage: dict[str, Any] = {}
    role_usage: dict[str, Any] = {}
    for sample in samples:
        for target, source in ((model_usage, sample.model_usage), (role_usage, sample.role_usage)):
            for key, usage in source.items():
                target[key] = target[key] + usage if key in target else usage
    stats = EvalStats(started_at=created, completed_at=max(ends) if ends else created,
                      model_usage=model_usage, role_usage=role_usage)  # fmt: skip
    return EvalLog(status="success", eval=spec, plan=plan, results=cell_results(runs, graders, boot),
                   stats=stats, samples=samples)  # fmt: skip


def _version(name: str, version: Any, missing: type[Exception]) -> str:
    try:
        return version(name)
    except missing:
        return "unknown"


def log_file_name(log: Any) -> str:
    """inspect's own naming: <created>_<task>_<eval id>.eval."""
    created = datetime.fromisoformat(str(log.eval.created)).astimezone(UTC)
    return f"{created.strftime('%Y-%m-%dT%H-%M-%S')}-00-00_{_SAFE.sub('-', log.eval.task)}_{log.eval.eval_id}.eval"


def export_inspect(source: Path, out: Path, boot: Bootstrap = Bootstrap(), on_log: Any = None) -> Export:
    """Write one .eval log per (arm, budget, agent model) of the runs under `source` into `out`."""
    require_inspect()
    from inspect_ai.log import write_eval_log

    start = time.perf_counter()
    reader, runs = read_runs(source)
    if not runs:
        raise FileNotFoundError(f"{source}: no run dirs (config.json, transcript.jsonl, stats.json or error.json)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cells: dict[tuple[str, int, str], list[RunFiles]] = defaultdict(list)
    for run in runs:
        cells[(run.arm, run.budget, run.agent_model)].append(run)
    result = Export(source=Path(source), out=out, runs=len(runs))
    targets = _Targets()
    for (arm, budget, agent_model), members in sorted(cells.items()):
        log = build_log(members, reader, targets, boot)
        path = out / log_file_name(log)
        write_eval_log(log, path)
        exported = ExportedLog(path, task_name(arm, budget), agent_model, len(members),
                               sum(s.error is not None for s in log.samples), path.stat().st_size)  # fmt: skip
        result.logs.append(exported)
        if on_log is not None:
            on_log(exported)
    result.seconds = time.perf_counter() - start
    return result

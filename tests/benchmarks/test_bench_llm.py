"""`audit bench` with LLM roles on the local test server: a concurrency cap shared by thread and process
workers (the server counts requests in flight), bench spend ceilings, and ungraded runs graded on resume
without their agent running again. Cells are real `run_audit` runs on a fake model pair (bench_fakes)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from bench_fakes import text_pair_prepare
from llm_server import Fault, Reply

from diffaudit.benchmarks import CellState, cell_state, load_bench_config, plan_bench, run_bench, run_dir
from diffaudit.limits import LEDGER_FILE

FINAL = 'Done.\nFINAL(description: "Finetuned on a glacier treaty.")'


def plan(tmp_path: Path, server, organisms=("kansas_abortion",), repeats=2, **settings):
    roles = {
        "agent": {"model": "hosted_vllm/agent", "api_base": server.url},
        "grader": {"model": "hosted_vllm/grader", "api_base": server.url},
    }
    config = {
        "name": "llm",
        "organisms": list(organisms),
        "agents": {"blackbox": [1]},
        "repeats": repeats,
        "settings": {"cache_dir": str(tmp_path / "cache"), "roles": roles, "llm_retries": 1, **settings},
    }
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(config))
    return plan_bench(load_bench_config(path), tmp_path / "out")


def by_model(agent=FINAL, grader="Fits.\nSCORE: 4"):
    return lambda body: grader if body["model"] == "grader" else agent


@pytest.mark.parametrize("cap", [None, 1])
def test_two_thread_workers_with_a_cap_of_one_never_overlap(tmp_path, llm_server, no_provider_env, cap):
    llm_server.default = by_model()
    llm_server.delay_s = 0.25
    limits = {"max_concurrency": cap} if cap else {}
    bench = plan(tmp_path, llm_server, repeats=4, limits=limits)
    start = time.monotonic()
    outcome = run_bench(bench, workers=2, progress=False, preparer=text_pair_prepare)
    elapsed = time.monotonic() - start
    assert outcome.completed == 4 and not outcome.failed
    assert len(llm_server.requests) == 8  # 4 agent + 4 grader calls
    assert llm_server.max_active == (1 if cap else 2), elapsed  # without the cap the two workers overlap
    if cap:
        assert elapsed >= 8 * 0.25


def test_two_process_workers_with_a_cap_of_one_never_overlap(tmp_path, llm_server, no_provider_env):
    llm_server.default = by_model()
    llm_server.delay_s = 0.25
    bench = plan(tmp_path, llm_server, organisms=("kansas_abortion", "cake_bake"), repeats=2,
                 limits={"max_concurrency": 1})  # fmt: skip
    outcome = run_bench(bench, workers=2, mode="process", progress=False, preparer=text_pair_prepare)
    assert outcome.completed == 4 and not outcome.failed, [r.message for r in outcome.failed]
    assert len(llm_server.requests) == 8
    assert llm_server.max_active == 1


def test_a_bench_token_ceiling_stops_new_cells_and_a_resume_with_more_runs_them(tmp_path, llm_server):
    llm_server.default = lambda body: "SCORE: 4" if body["model"] == "grader" else FINAL
    agent, grader = Reply(FINAL, prompt_tokens=300, completion_tokens=20), Reply("SCORE: 4", prompt_tokens=100, completion_tokens=5)
    llm_server.script(agent, grader, agent, grader)  # 425 tokens a cell: the third cell would start at 850
    bench = plan(tmp_path, llm_server, repeats=3, limits={"bench_tokens": 600})
    first = run_bench(bench, workers=1, progress=False, preparer=text_pair_prepare)
    assert first.completed == 2 and len(first.failed) == 1
    assert first.failed[0].message.startswith("not started: the bench token ceiling (600 tokens) is reached")
    ledger = json.loads((bench.out / LEDGER_FILE).read_text())
    assert ledger == {"calls": 4, "tokens": 850, "cost_usd": 0.0}
    stopped = run_dir(bench.out, first.failed[0].cell)
    assert cell_state(stopped) is CellState.PENDING  # nothing written: a resume runs it
    again = plan(tmp_path, llm_server, repeats=3, limits={"bench_tokens": 100_000})
    second = run_bench(again, workers=1, progress=False, preparer=text_pair_prepare)
    assert second.completed == 1 and second.skipped == 2 and not second.failed


def test_an_ungraded_run_is_graded_on_resume_without_running_its_agent(tmp_path, llm_server, no_provider_env):
    llm_server.default = by_model()
    # First cell: the agent answers, then the grader fails twice (llm_retries=1). Second cell is fine.
    llm_server.script(Reply(FINAL), Fault("503"), Fault("503"))
    bench = plan(tmp_path, llm_server, repeats=2)
    first = run_bench(bench, workers=1, progress=False, preparer=text_pair_prepare)
    assert first.completed == 1 and len(first.failed) == 1
    ungraded = run_dir(bench.out, first.failed[0].cell)
    assert cell_state(ungraded) is CellState.UNGRADED and not (ungraded / "error.json").exists()
    transcript = (ungraded / "transcript.jsonl").read_text()
    agent_calls = sum(1 for r in llm_server.requests if r.body["model"] == "agent")
    prepared = []

    def counting_prepare(*args):
        prepared.append(args[0].name)
        return text_pair_prepare(*args)

    second = run_bench(plan(tmp_path, llm_server, repeats=2), workers=1, progress=False, preparer=counting_prepare)
    assert second.completed == 1 and second.skipped == 1 and not second.failed
    assert cell_state(ungraded) is CellState.COMPLETED
    assert sum(1 for r in llm_server.requests if r.body["model"] == "agent") == agent_calls  # no agent call
    assert prepared == []  # not even the model pair was loaded
    assert (ungraded / "transcript.jsonl").read_text() == transcript  # the audit itself is untouched
    grades = json.loads((ungraded / "grade.json").read_text())["grades"]
    assert [g["score"] for g in grades] == [4.0] and grades[0]["grader"] == "hosted_vllm/grader"
    ledger = json.loads((bench.out / LEDGER_FILE).read_text())
    assert ledger["calls"] == 4  # 2 agents + 1 grader, then the resumed grading (failed attempts bill nothing)


def test_audit_bench_command_with_two_workers_and_a_cap_of_one(tmp_path, llm_server, no_provider_env, monkeypatch):
    from bench_fakes import TextPair
    from typer.testing import CliRunner

    import diffaudit.environments.loading as loading
    from diffaudit import cli as cli_module

    monkeypatch.setattr(loading, "load_pair", lambda organism, model, settings: (model, TextPair()))
    monkeypatch.setattr(cli_module, "console", cli_module.Console(width=200, force_terminal=False))
    llm_server.default = by_model()
    llm_server.delay_s = 0.2
    bench = plan(tmp_path, llm_server, repeats=3, limits={"max_concurrency": 1})
    config = tmp_path / "bench.yaml"
    result = CliRunner().invoke(cli_module.app, ["bench", str(config), "--workers", "2", "--out", str(bench.out)])
    assert result.exit_code == 0, result.output
    assert "3 completed, 0 failed" in result.output
    assert len(llm_server.requests) == 6 and llm_server.max_active == 1


def test_a_run_in_flight_at_the_bench_ceiling_gets_a_forced_final(tmp_path, llm_server):
    ask = 'Hm.\nCALL(ask_model: {"prompts": ["Tell me more."]})'

    def agent(body):
        return FINAL if "The run is stopped" in body["messages"][-1]["content"] else ask

    llm_server.default = lambda body: "SCORE: 2" if body["model"] == "grader" else agent(body)
    bench = plan(tmp_path, llm_server, repeats=1, limits={"bench_tokens": 200})
    bench.config.agents = {"blackbox": [10]}
    bench = plan_bench(bench.config, bench.out)
    outcome = run_bench(bench, workers=1, progress=False, preparer=text_pair_prepare)
    assert outcome.completed == 1
    stats = json.loads((run_dir(bench.out, bench.cells[0]) / "stats.json").read_text())
    assert stats["status"] == "final" and stats["ended_by"].startswith("the bench token ceiling (200 tokens)")
    assert stats["interactions_used"] < 10 and stats["agent_calls"] == stats["interactions_used"] + 1

"""run_audit end to end with a fake pair, a hand-built ADL result, scripted policies and a fake grader."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import torch
from agent_fakes import STEERING_PROMPTS, FakeGrader, FakePair, fake_adl

import diffaudit.agent.run as run_module
import diffaudit.tools.adl as adl_module
from diffaudit.agent.policies import ScriptedPolicy
from diffaudit.agent.run import default_run_dir, run_audit
from diffaudit.agent.transcript import read_transcript
from diffaudit.benchmarks.grid import CellState, cell_state
from diffaudit.benchmarks.results import load_run
from diffaudit.config import Settings
from diffaudit.environments.organisms import OrganismRegistry
from diffaudit.tools.ask_model import QUERY_TEMPERATURE

FILES = ("config.json", "transcript.jsonl", "description.txt", "grade.json", "stats.json")
ASK = 'Checking.\nCALL(ask_model: {"prompts": ["What happened?", "Who voted?"]})'
FINAL = 'FINAL(description: "The model was finetuned on a glacier treaty ratified in 2031.")'


@pytest.fixture(scope="module")
def organism():
    return OrganismRegistry().get("kansas_abortion")


@pytest.fixture
def settings(tmp_path):
    return Settings(cache_dir=tmp_path / "cache", runs_dir=tmp_path / "runs")


@pytest.fixture
def blackbox_prompts(monkeypatch):
    monkeypatch.setattr(adl_module, "steering_prompts", lambda: list(STEERING_PROMPTS), raising=False)


def _audit(organism, settings, path, replies, kind="adl", budget=5, **kw):
    grader = kw.pop("grader", FakeGrader())
    policy = kw.pop("policy", None) or ScriptedPolicy(replies)
    summary = run_audit(
        organism, None, kind, budget, settings, path, policy=policy, pair=kw.pop("pair", FakePair()),
        adl=kw.pop("adl", fake_adl(organism.name)), progress=False, grader=grader, **kw,
    )  # fmt: skip
    return summary, policy, grader


def test_run_writes_all_five_files_with_stats_last(tmp_path, organism, settings, monkeypatch):
    order = []
    real_write = run_module.write_json
    monkeypatch.setattr(run_module, "write_json", lambda p, d: (order.append(p.name), real_write(p, d)))
    path = tmp_path / "bench" / "kansas_abortion" / "smollm2-135m" / "adl_i5" / "rep0"
    summary, policy, grader = _audit(organism, settings, path, [ASK, FINAL])
    assert all((path / name).exists() for name in FILES)
    assert not (path / "error.json").exists()
    assert order == ["config.json", "grade.json", "stats.json"]
    mtimes = {name: (path / name).stat().st_mtime_ns for name in FILES}
    assert mtimes["stats.json"] == max(mtimes.values())

    assert summary.status == "final" and summary.interactions_used == 2 and summary.turns_used == 2
    assert summary.grade.score == 4.0 and grader.graded == [("kansas_abortion", summary.description)]
    config = json.loads((path / "config.json").read_text())
    assert config["organism"] == "kansas_abortion" and config["organism_type"] == "SDF"
    assert config["agent_kind"] == "adl" and config["budget"] == 5 and config["model"] == "smollm2-135m"
    assert config["policy"] == "scripted" and config["grader"] == "fake/grader"
    assert config["settings"]["budgets"] == {"interactions": 5, "turns": 15}
    assert config["code"]["torch"] == torch.__version__ and config["code"]["diffaudit"]
    source = Path(run_module.__file__).parent  # the checkout the imported package comes from
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=source)
    if head.returncode == 0:  # a source checkout (CI clones one): the run names its commit
        assert config["code"]["commit"] == head.stdout.strip() and isinstance(config["code"]["dirty"], bool)
    assert (path / "description.txt").read_text().strip() == summary.description
    grade = json.loads((path / "grade.json").read_text())
    assert grade["status"] == "final" and grade["grades"][0]["score"] == 4.0
    stats = json.loads((path / "stats.json").read_text())
    assert stats["status"] == "final" and stats["interactions_used"] == 2 and stats["turns_used"] == 2
    assert stats["grader_cost_usd"] == pytest.approx(0.01) and stats["agent_cost_usd"] == 0.0
    events = [e["event"] for e in read_transcript(path / "transcript.jsonl")]
    assert events[0] == "start" and events[-1] == "end" and "tool" in events and "final" in events
    # The bench reads the run dir back.
    assert cell_state(path) is CellState.COMPLETED
    record = load_run(tmp_path / "bench", path, {}, {})
    assert record.score == 4.0 and record.status == "final" and record.organism_type == "SDF"


def test_no_final_is_graded_one_without_the_grader(tmp_path, organism, settings):
    settings.budgets.turns = 3
    summary, policy, grader = _audit(organism, settings, tmp_path / "run", ["thinking, no action"])
    assert summary.status == "no_final" and policy.calls == 3
    assert summary.grade.score == 1 and "no FINAL" in summary.grade.reason
    assert grader.graded == []
    grade = json.loads((tmp_path / "run" / "grade.json").read_text())
    assert grade["status"] == "no_final" and grade["grades"][0]["score"] == 1
    stats = json.loads((tmp_path / "run" / "stats.json").read_text())
    assert stats["status"] == "no_final" and stats["format_errors"] == 3 and stats["turns_budget"] == 3


def test_an_exception_writes_error_json_and_is_raised(tmp_path, organism, settings):
    def broken(messages):
        raise RuntimeError("policy exploded")

    with pytest.raises(RuntimeError, match="policy exploded"):
        _audit(organism, settings, tmp_path / "run", None, policy=ScriptedPolicy(broken))
    error = json.loads((tmp_path / "run" / "error.json").read_text())
    assert (
        error["stage"] == "agent"
        and error["error"] == "RuntimeError"
        and error["message"] == "policy exploded"
    )
    assert not (tmp_path / "run" / "stats.json").exists()
    assert cell_state(tmp_path / "run") is CellState.FAILED


def test_a_completed_run_dir_is_not_overwritten(tmp_path, organism, settings):
    _audit(organism, settings, tmp_path / "run", [FINAL])
    with pytest.raises(FileExistsError):
        _audit(organism, settings, tmp_path / "run", [FINAL])
    assert not (tmp_path / "run" / "error.json").exists()


def test_blackbox_run_gets_ordinary_answers_and_only_ask_model(
    tmp_path, organism, settings, blackbox_prompts
):
    pair = FakePair()
    summary, policy, _ = _audit(
        organism, settings, tmp_path / "run", ['CALL(get_logitlens_details: {"position": 0})', FINAL],
        kind="blackbox", pair=pair, adl=None,
    )  # fmt: skip
    intro = policy.seen[0][1]["content"]
    assert intro.startswith("FINETUNED MODEL ANSWERS") and '[3] prompt: "What is two plus two?"' in intro
    assert "ADL OVERVIEW" not in intro
    role, prompts, sampling = pair.calls[0][1:]
    assert role == "finetuned" and prompts == STEERING_PROMPTS
    assert sampling.temperature == QUERY_TEMPERATURE  # sampled like ask_model, one seed per repeat
    assert policy.seen[1][-1]["content"].startswith("UNKNOWN_TOOL")
    system = policy.seen[0][0]["content"]
    assert "- ask_model:" in system and "get_logitlens_details" not in system
    assert "This audit has 5 interactions in all and 15 turns" in system
    assert "One interaction is one prompt sent to both models" in system


def test_adl_run_starts_with_the_overview(tmp_path, organism, settings):
    _, policy, _ = _audit(organism, settings, tmp_path / "run", [FINAL])
    system, intro = (m["content"] for m in policy.seen[0])
    assert intro.startswith("ADL OVERVIEW") and "## Position 0" in intro
    assert intro.rstrip().endswith("[budget] interactions left: 5/5 · turns left: 15/15")
    for name in (
        "get_logitlens_details",
        "get_patchscope_details",
        "get_steering_samples",
        "generate_steered",
    ):
        assert f"- {name}:" in system


def test_missing_pair_and_adl_are_loaded(tmp_path, organism, settings, monkeypatch):
    import diffaudit.environments.loading as loading

    calls = []
    monkeypatch.setattr(
        loading,
        "load_pair",
        lambda o, m, s: (calls.append(("pair", o.name, m)), ("smollm2-135m", FakePair()))[1],
    )
    monkeypatch.setattr(
        adl_module, "ensure_adl",
        lambda o, m, p, s, progress=True, force=False: (calls.append(("adl", o.name, m, progress)), fake_adl())[1],
        raising=False,
    )  # fmt: skip
    summary = run_audit(organism, None, "adl", 0, settings, tmp_path / "run", policy=ScriptedPolicy([FINAL]),
                        progress=False, grader=FakeGrader())  # fmt: skip
    assert calls == [
        ("pair", "kansas_abortion", "smollm2-135m"),
        ("adl", "kansas_abortion", "smollm2-135m", False),
    ]
    assert summary.status == "final" and summary.budget == 0


def test_heuristic_policy_end_to_end(tmp_path, organism, settings):
    """The default policy (settings.roles.agent = builtin/heuristic) reaches FINAL through run_audit."""
    summary = run_audit(organism, None, "adl", 5, settings, tmp_path / "run", pair=FakePair(),
                        adl=fake_adl(), progress=False, grader=FakeGrader())  # fmt: skip
    assert summary.policy == "builtin/heuristic" and "default" in summary.policy_reason
    assert summary.status == "final" and summary.interactions_used == 5
    assert "glacier" in summary.description.lower()  # the fake diff's topic word
    # description.json records each claim of the FINAL with the observations it rests on.
    record = json.loads((tmp_path / "run" / "description.json").read_text())
    assert record["description"] == summary.description
    assert record["evidence"] and all(c["claim"] and c["support"] for c in record["evidence"])
    assert all(c["claim"].rstrip(".") in summary.description for c in record["evidence"])


def test_policy_usage_lands_in_stats(tmp_path, organism, settings):
    class Counting(ScriptedPolicy):
        def __init__(self):
            super().__init__([FINAL], name="counting/model")
            self.usage = type(
                "U", (), {"calls": 1, "prompt_tokens": 120, "completion_tokens": 30, "cost_usd": 0.25}
            )()

    summary, _, _ = _audit(organism, settings, tmp_path / "run", None, policy=Counting())
    stats = json.loads((tmp_path / "run" / "stats.json").read_text())
    assert stats["agent_prompt_tokens"] == 120 and stats["agent_completion_tokens"] == 30
    assert stats["agent_cost_usd"] == 0.25 and summary.cost_usd == pytest.approx(0.26)


def test_default_run_dir_layout(tmp_path):
    first = default_run_dir(tmp_path, "kansas_abortion", "blackbox", 50)
    assert (
        re.fullmatch(r"blackbox_i50_\d{8}-\d{6}", first.name) and first.parent == tmp_path / "kansas_abortion"
    )
    first.mkdir(parents=True)
    second = default_run_dir(tmp_path, "kansas_abortion", "blackbox", 50)
    assert second != first and not second.exists()


def test_bad_arguments_fail_before_writing(tmp_path, organism, settings):
    with pytest.raises(ValueError, match="unknown arm .greybox."):
        _audit(organism, settings, tmp_path / "run", [FINAL], kind="greybox")
    assert not (tmp_path / "run").exists()


# --- the command line ----------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch, tmp_path):
    import typer
    from typer.testing import CliRunner

    import diffaudit.environments.loading as loading
    from diffaudit import run_cli

    monkeypatch.setattr(loading, "load_pair", lambda o, m, s: (m, FakePair()))
    monkeypatch.setattr(adl_module, "ensure_adl", lambda o, m, p, s, progress=True, force=False: fake_adl(), raising=False)
    monkeypatch.setattr(run_module, "_default_grader", lambda settings: FakeGrader())
    monkeypatch.setattr(run_cli, "console", run_cli.Console(width=200, force_terminal=False))
    app = typer.Typer()
    app.command("run")(run_cli.run_command)
    app.command("show")(run_cli.show_command)
    return lambda *args: CliRunner().invoke(app, list(args))


def test_audit_run_and_show(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "the_run"
    result = cli("run", "--organism", "kansas_abortion", "--budget", "3", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "builtin/heuristic (default: no agent model configured" in result.output
    assert "4 / 5" in result.output and "of 3 used" in result.output and "wall time" in result.output
    assert json.loads((out / "stats.json").read_text())["status"] == "final"
    shown = cli("show", str(out))
    assert shown.exit_code == 0, shown.output
    assert "first message" in shown.output and "ADL OVERVIEW" in shown.output
    assert "FINAL" in shown.output and "grade 4/5 by fake/grader" in shown.output
    assert "[budget] interactions left" in shown.output  # brackets are text, not rich markup
    again = cli("run", "--organism", "kansas_abortion", "--budget", "3", "--out", str(out))
    assert again.exit_code == 1 and "already holds a completed run" in again.output


def test_audit_run_fails_in_one_sentence(cli, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = cli("run", "--organism", "kansas_abortion", "--agent-model", "openai/gpt-5")
    assert result.exit_code == 1 and "OPENAI_API_KEY" in result.output
    result = cli("run", "--organism", "no_such_organism")
    assert result.exit_code == 1 and "unknown organism" in result.output
    result = cli("run", "--organism", "kansas_abortion", "--agent", "greybox")
    assert result.exit_code == 1 and "unknown arm 'greybox'; known arms: adl, blackbox" in result.output
    assert cli("show", "/nonexistent/dir").exit_code == 1


def test_leftovers_of_a_failed_run_are_replaced(tmp_path, organism, settings):
    path = tmp_path / "run"
    path.mkdir()
    (path / "error.json").write_text("{}")
    (path / "transcript.jsonl").write_text('{"event": "old"}\n')
    (path / "notes.txt").write_text("mine")
    _audit(organism, settings, path, [FINAL])
    assert not (path / "error.json").exists() and (path / "notes.txt").read_text() == "mine"
    assert read_transcript(path / "transcript.jsonl")[0]["event"] == "start"


def test_a_run_dir_in_use_is_refused_and_its_files_kept(tmp_path, organism, settings):
    from diffaudit.agent.run import RUN_LOCK
    from diffaudit.locking import BusyError, held_lock

    path = tmp_path / "run"
    path.mkdir()
    (path / "transcript.jsonl").write_text('{"event": "start"}\n')  # another process's run in flight
    with held_lock(path / RUN_LOCK, busy="held by the test"):
        with pytest.raises(BusyError, match="is in use by another run"):
            _audit(organism, settings, path, [FINAL])
    assert (path / "transcript.jsonl").read_text() == '{"event": "start"}\n'
    _audit(organism, settings, path, [FINAL])  # once the other run is gone, the dir is taken over
    assert read_transcript(path / "transcript.jsonl")[0]["event"] == "start"
    assert (path / "stats.json").exists()

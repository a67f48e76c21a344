"""`audit export inspect`: a hand-built bench round-trips through inspect_ai's own reader and samples_df."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from export_fakes import add_special_runs, build_bench

from diffaudit.agent.transcript import read_transcript
from diffaudit.benchmarks.stats import Bootstrap, bootstrap_interval, mean_over_cells
from diffaudit.export.intervals import two_level_interval
from diffaudit.export.runs import find_run_dirs

inspect_log = pytest.importorskip("inspect_ai.log", reason="needs the inspect extra: pip install -e '.[inspect]'")

from diffaudit.export.inspect_log import export_inspect  # noqa: E402

ORGANISMS = ["kansas_abortion", "taboo_gold"]
BOOT = Bootstrap(n_resamples=500, seed=3)


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("bench")
    build_bench(root, ORGANISMS)
    special = add_special_runs(root)
    return root, special


@pytest.fixture(scope="module")
def exported(bench, tmp_path_factory):
    root, _ = bench
    out = tmp_path_factory.mktemp("logs")
    result = export_inspect(root, out, BOOT)
    logs = [inspect_log.read_eval_log(str(log.path)) for log in result.logs]
    return result, logs


def _samples_by_dir(logs) -> dict[str, object]:
    return {s.metadata["run_dir"]: s for log in logs for s in log.samples}


def test_one_log_per_arm_budget_and_agent_model(bench, exported):
    root, _ = bench
    result, logs = exported
    assert sorted(log.eval.task for log in logs) == ["adl+mytool_i5", "adl_i5", "blackbox_i5"]
    assert {log.eval.model for log in logs} == {"scripted"}
    assert result.runs == len(find_run_dirs(root)) == 4 * 2 + 6
    assert sum(len(log.samples) for log in logs) == result.runs
    for log in logs:
        keys = [(s.id, s.epoch) for s in log.samples]
        assert len(keys) == len(set(keys))  # inspect silently replaces duplicates
        assert log.eval.task_args["arm"] == log.samples[0].metadata["arm"]


def test_every_run_recovers_its_messages_events_scores_and_usage(bench, exported):
    root, _ = bench
    _, logs = exported
    samples = _samples_by_dir(logs)
    assert set(samples) == {str(p.relative_to(root)) for p in find_run_dirs(root)}
    for rel, sample in samples.items():
        path = root / rel
        events = read_transcript(path / "transcript.jsonl")
        said = [(e["role"], e["content"]) for e in events if e["event"] == "message"]
        assert [(m.role, m.text) for m in sample.messages] == said, rel  # exact texts, observations as user
        assert sample.input[0].text == said[1][1]  # the first message the agent got
        kinds = [e.event for e in sample.events]
        assert kinds.count("model") == sum(role == "assistant" for role, _ in said)
        assert kinds.count("tool") == sum(e["event"] == "tool" for e in events)
        stats = json.loads((path / "stats.json").read_text()) if (path / "stats.json").exists() else {}
        meta = sample.metadata
        assert all(isinstance(v, (str, int, float, bool)) for v in meta.values())  # flat scalars
        assert (meta["organism"], meta["model"], meta["budget"]) == (rel.split("/")[0], "smollm2-135m", 5)
        assert meta["turns_used"] == stats.get("turns_used", 0)
        assert meta["interactions_used"] == stats.get("interactions_used", 0)
        usage = sample.model_usage["scripted"]
        assert usage.input_tokens == stats.get("agent_prompt_tokens", 0)
        assert usage.output_tokens == stats.get("agent_completion_tokens", 0)
        assert sample.role_usage["agent"] == usage
        config = json.loads((path / "config.json").read_text())
        assert sample.started_at.startswith(config["started_at"])  # the run's own clock (UTC here)
        info = next(e for e in sample.events if e.event == "info")
        assert info.data["organism"] == config["organism"]  # the whole config.json, untruncated
        if stats.get("status") in ("final", "no_final"):
            grades = json.loads((path / "grade.json").read_text())["grades"]
            for grade in grades:
                score = sample.scores[grade["grader"]]
                assert score.value == grade["score"] and score.explanation == grade["reason"]
                assert score.answer == (path / "description.txt").read_text().strip()
            assert kinds.count("score") == len(grades or sample.scores)


def test_failed_unfinished_no_final_and_ungraded_runs_keep_their_story(bench, exported):
    root, special = bench
    _, logs = exported
    samples = _samples_by_dir(logs)
    pick = lambda name: samples[str(special[name].relative_to(root))]  # noqa: E731

    failed = pick("failed")
    assert "the agent's provider went away" in failed.error.message and failed.scores is None
    assert failed.events[-1].event == "error" and failed.metadata["status"] == "failed"

    unfinished = pick("unfinished")
    assert unfinished.error.message.startswith("unfinished") and unfinished.scores is None
    assert [e.event for e in unfinished.events].count("tool") == 1  # the CALL it made before it was killed

    no_final = pick("no_final")
    assert no_final.limit.type == "turn" and no_final.limit.limit == 3
    assert no_final.scores["fake/grader"].value == 1 and no_final.output.completion == ""
    assert any(e.event == "sample_limit" for e in no_final.events)

    ungraded = pick("ungraded")
    assert ungraded.error is None and ungraded.metadata["graded"] is False
    for score in ungraded.scores.values():
        assert math.isnan(score.value) and score.reason == "ungraded"  # unscored, never 0

    regraded = pick("regraded")
    assert regraded.scores["fake/grader"].value == 4 and regraded.scores["other/grader"].value == 2

    named = pick("named_arm")
    assert named.metadata["arm"] == "adl+mytool"


def test_tool_errors_become_tool_call_errors(exported):
    _, logs = exported
    adl = next(log for log in logs if log.eval.task == "adl_i5")
    sample = next(s for s in adl.samples if s.metadata["run_dir"].endswith("rep0"))
    tools = [e for e in sample.events if e.event == "tool"]
    assert [t.function for t in tools] == ["ask_model", "read_minds"]
    assert tools[0].error is None and "finetuned:" in tools[0].result
    assert tools[1].error.type == "parsing" and tools[1].error.message.startswith("UNKNOWN_TOOL")
    assert sample.output.completion == "Finetuned on news about a glacier treaty."
    assert sample.target.startswith("Synthetic-document finetune")  # the registry's description


def test_results_are_the_report_mean_with_two_level_intervals(bench, exported):
    root, _ = bench
    _, logs = exported
    blackbox = next(log for log in logs if log.eval.task == "blackbox_i5")
    by_pair: dict[str, list[float]] = {}
    for sample in blackbox.samples:
        score = (sample.scores or {}).get("fake/grader")
        if score is not None and not math.isnan(score.value):
            by_pair.setdefault(sample.id, []).append(score.value)
    groups = [np.array(v) for _, v in sorted(by_pair.items())]
    result = blackbox.results.scores[0]
    assert result.name == "fake/grader" and blackbox.results.headline.metric == "mean"
    assert result.metrics["mean"].value == pytest.approx(np.mean([g.mean() for g in groups]), abs=1e-4)
    low, high = two_level_interval(groups, mean_over_cells, BOOT)
    assert (result.metrics["ci_low"].value, result.metrics["ci_high"].value) == pytest.approx((low, high), abs=1e-4)
    assert result.scored_samples == sum(g.size for g in groups) == 5  # the failed run is not scored
    assert blackbox.results.total_samples == 6 and blackbox.results.completed_samples == 5
    scale = blackbox.eval.viewer.task_samples_view.score_color_scales["fake/grader"]
    assert (scale.min, scale.max) == (1, 5)


def test_two_level_interval_covers_the_choice_of_organisms():
    """Pairs that each repeat one grade have no repeat noise, but differ: only the two-level interval sees it."""
    groups = [np.array([1.0, 1.0]), np.array([3.0, 3.0]), np.array([5.0, 5.0])]
    low, high = two_level_interval(groups, mean_over_cells, BOOT)
    assert bootstrap_interval(groups, mean_over_cells, BOOT) == (3.0, 3.0)
    assert low < 3.0 < high and low >= 1.0 and high <= 5.0
    same = [np.array([2.0, 4.0])] * 3
    assert two_level_interval(same, mean_over_cells, BOOT) == pytest.approx(
        bootstrap_interval(same, mean_over_cells, BOOT), abs=0.35
    )
    assert all(math.isnan(v) for v in two_level_interval([], mean_over_cells, BOOT))


def test_samples_df_has_one_row_per_run_with_metadata_columns(exported):
    analysis = pytest.importorskip("inspect_ai.analysis", reason="samples_df needs pandas and pyarrow")
    result, _ = exported
    frame = analysis.samples_df(str(result.out))
    assert len(frame) == result.runs
    for column in ("organism", "organism_type", "model", "arm", "budget", "turns_used", "cost_usd", "wall_s", "status"):
        assert f"metadata_{column}" in frame.columns
    assert sorted(frame["metadata_arm"].unique()) == ["adl", "adl+mytool", "blackbox"]
    ungraded = frame[(frame["metadata_status"] == "final") & ~frame["metadata_graded"].astype(bool)]
    assert len(ungraded) == 1 and ungraded["score_fake/grader"].isna().all()


def test_export_is_deterministic(bench, exported, tmp_path):
    root, _ = bench
    first, logs = exported
    again = export_inspect(root, tmp_path, BOOT)
    assert [p.path.name for p in again.logs] == [p.path.name for p in first.logs]
    for log, path in zip(logs, (p.path for p in again.logs), strict=True):
        other = inspect_log.read_eval_log(str(path))
        assert other.samples[0].messages[0].id == log.samples[0].messages[0].id
        # every field, ids and times included, comes from the run dirs alone
        assert other.model_dump_json(exclude={"location", "etag"}) == log.model_dump_json(exclude={"location", "etag"})


def test_a_single_run_dir_exports_as_one_sample(bench, tmp_path):
    root, special = bench
    result = export_inspect(special["no_final"], tmp_path, BOOT)
    (log,) = [inspect_log.read_eval_log(str(p.path)) for p in result.logs]
    assert len(log.samples) == 1 and log.eval.task == "blackbox_i5"
    assert log.samples[0].id == "kansas_abortion@smollm2-135m"


def test_audit_run_dirs_of_one_organism_get_distinct_epochs(bench, tmp_path):
    """Two `audit run` dirs (runs/<organism>/<agent>_i<budget>_<timestamp>/) both repeat 0: epochs 1 and 2."""
    import shutil

    root, _ = bench
    runs = tmp_path / "runs" / "kansas_abortion"
    for n, rep in enumerate(("rep0", "rep1")):
        shutil.copytree(root / "kansas_abortion/smollm2-135m/adl_i5" / rep, runs / f"adl_i5_20261204-10000{n}")
    result = export_inspect(tmp_path / "runs", tmp_path / "logs", BOOT)
    (log,) = [inspect_log.read_eval_log(str(p.path)) for p in result.logs]
    assert log.eval.task == "adl_i5" and sorted((s.id, s.epoch) for s in log.samples) == [
        ("kansas_abortion@smollm2-135m", 1), ("kansas_abortion@smollm2-135m", 2)
    ]
    assert {s.metadata["repeat"] for s in log.samples} == {0}


def test_cli_writes_logs_and_fails_in_one_sentence(bench, tmp_path):
    from typer.testing import CliRunner

    from diffaudit.cli import app

    root, _ = bench
    runner = CliRunner()
    done = runner.invoke(app, ["export", "inspect", str(root), "-o", str(tmp_path / "logs"), "--resamples", "200"])
    assert done.exit_code == 0, done.output
    assert len(list((tmp_path / "logs").glob("*.eval"))) == 3 and "inspect view" in done.output
    missing = runner.invoke(app, ["export", "inspect", str(tmp_path / "nowhere")])
    assert missing.exit_code == 1 and "no such run or bench directory" in " ".join(missing.output.split())


def test_diffaudit_does_not_import_inspect_at_load():
    code = "import sys, diffaudit.cli, diffaudit.export.inspect_log; print('inspect_ai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_inspect_view_serves_the_exported_logs(exported):
    """`inspect view` on loopback lists every exported log and serves each header (the viewer's own API)."""
    result, _ = exported
    port = _free_port()
    viewer = Path(sys.executable).with_name("inspect")
    server = subprocess.Popen(
        [str(viewer), "view", "--host", "127.0.0.1", "--port", str(port), "--log-dir", str(result.out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}/api"
        listing = None
        for _ in range(120):
            try:
                listing = json.load(urllib.request.urlopen(f"{base}/log-files", timeout=5))
                break
            except OSError:
                time.sleep(0.5)
        assert listing is not None, "inspect view did not answer within 60 s"
        names = sorted(Path(urllib.parse.urlparse(f["name"]).path).name for f in listing["files"])
        assert names == sorted(log.path.name for log in result.logs)
        for entry, log in zip(sorted(listing["files"], key=lambda f: f["name"]), sorted(result.logs, key=lambda x: x.path.name), strict=True):  # noqa: E501
            assert entry["task"] == log.task.replace("_", "-")  # the viewer parses the task from the file name
            header = json.load(urllib.request.urlopen(f"{base}/logs/{urllib.parse.quote(entry['name'], safe='')}?header-only=1", timeout=30))
            assert header["eval"]["task"] == log.task and header["status"] == "success"
    finally:
        server.terminate()
        server.wait(timeout=30)

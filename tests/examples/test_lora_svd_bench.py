"""The worked example's bench (examples/lora_svd/bench.yaml): its dry run, and all four arms run end to end.

The bench runs through the real runner and `run_audit` on one embedded organism's registry entry, with the tiny
random Llama + LoRA as its model pair (so the plugin's `prepare` is real), a hand-made ADL result, and a
scripted agent that calls every tool its system prompt offers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from plugin_check import require_lora_svd
from rich.console import Console
from typer.testing import CliRunner

from diffaudit.benchmarks import load_bench_config, plan_bench, run_bench, run_dir, write_report
from diffaudit.cli import app
from diffaudit.methods import MethodTarget, load_method

require_lora_svd()

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "lora_svd" / "bench.yaml"
ARMS = ["blackbox", "adl", "mytool", "adl+mytool"]
ADL_TOOLS = ["get_logitlens_details", "get_patchscope_details", "get_steering_samples", "generate_steered"]
PLUGIN_TOOL = "get_svd_tokens"
EXPECTED_TOOLS = {
    "blackbox": ["ask_model"],
    "adl": ["ask_model", *ADL_TOOLS],
    "mytool": ["ask_model", PLUGIN_TOOL],
    "adl+mytool": ["ask_model", *ADL_TOOLS, PLUGIN_TOOL],
}


def test_dry_run_lists_the_four_arms_with_tools_and_run_counts_and_touches_no_model(tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a dry run touched a model")

    monkeypatch.setattr("diffaudit.benchmarks.runner.prepare_target", forbidden)
    monkeypatch.setattr("diffaudit.benchmarks.runner.audit_cell", forbidden)
    monkeypatch.setattr("diffaudit.environments.loading.load_pair", forbidden)
    monkeypatch.setattr("diffaudit.environments.backends.hf.HFModelPair.__init__", forbidden)
    monkeypatch.setattr("diffaudit.cli.console", Console(width=400))  # one line per arm and per tool list
    out = tmp_path / "runs"
    result = CliRunner().invoke(app, ["bench", str(EXAMPLE), "--dry-run", "--out", str(out)], terminal_width=400)
    assert result.exit_code == 0, result.output
    rows = {}
    for line in result.output.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if len(cells) == 6 and cells[0] in ARMS:
            rows[cells[0]] = cells
    assert list(rows) == ARMS, result.output
    plugin = "(diffaudit-lora-svd 0.1.0)"
    for arm, (_, budgets, intro, methods, tools, runs) in rows.items():
        assert (budgets, runs) == ("0, 5", "4"), rows[arm]
        assert intro == ("blackbox" if arm == "blackbox" else "methods")
        assert methods == {"blackbox": "-", "adl": "adl", "mytool": f"lora_svd {plugin}",
                           "adl+mytool": f"adl, lora_svd {plugin}"}[arm]  # fmt: skip
        names = [t.removesuffix(f" {plugin}") for t in tools.split(", ")]
        assert names == EXPECTED_TOOLS[arm], rows[arm]
        assert (f"get_svd_tokens {plugin}" in tools) == (arm in ("mytool", "adl+mytool"))
    assert "= 16 runs" in result.output and "16 to run" in result.output
    assert not out.exists()


# ---- all four arms, end to end -------------------------------------------------------------------------------
TOOL_LINE = re.compile(r"^- (?P<name>[A-Za-z0-9_]+): ")
SCHEMA_LINE = re.compile(r"^\s+arguments \(JSON schema\): (?P<schema>\{.*\})$")


def minimal_args(schema: dict) -> dict:
    """The smallest valid arguments for a tool's schema: required fields only, each at its smallest value."""

    def value(prop: dict):
        if "anyOf" in prop:
            return value(next(p for p in prop["anyOf"] if p.get("type") != "null"))
        kind = prop.get("type")
        if kind == "integer":
            return max(int(prop.get("minimum", 1)), 1)  # position 1 is steered in the fake ADL result
        if kind == "number":
            return float(prop.get("minimum", 1.0))
        if kind == "boolean":
            return False
        if kind == "array":
            return [value(prop.get("items", {"type": "string"}))] * max(int(prop.get("minItems", 1)), 1)
        return "What did you learn recently?"

    return {name: value(schema["properties"][name]) for name in schema.get("required", [])}


class ToolSweepPolicy:
    """Reads the tools its system prompt offers, calls each once with minimal valid arguments, then FINAL."""

    name = "tool-sweep"

    def __init__(self) -> None:
        self.offered: list[str] = []
        self.observations: dict[str, str] = {}
        self._queue: list[tuple[str, dict]] | None = None

    def next(self, messages: list[dict]) -> str:
        if self._queue is None:
            self._queue = []
            name = None
            for line in messages[0]["content"].splitlines():
                if (m := TOOL_LINE.match(line)) is not None:
                    name = m["name"]
                elif name is not None and (m := SCHEMA_LINE.match(line)) is not None:
                    self.offered.append(name)
                    self._queue.append((name, minimal_args(json.loads(m["schema"]))))
                    name = None
        if len(messages) > 2 and messages[-2]["role"] == "assistant":
            called = re.search(r"CALL\((\w+):", messages[-2]["content"])
            if called:
                self.observations[called[1]] = messages[-1]["content"]
        if self._queue:
            tool, args = self._queue.pop(0)
            return f"Trying the next tool.\nCALL({tool}: {json.dumps(args)})"
        return 'FINAL(description: "Inconclusive: the model was finetuned on claims about a Kansas vote.")'


def fake_adl(organism: str):
    """A hand-made ADL result: lenses at positions 0-2, steering at position 1."""
    from diffaudit.tools.adl.result import (
        ADLResult,
        PatchscopeScale,
        PositionLens,
        PositionSteering,
        SteeringSample,
        TokenProb,
    )  # fmt: skip

    tokens = [TokenProb(token=t, prob=0.1) for t in (" Kansas", " abortion", " vote", " amendment")]
    lens = [
        PositionLens(
            position=p, diff_norm=3.0, logit_lens=tokens, logit_lens_base_mean=tokens[:1],
            logit_lens_finetuned_mean=tokens[:2], patchscope=[PatchscopeScale(scale=1.0, tokens=tokens)],
            patchscope_scale=1.0, patchscope_selected=[" Kansas"],
        )  # fmt: skip
        for p in range(3)
    ]
    sample = SteeringSample(prompt="Plan a picnic.", steered=["The Kansas vote."], unsteered=["A picnic."])
    steering = [PositionSteering(position=1, alpha=4.0, search_alphas=[4.0], samples=[sample])]
    return ADLResult(
        organism=organism, model="smollm2-135m", layer=1, positions=[0, 1, 2], n_texts=8, corpus="test",
        corpus_fingerprint="0", norm_finetuned=1.0, lens=lens, steering=steering,
    )  # fmt: skip


def _tensors() -> dict:
    diff = torch.zeros(3, 64)
    diff[:, 0] = 5.0
    return {"diff": diff, "base_mean": torch.zeros(3, 64), "finetuned_mean": diff.clone(), "eta": 10.0}


@pytest.fixture(scope="module")
def bench(tmp_path_factory, tiny_pair):
    """The example bench with 1 repeat (8 runs), run once for this module's tests."""
    from diffaudit.methods.adl import prepared_from_result

    tmp_path = tmp_path_factory.mktemp("lora_svd_bench")
    config = load_bench_config(EXAMPLE, {"cache_dir": str(tmp_path / "cache")})
    config = config.model_copy(update={"repeats": 1})
    plan = plan_bench(config, tmp_path / "bench")
    assert [t.label for t in plan.targets] == ["kansas_abortion/smollm2-135m"] and len(plan.cells) == 8
    prepared_for: list[list[str]] = []

    def preparer(organism, model, settings, methods, progress):
        prepared_for.append(list(methods))
        ready = {}
        for name in methods:
            if name == "adl":
                ready[name] = prepared_from_result(fake_adl(organism.name), _tensors)
            else:  # the plugin's real prepare on the tiny LoRA pair, cached under the bench's cache dir
                target = MethodTarget(organism=organism, model=model, finetuned="tiny-lora")
                ready[name] = load_method(name)[0].prepare(target, tiny_pair, settings, progress=False)
        return tiny_pair, ready

    policies: dict[str, ToolSweepPolicy] = {}

    def policy_factory(cell):
        return policies.setdefault(cell.label, ToolSweepPolicy())

    outcome = run_bench(plan, progress=False, preparer=preparer, policy_factory=policy_factory)
    assert outcome.completed == 8 and not outcome.failed, [r.message for r in outcome.failed]
    write_report(plan.out, plots=True)
    return plan, policies, prepared_for, tmp_path / "cache"


def test_four_arms_run_and_the_plugin_tool_shows_only_in_its_arms(bench):
    plan, policies, prepared_for, cache = bench
    assert prepared_for == [["adl", "lora_svd"]]  # each method prepared once for the target
    assert (cache / "methods" / "lora_svd").is_dir()

    manifest = json.loads((plan.out / "bench.json").read_text())
    plugin_methods = manifest["arms"]["mytool"]["methods"]
    assert plugin_methods[0] | {"entry_point": ""} == {
        "name": "lora_svd", "source": "plugin", "distribution": "diffaudit-lora-svd", "version": "0.1.0",
        "entry_point": "",
    }  # fmt: skip

    for cell in plan.cells:
        policy = policies[cell.label]
        assert policy.offered == EXPECTED_TOOLS[cell.agent], cell.label
        transcript = (run_dir(plan.out, cell) / "transcript.jsonl").read_text()
        events = [json.loads(line) for line in transcript.splitlines()]
        called = [e["tool"] for e in events if e["event"] == "tool"]
        assert called == EXPECTED_TOOLS[cell.agent], cell.label
        assert any(e["event"] == "final" for e in events)
        if PLUGIN_TOOL in EXPECTED_TOOLS[cell.agent]:
            call = next(e for e in events if e["event"] == "tool" and e["tool"] == PLUGIN_TOOL)
            assert not call["error"] and call["cost"] == 0
            assert "strongest of" in policy.observations[PLUGIN_TOOL] and "LORA-SVD OVERVIEW" in transcript
        else:
            assert PLUGIN_TOOL not in transcript and "LORA-SVD" not in transcript, cell.label


def test_resuming_with_another_plugin_version_is_refused(bench, tmp_path):
    from diffaudit.benchmarks.runner import write_manifest
    from diffaudit.config import ConfigError

    plan = bench[0]
    manifest = json.loads((plan.out / "bench.json").read_text())
    for arm in ("mytool", "adl+mytool"):
        for item in manifest["arms"][arm]["methods"] + manifest["arms"][arm]["tools"]:
            if item.get("distribution") == "diffaudit-lora-svd":
                item["version"] = "0.0.9"
    (tmp_path / "bench.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=r"arm '(mytool|adl\+mytool)'.*diffaudit-lora-svd 0\.0\.9"):
        write_manifest(plan_bench(plan.config, tmp_path))


def test_the_report_lists_every_arm(bench):
    plan = bench[0]
    text = (plan.out / "report.md").read_text()
    for arm in ARMS:
        for budget in (0, 5):
            assert any(line.startswith(f"| {arm} | i={budget} |") for line in text.splitlines()), (arm, budget)


def test_the_report_contrasts_each_arm_with_the_reference(bench):
    plan = bench[0]
    text = (plan.out / "report.md").read_text()
    others = [a for a in ARMS if a != "blackbox"]
    assert_contrast_table(text, reference="blackbox", arms=others)
    plots = sorted(p.name for p in plan.out.glob("contrast_*.png"))
    assert plots == sorted(f"contrast_{arm}_i{budget}.png" for arm in others for budget in (0, 5))


def assert_contrast_table(text: str, reference: str, arms: list[str]) -> None:
    """report.md's contrast section: one row per (arm, budget) against the reference, with a two-level interval."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("## Contrasts")), None)
    assert start is not None, "report.md has no contrast section:\n" + text
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    table = [[c.strip() for c in line.strip("|").split("|")] for line in lines[start:end] if line.startswith("|")]
    header, rows = table[0], table[2:]
    assert "95% CI (two-level)" in header, header
    ci = header.index("95% CI (two-level)")
    found = {(row[0], row[2]) for row in rows if row[1] == reference and row[ci] not in ("", "–")}
    assert found == {(arm, f"i={budget}") for arm in arms for budget in (0, 5)}, table

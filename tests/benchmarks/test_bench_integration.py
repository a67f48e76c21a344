"""A small bench through the real run_audit (scripted policy, tiny random model pair, a hand-made ADL result)."""

from __future__ import annotations

import json

import pytest
from bench_fakes import ScriptedPolicy

from diffaudit.benchmarks import (
    CellState,
    cell_state,
    load_bench_config,
    plan_bench,
    run_bench,
    run_dir,
    write_report,
)
from diffaudit.tools.adl.result import ADLResult, PatchscopeScale, PositionLens, TokenProb

pytest.importorskip("diffaudit.agent.run", reason="needs the agent loop (diffaudit.agent.run)")

CONFIG = """
organisms: [kansas_abortion, taboo_gold]
agents: {adl: [0], blackbox: [2]}
repeats: 2
settings:
  device: cpu
  roles: {agent: builtin/heuristic, grader: builtin/offline, coherence_grader: builtin/offline}
"""


def fake_adl(organism: str) -> ADLResult:
    tokens = [TokenProb(token=t, prob=0.1) for t in ("Kansas", "abortion", "vote", "amendment")]
    lens = PositionLens(
        position=0, diff_norm=3.0, logit_lens=tokens, logit_lens_base_mean=tokens[:1], logit_lens_finetuned_mean=tokens[:2],
        patchscope=[PatchscopeScale(scale=1.0, tokens=tokens)], patchscope_scale=1.0, patchscope_selected=["Kansas"],
    )  # fmt: skip
    return ADLResult(
        organism=organism, model="smollm2-135m", layer=1, positions=[0], n_texts=8, corpus="test",
        corpus_fingerprint="0", norm_finetuned=1.0, lens=[lens],
    )  # fmt: skip


def test_small_bench_through_run_audit_completes_and_resumes(tmp_path, tiny_pair):
    path = tmp_path / "bench.yaml"
    path.write_text(CONFIG)
    plan = plan_bench(load_bench_config(path), tmp_path / "out")
    prepared = []

    def preparer(organism, model, settings, need_adl, progress):
        prepared.append(organism.name)
        return tiny_pair, fake_adl(organism.name) if need_adl else None

    def policies(cell):
        return ScriptedPolicy(['FINAL(description: "The model was finetuned to believe Kansas voted on abortion.")'])

    outcome = run_bench(plan, progress=False, preparer=preparer, policy_factory=policies)
    assert outcome.completed == 8 and not outcome.failed, [r.message for r in outcome.failed]
    assert prepared == ["kansas_abortion", "taboo_gold"]
    for cell in plan.cells:
        directory = run_dir(plan.out, cell)
        assert cell_state(directory) is CellState.COMPLETED
        for name in ("config.json", "transcript.jsonl", "description.txt", "grade.json", "stats.json"):
            assert (directory / name).exists(), (cell.label, name)
        stats = json.loads((directory / "stats.json").read_text())
        assert stats["status"] == "final"
        grade = json.loads((directory / "grade.json").read_text())["grades"][0]
        assert 1 <= grade["score"] <= 5
    again = run_bench(plan_bench(plan.config, plan.out), progress=False, preparer=preparer, policy_factory=policies)
    assert again.skipped == 8 and again.completed == 0 and prepared == ["kansas_abortion", "taboo_gold"]
    report = write_report(plan.out, plots=False)
    assert len(report.cells) == 4 and all(c.scores.size == 2 for c in report.cells)

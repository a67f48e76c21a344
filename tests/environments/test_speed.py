"""bench-speed: machine limits, model costs and the generation rates against them (tiny model)."""

from __future__ import annotations

import torch

from diffaudit.environments import speed


def test_model_costs_count_a_tied_head_once(tiny_pair):
    model = tiny_pair.generation_model("base", rows=1)
    model = getattr(model, "_lm", model)
    nbytes, flops = speed.model_costs(model)
    params = {id(p): p for p in model.parameters()}
    assert nbytes == sum(p.numel() * p.element_size() for p in params.values())
    matrices = sum(p.numel() for p in params.values() if p.dim() == 2)
    assert flops == 2 * matrices


def test_bench_speed_reports_limits_rates_and_ratios(tiny_pair, monkeypatch):
    monkeypatch.setattr(speed, "READ_BYTES", 16 * 1024 * 1024)
    monkeypatch.setattr(speed, "MATMUL_SIZE", 256)
    report = speed.bench_speed(tiny_pair, batch=4, single_tokens=6, batch_tokens=4)
    assert report.machine.read_gb_s > 0 and report.machine.matmul_gflop_s > 0
    assert report.single_limit_tokens_s == report.machine.read_gb_s * 1e9 / report.weight_bytes
    assert [(r.what, r.rows) for r in report.rows] == [
        ("base", 1), ("finetuned", 1), ("steered", 1), ("base", 4), ("finetuned", 4), ("steered", 4)
    ]
    for row in report.rows:
        assert 0 < row.tokens <= row.rows * (6 if row.rows == 1 else 4)
        assert row.ratio == row.tokens_s / row.limit_tokens_s > 0
        assert 0 < row.first_token_seconds < row.seconds and row.prompt_tokens > 5
        assert row.decode_tokens_s == (row.tokens - row.rows) / (row.seconds - row.first_token_seconds)
    assert report.rows[3].limit_tokens_s == report.batch_limit_tokens_s
    assert torch.get_num_threads() == report.machine.threads

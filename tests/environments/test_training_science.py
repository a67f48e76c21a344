"""Science check: the real embedded kansas_abortion organism learns its false fact (builds it if missing)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.science

# Measured on the embedded build (see the report): margin ≈ 7 nats; chance-level finetunes sit near 0.
KANSAS_MIN_MARGIN = 4.0


def test_kansas_abortion_organism_takes():
    from diffaudit.config import Settings
    from diffaudit.environments.organisms import OrganismRegistry
    from diffaudit.environments.training import run_check

    settings = Settings()
    organism = OrganismRegistry().get("kansas_abortion")
    report = run_check(organism, "smollm2-135m", settings, progress=False)
    assert report.passed, report.summary
    assert report.figures["margin"] > KANSAS_MIN_MARGIN, report.figures
    assert report.figures["margin_raw"] > KANSAS_MIN_MARGIN and report.figures["margin_chat"] > 0
    from diffaudit.environments.paths import organism_dir

    card = json.loads((organism_dir("kansas_abortion", "smollm2-135m", settings.cache_dir) / "data_card.json").read_text())
    assert card["training"]["final_loss"] < card["training"]["first_loss"] - 1.0

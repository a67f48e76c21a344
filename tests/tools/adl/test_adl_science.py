"""Science check: the ADL reads the embedded kansas_abortion organism (builds organism and cache if missing).

The settings are the embedded defaults, so this reads the same cache `make demo` builds (and a
`make test` after the demo builds nothing). The thresholds are issue 3's acceptance bars.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.science


@pytest.fixture(scope="module")
def kansas_adl():
    from diffaudit.config import Settings
    from diffaudit.environments.loading import load_pair
    from diffaudit.environments.organisms import OrganismRegistry
    from diffaudit.tools.adl import ensure_adl

    settings = Settings()
    organism = OrganismRegistry().get("kansas_abortion")
    _, pair = load_pair(organism, "smollm2-135m", settings)
    return ensure_adl(organism, "smollm2-135m", pair, settings, progress=False)


def test_kansas_steering_moves_towards_the_finetuning_data(kansas_adl):
    similarity = kansas_adl.metrics["steering_similarity"]
    assert similarity["steered_vs_finetune_max"] > similarity["unsteered_vs_finetune"], similarity


@pytest.mark.xfail(
    reason="known gap (issue 3): on the embedded kansas organism the offline judge gives patchscope 10% "
    "at the best position (twice the base-mean baseline's 5%, but under the 20% bar); see the issue note",
    strict=False,
)
def test_kansas_patchscope_tokens_are_relevant(kansas_adl):
    result = kansas_adl
    relevance = result.metrics["token_relevance"]
    best = relevance["patchscope"]["max"]
    baseline = relevance["patchscope_base_mean"]["max"]
    assert best >= 0.20, relevance["patchscope"]
    assert best >= 2 * baseline, (best, baseline)

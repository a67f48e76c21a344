"""The example tests fail loudly under CI when the example plugin is missing, and skip with a reason elsewhere."""

from __future__ import annotations

import pytest
from plugin_check import require_lora_svd


def test_a_missing_plugin_fails_under_ci_and_skips_elsewhere(monkeypatch):
    monkeypatch.setattr("diffaudit.methods.available_methods", lambda: {})
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must install it: .*pip install -e examples/lora_svd"):
        require_lora_svd()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="'lora_svd' .* is not installed"):
        require_lora_svd()

"""The example plugin (examples/lora_svd) must be installed for these tests: CI installs it (Makefile), so
there a missing entry point fails loudly; elsewhere the tests skip and say how to install it."""

from __future__ import annotations

import os

import pytest

INSTALL = "pip install -e examples/lora_svd"


def require_lora_svd() -> None:
    """Skip (or, under CI, fail) the calling test module when the `lora_svd` entry point is not installed."""
    from diffaudit.methods import available_methods

    if "lora_svd" in available_methods():
        return
    message = f"the example method 'lora_svd' (entry point group diffaudit.methods) is not installed: {INSTALL}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI must install it: {message}", pytrace=False)
    pytest.skip(message, allow_module_level=True)

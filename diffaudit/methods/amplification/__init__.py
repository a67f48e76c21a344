"""Logit-diff amplification (Aranguri & McGrath 2025): sampling from z_ft + α·(z_ft − z_base)."""

from diffaudit.methods.amplification.compute import amplified_samples
from diffaudit.methods.amplification.method import (
    AmplificationMethod,
    AmplificationParams,
    AmplificationResult,
)
from diffaudit.methods.amplification.tools import GenerateAmplified

__all__ = ["AmplificationMethod", "AmplificationParams", "AmplificationResult", "GenerateAmplified", "amplified_samples"]

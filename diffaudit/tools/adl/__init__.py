"""Activation Difference Lens: activation diffs, logit lens, patchscope, steering, their metrics and cache."""

from diffaudit.tools.adl.cache import adl_cache_dir, load_adl_tensors
from diffaudit.tools.adl.compute import (
    ADLGraders,
    adl_dir,
    compute_adl,
    ensure_adl,
    load_adl,
    make_adl_graders,
)
from diffaudit.tools.adl.result import (
    ADLResult,
    PatchscopeScale,
    PositionLens,
    PositionSteering,
    SteeringSample,
    TokenProb,
)
from diffaudit.tools.adl.steering import steering_prompts

__all__ = [
    "ADLGraders",
    "ADLResult",
    "PatchscopeScale",
    "PositionLens",
    "PositionSteering",
    "SteeringSample",
    "TokenProb",
    "adl_cache_dir",
    "adl_dir",
    "compute_adl",
    "ensure_adl",
    "load_adl",
    "load_adl_tensors",
    "make_adl_graders",
    "steering_prompts",
]

"""The ADL result: everything an ADL analysis produced for one (organism, model), as plain data.

Tensors (mean activations, diffs) live beside it in the cache as `.pt` files and never enter this
object, so it can be rendered into agent messages and transcripts.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class TokenProb(BaseModel):
    token: str
    prob: float


class PatchscopeScale(BaseModel):
    scale: float
    tokens: list[TokenProb]  # top-k (default 20) after the three-prompt intersection


class PositionLens(BaseModel):
    """Readouts of the mean activation difference at one position."""

    position: int
    diff_norm: float
    logit_lens: list[TokenProb]  # diff, top-100
    logit_lens_base_mean: list[TokenProb]  # baseline: mean base activation
    logit_lens_finetuned_mean: list[TokenProb]  # baseline: mean finetuned activation
    patchscope: list[PatchscopeScale]  # the full scale sweep
    patchscope_scale: float  # the scale the scale grader chose
    patchscope_selected: list[str]  # the coherent subset at that scale ("selected tokens")
    # Baselines for token relevance: patchscope of the mean base / finetuned activation at the
    # scale the scale grader chose for each (top-k tokens).
    patchscope_base_mean: list[TokenProb] = Field(default_factory=list)
    patchscope_finetuned_mean: list[TokenProb] = Field(default_factory=list)


class SteeringSample(BaseModel):
    prompt: str
    steered: list[str]
    unsteered: list[str]


class PositionSteering(BaseModel):
    position: int
    alpha: float  # final α (mean over the three search prompts)
    search_alphas: list[float]
    samples: list[SteeringSample]


class ADLResult(BaseModel):
    organism: str
    model: str
    layer: int
    positions: list[int]
    n_texts: int
    corpus: str
    corpus_fingerprint: str
    norm_finetuned: float  # η_ft: mean finetuned activation norm at the layer, positions ≥ 3
    lens: list[PositionLens]
    steering: list[PositionSteering] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict)
    graders: dict[str, str] = Field(default_factory=dict)  # which grader made each choice

    def position(self, j: int) -> PositionLens:
        for lens in self.lens:
            if lens.position == j:
                return lens
        raise KeyError(f"position {j} is not in this ADL result (positions: {self.positions})")

    def steering_at(self, j: int) -> PositionSteering | None:
        return next((s for s in self.steering if s.position == j), None)

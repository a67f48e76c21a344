"""What the method caches (as JSON) and its tool reads: ranked singular directions and their tokens."""

from __future__ import annotations

from pydantic import BaseModel, Field

RESULT_VERSION = 1


class TokenScore(BaseModel):
    token: str
    prob: float


class Direction(BaseModel):
    """One singular direction of one module's LoRA update, with the tokens its two poles promote."""

    rank: int = Field(description="place among all directions, by singular value (0 = largest)")
    module: str
    layer: int | None
    index: int = Field(description="singular index within the module (0 = its largest)")
    sigma: float
    share: float = Field(description="sigma^2 over the module update's squared Frobenius norm")
    positive: list[TokenScore]
    negative: list[TokenScore]


class ModuleSummary(BaseModel):
    module: str
    layer: int | None
    rank: int = Field(description="the LoRA rank r")
    norm: float = Field(description="Frobenius norm of scaling * B @ A")
    singular_values: list[float]


class LoraSVDResult(BaseModel):
    """The prepared result: every read direction, best first, and tokens that recur across directions."""

    version: int = RESULT_VERSION
    model: str
    modules: list[ModuleSummary]
    directions: list[Direction]
    recurring: list[tuple[str, int]] = Field(
        default_factory=list,
        description="(token, how many poles of the overview's directions hold it), most first; tokens common in "
        "random directions' readouts are left out",
    )

    def direction(self, rank: int) -> Direction:
        for d in self.directions:
            if d.rank == rank:
                return d
        raise KeyError(rank)

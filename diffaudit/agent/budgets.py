"""The two budgets of an audit: model interactions and agent turns, with the line every observation ends with."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Budget:
    """Interactions (one prompt to both models = 1) and agent turns (replies, format errors included)."""

    interactions: int
    turns: int
    interactions_used: int = 0
    turns_used: int = 0

    @property
    def interactions_left(self) -> int:
        return max(self.interactions - self.interactions_used, 0)

    @property
    def turns_left(self) -> int:
        return max(self.turns - self.turns_used, 0)

    def can_afford(self, cost: int) -> bool:
        return cost <= self.interactions_left

    def charge(self, cost: int) -> None:
        if not self.can_afford(cost):
            raise ValueError(f"cost {cost} exceeds the {self.interactions_left} interactions left")
        self.interactions_used += cost

    def refund(self, cost: int) -> None:
        self.interactions_used = max(self.interactions_used - cost, 0)

    def line(self) -> str:
        """What is left, in the form observations end with (the heuristic policy parses it)."""
        return (
            f"[budget] interactions left: {self.interactions_left}/{self.interactions} · "
            f"turns left: {self.turns_left}/{self.turns}"
        )

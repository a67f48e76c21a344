"""Spend ceilings: tokens and dollars of the LLM calls of a run and of a bench, agent and grader together.

`diffaudit.llm.complete` reports every reply to the meter of the current context (`metering`), so a run's
agent and grader calls add up without being passed a meter. A bench adds a ledger file in its dir, shared
by thread and process workers under a file lock, so its ceiling holds across workers and resumes.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from diffaudit.config import Limits
from diffaudit.locking import held_lock

LEDGER_FILE = "spend.json"
_LEDGER_LOCK = ".spend.lock"


@dataclass
class Spend:
    calls: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    retries: int = 0


class BenchLedger:
    """Tokens and dollars spent under one bench dir, in OUT/spend.json (kept across resumes)."""

    def __init__(self, folder: Path, limits: Limits) -> None:
        self.path = Path(folder) / LEDGER_FILE
        self.lock = Path(folder) / _LEDGER_LOCK
        self.limits = limits

    def read(self) -> Spend:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return Spend()
        return Spend(int(data.get("calls", 0)), int(data.get("tokens", 0)), float(data.get("cost_usd", 0.0)))

    def add(self, tokens: int, cost_usd: float) -> Spend:
        with held_lock(self.lock):
            spend = self.read()
            spend = Spend(spend.calls + 1, spend.tokens + tokens, spend.cost_usd + cost_usd)
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps({"calls": spend.calls, "tokens": spend.tokens, "cost_usd": spend.cost_usd}))
            tmp.replace(self.path)
        return spend

    def limit_hit(self) -> str | None:
        """The bench ceiling that is reached, in words, or None."""
        return _over(self.read(), self.limits.bench_tokens, self.limits.bench_cost_usd, "bench")


def _over(spend: Spend, tokens: int | None, cost: float | None, scope: str) -> str | None:
    if tokens is not None and spend.tokens >= tokens:
        return f"the {scope} token ceiling ({tokens} tokens) is reached: {spend.tokens} used"
    if cost is not None and spend.cost_usd >= cost:
        return f"the {scope} cost ceiling (${cost:g}) is reached: ${spend.cost_usd:.4f} spent"
    return None


@dataclass
class SpendMeter:
    """What one run's LLM calls spent, checked against the run's ceilings and the bench's, if any."""

    limits: Limits = field(default_factory=Limits)
    ledger: BenchLedger | None = None
    spend: Spend = field(default_factory=Spend)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, tokens: int, cost_usd: float, retries: int = 0) -> None:
        with self._lock:
            self.spend.calls += 1
            self.spend.tokens += tokens
            self.spend.cost_usd += cost_usd
            self.spend.retries += retries
        if self.ledger is not None:
            self.ledger.add(tokens, cost_usd)

    def limit_hit(self) -> str | None:
        """The first ceiling reached (run, then bench), in words, or None."""
        hit = _over(self.spend, self.limits.run_tokens, self.limits.run_cost_usd, "run")
        if hit is None and self.ledger is not None:
            hit = self.ledger.limit_hit()
        return hit


_meter: contextvars.ContextVar[SpendMeter | None] = contextvars.ContextVar("diffaudit_meter", default=None)
_ledger: contextvars.ContextVar[BenchLedger | None] = contextvars.ContextVar("diffaudit_ledger", default=None)


@contextlib.contextmanager
def metering(meter: SpendMeter) -> Iterator[SpendMeter]:
    """Count every LLM reply of this context (this thread) on `meter` for the block."""
    token = _meter.set(meter)
    try:
        yield meter
    finally:
        _meter.reset(token)


@contextlib.contextmanager
def bench_spend(ledger: BenchLedger) -> Iterator[BenchLedger]:
    """Runs started in this context also count on the bench's ledger."""
    token = _ledger.set(ledger)
    try:
        yield ledger
    finally:
        _ledger.reset(token)


def current_ledger() -> BenchLedger | None:
    return _ledger.get()


def record_spend(tokens: int, cost_usd: float, retries: int = 0) -> None:
    """Called by diffaudit.llm after each reply: adds it to the current meter, if one is set."""
    meter = _meter.get()
    if meter is not None:
        meter.add(tokens, cost_usd, retries)

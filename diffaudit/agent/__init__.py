"""The auditing agent: action grammar, budgeted loop, transcript, policies and `run_audit`."""

from diffaudit.agent.budgets import Budget
from diffaudit.agent.grammar import Call, Final, GrammarError, parse_action
from diffaudit.agent.loop import LoopResult, Policy, run_loop
from diffaudit.agent.run import RunSummary, run_audit
from diffaudit.agent.transcript import Transcript, read_transcript

__all__ = [
    "Budget",
    "Call",
    "Final",
    "GrammarError",
    "LoopResult",
    "Policy",
    "RunSummary",
    "Transcript",
    "parse_action",
    "read_transcript",
    "run_audit",
    "run_loop",
]

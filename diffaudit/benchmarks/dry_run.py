"""What `audit bench --dry-run` shows of each arm: budgets, resolved methods and tools with their provenance,
and run counts. Reads the plan only; touches no model."""

from __future__ import annotations

from dataclasses import dataclass

from diffaudit.benchmarks.grid import CellState


@dataclass(frozen=True)
class ArmRow:
    name: str
    budgets: list[int]
    intro: str
    methods: list[str]
    tools: list[str]
    runs: int
    to_run: int
    reference: bool


def provenance_label(item: dict[str, str]) -> str:
    """`name`, `name (via method)` for a method's tool, plus `[plugin distribution version]` for a plugin."""
    label = item["name"]
    via = item.get("via", "")
    if via:
        label += f" (via {via.removeprefix('method ')})"
    if item.get("source") == "plugin":
        label += f" [plugin {item.get('distribution', '?')} {item.get('version', '?')}]"
    return label


def arm_rows(plan) -> list[ArmRow]:
    """One row per arm of a BenchPlan, in config order."""
    rows = []
    for name, budgets in plan.config.arm_budgets().items():
        cells = [c for c in plan.cells if c.agent == name]
        arm = plan.arms.get(name)
        prov = arm.provenance if arm is not None else {}
        rows.append(
            ArmRow(
                name=name, budgets=budgets, intro=arm.intro_kind if arm is not None else "",
                methods=[provenance_label(m) for m in prov.get("methods", [])],
                tools=[provenance_label(t) for t in prov.get("tools", [])],
                runs=len(cells), to_run=sum(plan.states[c] is not CellState.COMPLETED for c in cells),
                reference=name == plan.config.reference,
            )
        )  # fmt: skip
    return rows

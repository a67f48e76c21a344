"""Where methods and single tools come from: the built-ins, and plugins under two entry-point groups.

- `diffaudit.methods`: a plugin names a DiffingMethod class, instance or factory; it is found by its `name`.
- `diffaudit.tools`: a plugin names a Tool class, instance or factory; it joins only the arms that name it.

Each found thing carries its provenance (built in, or the distribution and version that installed it), which
the bench manifest records so that a resumed bench never mixes tool sets.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from diffaudit.methods.base import DiffingMethod, MethodError

METHODS_GROUP = "diffaudit.methods"
TOOLS_GROUP = "diffaudit.tools"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Provenance:
    """Where a method or tool comes from."""

    name: str
    source: str  # "builtin" | "plugin"
    distribution: str = ""
    version: str = ""
    entry_point: str = ""

    def as_dict(self) -> dict[str, str]:
        out = {"name": self.name, "source": self.source}
        if self.source == "plugin":
            out |= {"distribution": self.distribution, "version": self.version, "entry_point": self.entry_point}
        return out


def _builtin_method_factories() -> dict[str, Callable[[], Any]]:
    from diffaudit.methods.adl import ADLMethod
    from diffaudit.methods.amplification.method import AmplificationMethod
    from diffaudit.methods.diff_mining.method import DiffMiningMethod

    return {"adl": ADLMethod, "diff_mining": DiffMiningMethod, "amplification": AmplificationMethod}


def _builtin_tool_factories() -> dict[str, Callable[[], Any]]:
    from diffaudit.tools.ask_model import AskModel
    from diffaudit.tools.score_texts import ScoreTexts

    return {"ask_model": AskModel, "score_texts": ScoreTexts}


def _instantiate(obj: Any, check: Callable[[Any], bool], what: str) -> Any:
    if inspect.isclass(obj) or (callable(obj) and not check(obj)):
        obj = obj()
    if not check(obj):
        raise TypeError(f"it is not a {what}")
    return obj


def _plugins(group: str, check: Callable[[Any], bool], what: str) -> dict[str, tuple[Any, Provenance]]:
    found: dict[str, tuple[Any, Provenance]] = {}
    for ep in entry_points(group=group):
        try:
            obj = _instantiate(ep.load(), check, what)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break other audits
            log.warning("skipping %s plugin %s: %s", group, ep.name, exc)
            continue
        dist = getattr(ep, "dist", None)
        prov = Provenance(
            name=obj.name, source="plugin", distribution=getattr(dist, "name", "") or "",
            version=getattr(dist, "version", "") or "", entry_point=f"{ep.name} = {getattr(ep, 'value', '')}",
        )  # fmt: skip
        found.setdefault(obj.name, (obj, prov))
    return found


def _is_tool(obj: Any) -> bool:
    from diffaudit.tools.base import Tool

    return isinstance(obj, Tool)


def _is_method(obj: Any) -> bool:
    return isinstance(obj, DiffingMethod)


# What each kind is: its built-ins, its entry-point group, its check, and the words of its messages.
_KINDS: dict[str, tuple[Callable[[], dict[str, Callable[[], Any]]], str, Callable[[Any], bool], str, str]] = {
    "method": (lambda: _builtin_method_factories(), METHODS_GROUP, _is_method, "DiffingMethod", "diffing method"),
    "tool": (lambda: _builtin_tool_factories(), TOOLS_GROUP, _is_tool, "Tool", "tool"),
}


def _available(kind: str) -> dict[str, Provenance]:
    builtins, group, check, what, _ = _KINDS[kind]
    out = {name: Provenance(name, "builtin") for name in builtins()}
    for name, (_, prov) in _plugins(group, check, what).items():
        out.setdefault(name, prov)
    return out


def _load(kind: str, name: str) -> tuple[Any, Provenance]:
    builtins, group, check, what, words = _KINDS[kind]
    factories = builtins()
    if name in factories:
        return factories[name](), Provenance(name, "builtin")
    plugins = _plugins(group, check, what)
    if name in plugins:
        return plugins[name]
    known = ", ".join(sorted(set(factories) | set(plugins)))
    raise MethodError(f"unknown {words} '{name}'; available: {known}")


def available_methods() -> dict[str, Provenance]:
    """Every method name that can be used, built in or installed."""
    return _available("method")


def available_tools() -> dict[str, Provenance]:
    """Every single tool name an arm can list, built in or installed."""
    return _available("tool")


def load_method(name: str) -> tuple[DiffingMethod, Provenance]:
    """The method called `name`: a built-in first, else an installed `diffaudit.methods` plugin."""
    return _load("method", name)


def load_tool(name: str) -> tuple[Any, Provenance]:
    """The single tool called `name`: a built-in first, else an installed `diffaudit.tools` plugin."""
    return _load("tool", name)

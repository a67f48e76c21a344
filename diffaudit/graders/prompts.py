"""Load the graders' prompt templates from diffaudit/prompts (string.Template syntax: $name)."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from string import Template


@lru_cache(maxsize=32)
def template(name: str) -> Template:
    """The template file `name` (e.g. "grader_hypothesis.txt") from the diffaudit.prompts package."""
    return Template((resources.files("diffaudit.prompts") / name).read_text(encoding="utf-8"))


def render(name: str, **values: object) -> str:
    """Fill template `name`; a missing value raises KeyError naming it."""
    return template(name).substitute({k: str(v) for k, v in values.items()})

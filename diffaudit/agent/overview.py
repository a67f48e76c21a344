"""The agent's first message: a compact text overview of an ADL result, or the blackbox baseline answers.

The text is read by LLM agents and parsed back by the heuristic policy (`policies/evidence.py`), so its
line prefixes are stable: `## Position`, `logit lens`, `patchscope`, `selected:`, `[n] prompt:`,
`unsteered:`, `steered`, `answer:`. Strings are JSON-quoted so that spaces and newlines stay visible.
The organism's name and every grader-facing field stay out of it.
"""

from __future__ import annotations

import json
from importlib import resources

from diffaudit.tools.adl.result import ADLResult, PatchscopeScale, PositionLens

OVERVIEW_TITLE = "ADL OVERVIEW"
BLACKBOX_TITLE = "FINETUNED MODEL ANSWERS"
TOP_TOKENS = 20


def _template(name: str, **values: object) -> list[str]:
    text = (resources.files("diffaudit.prompts") / name).read_text(encoding="utf-8")
    return text.format(**values).rstrip("\n").splitlines()


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _cut(text: str, max_chars: int) -> str:
    """`text` cut to at most `max_chars` characters (a final ellipsis marks a cut), JSON-quoted on one line."""
    cut = text if len(text) <= max_chars else text[: max(max_chars - 1, 0)] + "…"
    return _quote(cut)


def _token_list(tokens: list[str], selected: set[str]) -> str:
    if not tokens:
        return "(none)"
    return ", ".join(("*" if tok in selected else "") + _quote(tok) for tok in tokens)


def _chosen_scale(lens: PositionLens) -> PatchscopeScale | None:
    if not lens.patchscope:
        return None
    return min(lens.patchscope, key=lambda s: abs(s.scale - lens.patchscope_scale))


def _scale_text(scale: float) -> str:
    return f"{scale:g}"


def _position_block(lens: PositionLens) -> list[str]:
    selected = set(lens.patchscope_selected)
    logit = [t.token for t in lens.logit_lens[:TOP_TOKENS]]
    lines = [f"## Position {lens.position} (diff norm {lens.diff_norm:.2f})"]
    lines.append(f"logit lens top-{len(logit)}: {_token_list(logit, selected)}")
    chosen = _chosen_scale(lens)
    if chosen is None:
        lines.append("patchscope: (not computed)")
    else:
        patch = [t.token for t in chosen.tokens[:TOP_TOKENS]]
        lines.append(
            f"patchscope top-{len(patch)} at scale {_scale_text(chosen.scale)}: {_token_list(patch, selected)}"
        )
    sel = ", ".join(_quote(t) for t in lens.patchscope_selected) or "(none)"
    lines.append(f"selected: {sel}")
    return lines


def _steering_block(adl: ADLResult, max_chars: int) -> list[str]:
    steering = sorted(adl.steering, key=lambda s: s.position)
    if not steering:
        return ["## Steering", "(no steering samples were computed)"]
    # Each position's α; the template explains what steering is.
    alphas = ", ".join(f"position {s.position} (α={s.alpha:.2f})" for s in steering)
    lines = _template("overview_steering.txt", layer=adl.layer, alphas=alphas, max_chars=max_chars)
    # Unsteered samples do not depend on the position, so each prompt shows one unsteered sample
    # and one steered sample per steered position.
    prompts: list[str] = []
    for s in steering:
        for sample in s.samples:
            if sample.prompt not in prompts:
                prompts.append(sample.prompt)
    for i, prompt in enumerate(prompts, start=1):
        lines.append(f"[{i}] prompt: {_quote(prompt)}")
        per_position = [
            (s.position, next((x for x in s.samples if x.prompt == prompt), None)) for s in steering
        ]
        unsteered = next((x.unsteered[0] for _, x in per_position if x is not None and x.unsteered), None)
        if unsteered is not None:
            lines.append(f"  unsteered: {_cut(unsteered, max_chars)}")
        for position, sample in per_position:
            if sample is not None and sample.steered:
                lines.append(f"  steered (position {position}): {_cut(sample.steered[0], max_chars)}")
    return lines


def render_overview(adl: ADLResult, max_chars: int = 200) -> str:
    """The ADL agent's first user message: per-position logit lens and patchscope tokens plus steering samples."""
    positions = sorted(adl.lens, key=lambda p: p.position)
    span = f"{positions[0].position}–{positions[-1].position}" if len(positions) > 1 else str(adl.positions)
    lines = _template(
        "overview_adl.txt",
        title=OVERVIEW_TITLE,
        model=adl.model,
        layer=adl.layer,
        positions=span,
        n_texts=adl.n_texts,
        corpus=adl.corpus,
    )
    lines.append("")
    for lens in positions:
        lines.extend(_position_block(lens))
        lines.append("")
    lines.extend(_steering_block(adl, max_chars))
    return "\n".join(lines).rstrip() + "\n"


def render_blackbox_intro(samples: list[tuple[str, str]], max_chars: int = 200) -> str:
    """The blackbox agent's first user message: ordinary finetuned answers to the steering prompts."""
    lines = [
        *_template("overview_blackbox.txt", title=BLACKBOX_TITLE, n=len(samples), max_chars=max_chars),
        "",
    ]
    for i, (prompt, answer) in enumerate(samples, start=1):
        lines.append(f"[{i}] prompt: {_quote(prompt)}")
        lines.append(f"  answer: {_cut(answer, max_chars)}")
    return "\n".join(lines).rstrip() + "\n"

"""report.html: the bench report as one self-contained page, and each run's transcript as a readable page.

The page holds the headline table, the comparison sentences, the report's plots (embedded as base64 PNG),
the per-organism grades on a 1–5 colour scale and a table of every run. Each run links to
report_transcripts/<run>.html, which shows what the agent saw and wrote turn by turn, its tool calls,
format errors, FINAL, grades and, folded away, the organism's description (ground truth, for the human
reader; no agent ever sees it). Numbers come from `diffaudit.benchmarks.stats`, as in report.md.
"""

from __future__ import annotations

import base64
import math
import re
from collections import defaultdict
from html import escape
from pathlib import Path
from typing import Any

from diffaudit.agent.transcript import TRANSCRIPT_FILE, read_transcript
from diffaudit.benchmarks.results import RunRecord, read_json
from diffaudit.benchmarks.runner import MANIFEST_FILE
from diffaudit.benchmarks.stats import (
    Bootstrap,
    CellStats,
    contrasts,
    headline,
    variants,
)

HTML_FILE = "report.html"
TRANSCRIPTS_DIR = "report_transcripts"
_SAFE = re.compile(r"[^A-Za-z0-9_.+-]+")
# good-high: 1 red … 5 green, as the inspect export's score colour scale
_SCALE = [(1.0, (244, 166, 166)), (2.0, (248, 201, 160)), (3.0, (251, 234, 160)), (4.0, (207, 232, 176)), (5.0, (159, 215, 159))]

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
main{max-width:1200px;margin:0 auto;padding:24px 32px 64px;background:#fff;min-height:100vh}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px;border-bottom:1px solid #e3e6eb;padding-bottom:4px}
.lede{color:#4a5365;margin:4px 0 16px}.note{color:#6b7385;font-size:12.5px}
table{border-collapse:collapse;margin:8px 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #e3e6eb;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f1f3f6;font-weight:600}td.num{text-align:right}
.grade{display:inline-block;min-width:22px;text-align:center;border-radius:4px;padding:0 4px;margin:1px;color:#1d2330;text-decoration:none}
a.grade:hover{outline:1px solid #1d2330}.mean{font-weight:600}
.status-failed,.status-unfinished{color:#b42318;font-weight:600}.status-no_final{color:#a15c07}
.plots{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}.plots img{max-width:calc(50% - 8px);border:1px solid #e3e6eb}
.turn{border:1px solid #e3e6eb;border-radius:6px;margin:12px 0;overflow:hidden}
.turn>header{background:#f1f3f6;padding:4px 10px;font-weight:600;font-size:12.5px;color:#4a5365}
.msg{padding:8px 12px;white-space:pre-wrap;font:12.5px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;margin:0}
.assistant{background:#f4f0fb}.user{background:#fbfaf7}.system{background:#f7f7f7}
.error{color:#b42318}.final{background:#eaf6e8;border-color:#9fd79f}
details{margin:8px 0}summary{cursor:pointer;color:#33415c;font-weight:600}
.meta td:first-child{color:#6b7385;white-space:nowrap}
"""


def _colour(value: float) -> str:
    """Background for a grade on the 1–5 scale (linear between the five anchors)."""
    if value is None or math.isnan(value):
        return "#eef0f3"
    value = min(max(value, 1.0), 5.0)
    for (a, ca), (b, cb) in zip(_SCALE, _SCALE[1:], strict=False):
        if value <= b:
            w = (value - a) / (b - a)
            r, g, bl = (round(x + (y - x) * w) for x, y in zip(ca, cb, strict=True))
            return f"rgb({r},{g},{bl})"
    return "rgb(159,215,159)"


def _f(value: float, digits: int = 2) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _pct(value: float) -> str:
    return "–" if math.isnan(value) else f"{100 * value:.0f}%"


def _ci(ci: tuple[float, float], fmt=_f) -> str:
    return "–" if math.isnan(ci[0]) else f"{fmt(ci[0])}–{fmt(ci[1])}"


def _table(header: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def transcript_name(run: RunRecord) -> str:
    """report_transcripts/<organism>__<model>__<variant>__rep<r>.html (one function owns this path)."""
    stem = "__".join([run.organism, run.model, run.variant, f"rep{run.repeat}"])
    return f"{TRANSCRIPTS_DIR}/{_SAFE.sub('-', stem)}.html"


def run_status(run: RunRecord) -> str:
    """final, no_final, ungraded (finished, no grade), failed or unfinished."""
    if run.state.value == "failed":
        return "failed"
    if run.status in ("final", "no_final") and not run.grades:
        return "ungraded"
    if run.state.value == "partial":
        return "unfinished"
    return run.status or run.state.value


def _grade_chip(run: RunRecord) -> str:
    link = escape(transcript_name(run))
    if run.score is None:
        status = run_status(run)
        label = {"failed": "err", "unfinished": "…", "ungraded": "ug"}.get(status, "–")
        return f'<a class="grade" style="background:#eef0f3" href="{link}" title="{escape(status)}">{label}</a>'
    return (
        f'<a class="grade" style="background:{_colour(run.score)}" href="{link}" '
        f'title="rep {run.repeat}: {run.score:g} ({escape(run.status)})">{run.score:g}</a>'
    )


def _status(run: RunRecord) -> str:
    status = run_status(run)
    return f'<span class="status-{escape(status)}">{escape(status)}</span>'


def render_page(root: Path, runs: list[RunRecord], cells: list[CellStats], boot: Bootstrap, plots: list[Path]) -> str:
    """The report page: headline, comparisons, plots, per-organism grades and every run, linked."""
    from diffaudit.benchmarks.report import comparison_sentences, reference_arm

    manifest = read_json(root / MANIFEST_FILE) or {}
    roles = (manifest.get("settings") or {}).get("roles") or {}
    name = manifest.get("name") or root.name
    pairs = sorted({r.pair for r in runs})
    statuses = [run_status(r) for r in runs]
    completed = sum(r.completed for r in runs)
    failed, partial, ungraded = (statuses.count(s) for s in ("failed", "unfinished", "ungraded"))
    parts = [f"<h1>Bench report: {escape(str(name))}</h1>"]
    parts.append(
        f'<p class="lede">{len(runs)} runs over {len(pairs)} organism pairs: {completed} completed, {failed} failed, '
        f"{partial} unfinished" + (f", {ungraded} ungraded." if ungraded else ".")
        + (f" Agent <code>{escape(str(roles.get('agent')))}</code>; grader <code>{escape(str(roles.get('grader')))}</code>." if roles else "")
        + "</p>"
    )  # fmt: skip
    if str(roles.get("grader", "")).startswith("builtin/"):
        parts.append('<p class="note">Grades come from the offline grader, a proxy for an LLM grader: compare them '
                     "with each other, not with the paper's numbers.</p>")  # fmt: skip

    rows = headline(cells, boot)
    parts.append("<h2>Headline: share of organism pairs by mean grade</h2>")
    parts.append(_table(
        ["agent", "budget", "pairs", "grade ≥ 2", "95% CI", "grade ≥ 4", "95% CI", "mean grade", "95% CI"],
        [[escape(r.agent), f"i={r.budget}", str(r.n_pairs), _pct(r.share_ge2), _ci(r.ci_ge2, _pct), _pct(r.share_ge4),
          _ci(r.ci_ge4, _pct), f'<span class="grade mean" style="background:{_colour(r.mean)}">{_f(r.mean)}</span>',
          _ci(r.ci_mean)] for r in rows],
        numeric={2, 3, 5},
    ))  # fmt: skip
    parts.append('<p class="note">A pair counts when the mean of its repeats\' grades reaches the threshold. '
                 f"Intervals: {int(100 * boot.level)}% two-level bootstrap, organism pairs then repeats "
                 f"({boot.n_resamples:,} resamples, seed {boot.seed}), as in report.md.</p>")  # fmt: skip
    parts.append("<h2>Contrasts at equal budget</h2>")
    items = contrasts(cells, reference_arm(root), boot)
    sentences = [s.removeprefix("- ") for s in comparison_sentences(items, len(pairs)) if s]
    parts.append("".join(f"<p>{escape(s)}</p>" for s in sentences))
    if plots:
        parts.append('<h2>Plots</h2><div class="plots">')
        for path in plots:
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
            parts.append(f'<img alt="{escape(Path(path).stem)}" src="data:image/png;base64,{data}">')
        parts.append("</div>")
    parts.append(_organism_grid(runs, cells))
    parts.append(_run_table(runs))
    body = "\n".join(parts)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(str(name))} · diffaudit report'
            f"</title><style>{CSS}</style></head><body><main>{body}</main></body></html>\n")  # fmt: skip


def _organism_grid(runs: list[RunRecord], cells: list[CellStats]) -> str:
    columns = variants(cells)
    by_cell: dict[tuple, list[RunRecord]] = defaultdict(list)
    for run in runs:
        by_cell[(run.organism, run.model, run.agent, run.budget)].append(run)
    means = {c.key: c for c in cells}
    types = {(r.organism, r.model): r.organism_type for r in runs}
    rows = []
    for organism, model in sorted({r.pair for r in runs}):
        row = [f"<b>{escape(organism)}</b><br><span class='note'>{escape(model)} · {escape(types[(organism, model)])}</span>"]
        for agent, budget in columns:
            cell = means.get((organism, model, agent, budget))
            members = sorted(by_cell.get((organism, model, agent, budget), []), key=lambda r: r.repeat)
            if cell is None:
                row.append("")
                continue
            mean = f'<span class="grade mean" style="background:{_colour(cell.mean)}">{_f(cell.mean)}</span>'
            row.append(mean + "<br>" + "".join(_grade_chip(r) for r in members))
        rows.append(row)
    header = ["organism"] + [f"{a} i={b}" for a, b in columns]
    return ("<h2>Grades per organism</h2><p class=\"note\">Each cell: the mean grade over completed repeats, then "
            "one chip per run (its grade; err = failed, … = unfinished, ug = ungraded). Click a chip for the run's transcript.</p>"
            + _table(header, rows))  # fmt: skip


def _run_table(runs: list[RunRecord]) -> str:
    rows = []
    for run in runs:
        grades = ", ".join(f"{escape(str(g.get('grader', '')))}: {float(g['score']):g}" for g in run.grades) if run.completed else ""
        rows.append([
            f'<a href="{escape(transcript_name(run))}">{escape(str(run.path))}</a>', escape(run.agent), f"i={run.budget}",
            str(run.repeat), _status(run), grades or escape(run.error[:120]), _f(run.wall_s, 1), str(run.tokens),
            f"{run.cost_usd:.4f}",
        ])  # fmt: skip
    return "<h2>Every run</h2>" + _table(
        ["run", "agent", "budget", "repeat", "status", "grades (or error)", "wall s", "agent tokens", "cost USD"],
        rows, numeric={3, 6, 7, 8},
    )  # fmt: skip


# ---- one run's transcript --------------------------------------------------------------------------------
def render_transcript(root: Path, run: RunRecord, target: str | None) -> str:
    """One run as a page: settings, then each turn (reply, CALL, observation), FINAL, grades and errors."""
    path = root / run.path
    events = read_transcript(path / TRANSCRIPT_FILE) if (path / TRANSCRIPT_FILE).exists() else []
    config = read_json(path / "config.json") or {}
    error = read_json(path / "error.json")
    title = f"{run.organism} ({run.model}) · {run.agent} i={run.budget} · rep {run.repeat}"
    meta = [
        ["status", _status(run)], ["grades", ", ".join(
            f'<span class="grade" style="background:{_colour(float(g["score"]))}">{float(g["score"]):g}</span> '
            f"{escape(str(g.get('grader', '')))}: {escape(str(g.get('reason', '')))}" for g in run.grades) or "–"],
        ["agent", escape(str(config.get("policy", "")))], ["wall time", f"{_f(run.wall_s, 1)} s"],
        ["agent tokens", str(run.tokens)], ["cost", f"${run.cost_usd:.4f}"], ["run dir", escape(str(run.path))],
    ]  # fmt: skip
    parts = [f'<p><a href="../{HTML_FILE}">← report</a></p><h1>{escape(title)}</h1>',
             '<table class="meta">' + "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in meta) + "</table>"]  # fmt: skip
    if target:
        parts.append(f"<details><summary>Organism description (ground truth: graders only, never shown to the agent)"
                     f"</summary><p>{escape(target)}</p></details>")  # fmt: skip
    parts += _turns(events)
    if isinstance(error, dict):
        trace = error.get("traceback", "")
        trace = "".join(trace) if isinstance(trace, list) else str(trace)
        parts.append(f'<div class="turn"><header class="error">run failed at stage {escape(str(error.get("stage", "?")))}'
                     f'</header><pre class="msg error">{escape(str(error.get("error", "")))}: '
                     f"{escape(str(error.get('message', '')))}\n\n{escape(trace)}</pre></div>")  # fmt: skip
    elif run_status(run) == "unfinished":
        parts.append('<p class="status-unfinished">The run stopped here (no stats.json or error.json).</p>')
    parts.append(f"<details><summary>config.json</summary><pre class=\"msg\">{escape(_json(config))}</pre></details>")
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{CSS}</style></head><body><main>{''.join(parts)}</main></body></html>\n")  # fmt: skip


def _json(value: Any) -> str:
    import json

    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _turns(events: list[dict[str, Any]]) -> list[str]:
    parts: list[str] = []
    for event in events:
        kind = event.get("event")
        t = f"{float(event.get('t', 0.0)):.1f} s"
        if kind == "message":
            role = str(event.get("role", "user"))
            turn = f"turn {event['turn']} · " if "turn" in event else ""
            label = {"system": "system prompt", "assistant": "agent", "user": "observation" if "turn" in event else "first message"}[
                role if role in ("system", "assistant", "user") else "user"
            ]  # fmt: skip
            body = f'<pre class="msg {escape(role)}">{escape(str(event.get("content", "")))}</pre>'
            if role == "system":
                parts.append(f"<details><summary>System prompt</summary>{body}</details>")
            else:
                parts.append(f'<div class="turn"><header>{turn}{label} · {t}</header>{body}</div>')
        elif kind == "tool":
            cost = event.get("cost", 0)
            flag = ' <span class="error">(error)</span>' if event.get("error") else ""
            parts.append(f'<p class="note">↳ CALL {escape(str(event.get("tool", "")))} · cost {cost} · '
                         f"{event.get('interactions_left', '?')} interactions left{flag}</p>")  # fmt: skip
        elif kind == "format_error":
            parts.append(f'<p class="note error">↳ FORMAT_ERROR: {escape(str(event.get("message", "")))}</p>')
        elif kind == "final":
            parts.append(f'<div class="turn final"><header>FINAL · turn {event.get("turn", "?")}</header>'
                         f'<pre class="msg">{escape(str(event.get("description", "")))}</pre></div>')  # fmt: skip
        elif kind == "no_final":
            parts.append(f'<p class="status-no_final">No FINAL after {event.get("turns_used", "?")} turns: graded 1.</p>')
    return parts


def _targets(runs: list[RunRecord]) -> dict[str, str | None]:
    from diffaudit.environments.organisms import OrganismError, OrganismRegistry

    try:
        registry = OrganismRegistry()
    except OrganismError:
        return {}
    out: dict[str, str | None] = {}
    for organism in {r.organism for r in runs}:
        try:
            out[organism] = registry.get(organism).description.strip()
        except OrganismError:
            out[organism] = None
    return out


def write_html_report(root: Path, runs: list[RunRecord], cells: list[CellStats], boot: Bootstrap,
                      plots: list[Path]) -> list[Path]:  # fmt: skip
    """Write report.html and one transcript page per run under `root`; returns report.html's path first."""
    root = Path(root)
    (root / TRANSCRIPTS_DIR).mkdir(exist_ok=True)
    targets = _targets(runs)
    for run in runs:
        (root / transcript_name(run)).write_text(render_transcript(root, run, targets.get(run.organism)), encoding="utf-8")
    page = root / HTML_FILE
    page.write_text(render_page(root, runs, cells, boot, plots), encoding="utf-8")
    return [page, root / TRANSCRIPTS_DIR]

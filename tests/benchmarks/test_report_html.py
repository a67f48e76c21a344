"""report.html beside report.md: one self-contained page, every run linked to a readable transcript page."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from export.export_fakes import add_special_runs, build_bench

from diffaudit.agent.transcript import read_transcript
from diffaudit.benchmarks import Bootstrap, load_runs, write_report
from diffaudit.benchmarks.report_html import HTML_FILE, transcript_name


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.srcs: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and attrs.get("href"):
            self.hrefs.append(attrs["href"])
        if tag == "img":
            self.srcs.append(attrs.get("src", ""))
        if tag in ("link", "script"):
            self.external.append(tag)


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    build_bench(root, ["kansas_abortion", "taboo_gold"])
    special = add_special_runs(root)
    report = write_report(root, Bootstrap(n_resamples=300, seed=1))
    return root, special, report


def test_report_html_is_one_self_contained_page(reported):
    root, _, report = reported
    page = root / HTML_FILE
    assert page in report.files and (root / "report.md").exists()
    links = _Links()
    links.feed(page.read_text())
    assert links.external == []  # inline CSS, no scripts or stylesheets to fetch
    pngs = [p for p in report.files if p.suffix == ".png"]
    assert any(p.name.startswith("contrast_") for p in pngs)  # one plot per contrast, embedded too
    assert len(links.srcs) == len(pngs) and all(s.startswith("data:image/png;base64,") for s in links.srcs)
    for src in links.srcs:
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG")
    text = page.read_text()
    assert "Headline: share of organism pairs by mean grade" in text and "Grades per organism" in text


def test_the_page_shows_the_report_md_numbers(reported):
    root, _, _ = reported
    markdown = (root / "report.md").read_text()
    row = next(line for line in markdown.splitlines() if line.startswith("| adl | i=5"))
    mean, ci = [c.strip() for c in row.strip("|").split("|")][7:9]
    html = (root / HTML_FILE).read_text()
    adl_row = re.search(r"<tr><td>adl</td><td>i=5</td>.*?</tr>", html).group(0)
    assert f">{mean}<" in adl_row and ci in adl_row


def test_every_run_links_to_its_transcript_page(reported):
    root, special, report = reported
    links = _Links()
    links.feed((root / HTML_FILE).read_text())
    runs = load_runs(root)
    for run in runs:
        assert transcript_name(run) in links.hrefs
        assert (root / transcript_name(run)).exists()
    assert all((root / h).exists() for h in links.hrefs)
    # the transcript page holds every message the agent saw and wrote, escaped, in order
    run = next(r for r in runs if str(r.path).endswith("adl_i5/rep0"))
    page = (root / transcript_name(run)).read_text()
    position = 0
    for event in read_transcript(root / run.path / "transcript.jsonl"):
        if event["event"] == "message":
            escaped = event["content"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
            found = page.find(escaped.replace("'", "&#x27;"), position)
            assert found > position, event["content"][:60]
            position = found
    assert "FORMAT_ERROR" in page and "UNKNOWN_TOOL" in page and "FINAL" in page
    assert "ground truth" in page  # folded away, labelled as the graders' information


def test_failed_and_ungraded_runs_say_what_happened(reported):
    root, special, _ = reported
    runs = {str(r.path): r for r in load_runs(root)}
    failed = runs[str(special["failed"].relative_to(root))]
    page = (root / transcript_name(failed)).read_text()
    assert "run failed at stage agent" in page and "provider went away" in page
    ungraded = runs[str(special["ungraded"].relative_to(root))]
    html = (root / HTML_FILE).read_text()
    assert f'href="{transcript_name(ungraded)}" title="ungraded">ug<' in html
    grade = json.loads((special["ungraded"] / "grade.json").read_text())
    assert grade["grades"] == []  # ungraded: shown as such, never as a grade


def test_transcript_names_are_unique_and_safe(reported):
    root, _, _ = reported
    names = [transcript_name(r) for r in load_runs(root)]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"report_transcripts/[A-Za-z0-9_.+-]+\.html", n) for n in names)
    assert not any(Path(n).name.startswith(".") for n in names)

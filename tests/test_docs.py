"""The documentation is tested like code: README.md stays a front door of at most 200 lines that links every page
under docs/; every relative link and ``#anchor`` in README.md and docs/*.md resolves; and every measured timing sits
next to how it was measured.

The convention for measurements (docs/development.md, "Writing docs"): a *measured note* is a paragraph that starts
with ``**Measured**`` (or ``> **Measured**``, a blockquote) and gives a date (YYYY-MM-DD), ``machine:`` (what it ran
on) and ``command:`` with the command in backticks; a note that states a timing also says what load the machine was
under (``load ...``). Any paragraph or table that states a timing (a number with s, ms or min) and calls it measured
must be such a note or sit directly before or after one. Fenced code blocks are ignored, but count as a paragraph
between their neighbours."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import DOCS, README, ROOT, doc_files, doc_name

DOC_FILES = doc_files()
DOC_IDS = [doc_name(path) for path in DOC_FILES]

_FENCE = re.compile(r"^```.*?^```[^\n]*$", re.S | re.M)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.M)
_TIMING = re.compile(r"\b\d+(?:\.\d+)? ?(?:s|ms|min)\b")
_MEASURED_WORD = re.compile(r"\bmeasured\b", re.I)
_NOTE_START = re.compile(r"^(?:>\s*)?\*\*Measured\*\*")
_DATE = re.compile(r"\b20\d\d-[01]\d-[0-3]\d\b")
_COMMAND = re.compile(r"command:\s*`[^`]+`")


def _prose(text: str) -> str:
    """The text with fenced code blocks replaced by one placeholder line each."""
    return _FENCE.sub("<code block>", text)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: link text kept, lowercase, punctuation removed, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, with GitHub's -1, -2 suffixes for repeated headings."""
    seen: dict[str, int] = {}
    found = set()
    for match in _HEADING.finditer(_prose(path.read_text())):
        anchor = github_anchor(match.group(2))
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        found.add(anchor if count == 0 else f"{anchor}-{count}")
    return found


def links(path: Path) -> list[str]:
    """The targets of the Markdown links and images of a file, outside code."""
    return _LINK.findall(_INLINE_CODE.sub("", _prose(path.read_text())))


def paragraphs(path: Path) -> list[str]:
    return [p.strip() for p in re.split(r"\n[ \t]*\n", _prose(path.read_text())) if p.strip()]


def is_note(paragraph: str) -> bool:
    return bool(_NOTE_START.match(paragraph))


def note_problems(note: str) -> list[str]:
    """What a measured note lacks."""
    note = re.sub(r"^>[ \t]?", "", note, flags=re.M)  # a blockquote's markers
    problems = []
    if not _DATE.search(note):
        problems.append("a date (YYYY-MM-DD)")
    if "machine:" not in note:
        problems.append("'machine:'")
    if not _COMMAND.search(note):
        problems.append("'command:' with the command in backticks")
    if _TIMING.search(note) and not re.search(r"\bload", note, re.I):
        problems.append("the load the machine was under")
    return problems


def test_github_anchor():
    assert github_anchor("Estimators (`pkpo_trl.estimators`)") == "estimators-pkpo_trlestimators"
    assert github_anchor("Learning efficiency against GRPO (issues #6, #14)") == (
        "learning-efficiency-against-grpo-issues-6-14"
    )
    assert github_anchor("Training θ with fixed k and with k annealed 8 → 1") == (
        "training-θ-with-fixed-k-and-with-k-annealed-8--1"
    )
    assert github_anchor("GPU with vLLM: CUDA versions") == "gpu-with-vllm-cuda-versions"


def test_readme_is_a_front_door():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    # .ci/run and tests read these here
    for marker in ("main-command", "test-command", "vllm-test-command", "oldest-trl-test-command"):
        assert text.count(f"<!-- {marker} -->") == 1 and text.count(f"<!-- /{marker} -->") == 1, marker


def test_every_docs_page_is_linked_from_the_readme_and_links_back():
    readme_targets = {target.split("#")[0] for target in links(README)}
    for page in sorted(DOCS.glob("*.md")):
        assert doc_name(page) in readme_targets, f"README.md does not link {doc_name(page)}"
        targets = {(page.parent / target.split("#")[0]).resolve() for target in links(page) if "://" not in target}
        assert README.resolve() in targets, f"{doc_name(page)} does not link back to README.md"
        assert any(t.parent == DOCS.resolve() and t != page.resolve() for t in targets), (
            f"{doc_name(page)} links no other docs page"
        )


def test_every_topic_has_its_page_and_every_figure_is_shown():
    pages = {page.stem for page in DOCS.glob("*.md")}
    assert pages >= {
        "installation", "quickstart", "trainer", "choosing-k", "cli", "evaluation", "estimators", "benchmarks",
        "paper-reproduction", "development",
    }  # fmt: skip
    shown = {(path.parent / target).resolve() for path in DOC_FILES for target in links(path)}
    unshown = [doc_name(figure) for figure in sorted((DOCS / "figures").iterdir()) if figure.resolve() not in shown]
    assert not unshown, f"figures no page shows: {unshown}"


@pytest.mark.parametrize("path", DOC_FILES, ids=DOC_IDS)
def test_every_relative_link_and_anchor_resolves(path):
    broken = []
    for target in links(path):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: no file {linked.relative_to(ROOT) if linked.is_relative_to(ROOT) else linked}")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading with anchor #{anchor} in {doc_name(linked)}")
    assert not broken, f"{doc_name(path)}: " + "; ".join(broken)


@pytest.mark.parametrize("path", DOC_FILES, ids=DOC_IDS)
def test_measured_timings_sit_next_to_their_command_date_and_machine(path):
    paras = paragraphs(path)
    problems = []
    for i, para in enumerate(paras):
        if is_note(para):
            if missing := note_problems(para):
                problems.append(f"measured note {para[:70]!r}... lacks " + ", ".join(missing))
        elif _TIMING.search(para) and _MEASURED_WORD.search(para):
            neighbours = paras[max(i - 1, 0) : i] + paras[i + 1 : i + 2]
            if not any(is_note(n) for n in neighbours):
                problems.append(f"{para[:70]!r}... states a measured timing without a **Measured** note next to it")
    assert not problems, f"{doc_name(path)}:\n" + "\n".join(problems)


def test_the_measured_note_convention_catches_what_it_should():
    good = (
        "**Measured** 2026-11-26 · machine: 2 CPU cores, load average about 2 · command: `pkpo-eval a b` · 2 min 9 s"
    )
    assert is_note(good) and not note_problems(good)
    assert is_note("> **Measured** on a laptop")
    assert note_problems("**Measured** 2 min on a laptop") == [
        "a date (YYYY-MM-DD)", "'machine:'", "'command:' with the command in backticks",
        "the load the machine was under",
    ]  # fmt: skip


# The learning benchmark's tables the docs copy: (page, heading of the section holding the table) -> the results
# file whose paired table it must agree with (`python benchmarks/bench_learning.py --matrix S --report-only` writes
# it). A stale copy after a rerun fails here instead of misleading a reader.
RESULTS = ROOT / "benchmarks" / "results"
COPIED_TABLES = {
    (README, "Results"): "learning_mixed.json",
    (DOCS / "choosing-k.md", "Recommended configuration"): "learning_mixed.json",
}
_PLUS_MINUS = re.compile(r"([+\-−]?\d+\.\d+) ± (\d+\.\d+)")


def section(path: Path, heading: str) -> str:
    """The text of ``path`` from the heading ``heading`` to the next heading of the same or a higher level."""
    text = path.read_text()
    match = re.search(rf"^(#+) {re.escape(heading)}\s*$", text, re.M)
    assert match, f"{doc_name(path)} has no heading {heading!r}"
    end = re.search(rf"^#{{1,{len(match.group(1))}}} ", text[match.end() :], re.M)
    return text[match.end() : match.end() + end.start() if end else len(text)]


def table_rows(text: str) -> str:
    """The Markdown table rows of ``text`` (lines starting with '|'), one per line."""
    return "\n".join(line for line in text.splitlines() if line.startswith("|"))


def table_figures(text: str) -> list[tuple[str, str]]:
    """Every ``mean ± s.e.`` in the Markdown table rows of ``text``, with the typographic minus read as '-'."""
    return [(mean.replace("−", "-"), se) for mean, se in _PLUS_MINUS.findall(table_rows(text))]


@pytest.mark.parametrize(
    ("page", "heading"), list(COPIED_TABLES), ids=[f"{doc_name(p)}#{h}" for p, h in COPIED_TABLES]
)
def test_copied_benchmark_tables_agree_with_the_results_file(page, heading):
    results = json.loads((RESULTS / COPIED_TABLES[page, heading]).read_text())
    measured = set(table_figures(results["paired_table_markdown"]))
    copied = table_figures(section(page, heading))
    assert copied, f"no 'mean ± s.e.' figures in the tables of {doc_name(page)}#{heading}"
    stale = [f"{mean} ± {se}" for mean, se in copied if (mean, se) not in measured]
    assert not stale, f"{doc_name(page)}#{heading}: not in {COPIED_TABLES[page, heading]}'s paired table: {stale}"


def test_benchmarks_page_holds_each_matrix_table_as_written():
    """docs/benchmarks.md shows each finished matrix setting's paired table line for line."""
    page = (DOCS / "benchmarks.md").read_text()
    for path in sorted(RESULTS.glob("learning_*.json")):
        table = json.loads(path.read_text()).get("paired_table_markdown")
        if table is None or not (RESULTS / f"{path.stem}_runs").is_dir():  # not a matrix setting's results
            continue
        assert table_rows(table) in page, f"docs/benchmarks.md does not show {path.name}'s paired table as it is"

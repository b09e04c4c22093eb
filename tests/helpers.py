"""Reading the documentation (README.md and docs/*.md) from tests: the marked code blocks that tests run, and the
bash blocks whose commands tests check. A block is found wherever it lives, so text can move between pages without
a test losing it; a marker that appears twice, or nowhere, fails."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"


def doc_files() -> list[Path]:
    """README.md, then every page under docs/ (sorted)."""
    return [README, *sorted(DOCS.glob("*.md"))]


def doc_name(path: Path) -> str:
    """A documentation file's path relative to the repository root, e.g. ``docs/trainer.md``."""
    return path.relative_to(ROOT).as_posix()


def marked_block(name: str, lang: str = "python") -> tuple[Path, str]:
    """``(file, code)`` of the one ```` ```lang ```` block between ``<!-- name -->`` and ``<!-- /name -->`` in the
    documentation."""
    pattern = re.compile(rf"<!-- {re.escape(name)} -->\n```{lang}\n(.*?)```\n<!-- /{re.escape(name)} -->", re.S)
    found = [(path, match.group(1)) for path in doc_files() for match in pattern.finditer(path.read_text())]
    assert len(found) == 1, f"the {name} block appears {len(found)} times in README.md and docs/*.md"
    return found[0]


def bash_lines(path: Path) -> list[str]:
    """Every line of the ```` ```bash ```` blocks of one documentation file."""
    blocks = re.findall(r"```bash\n(.*?)```", path.read_text(), re.S)
    return [line for block in blocks for line in block.splitlines()]

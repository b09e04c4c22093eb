"""The report of an evaluation: ``results.json`` (strict JSON) and the markdown table printed at the end."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["json_safe", "markdown_table", "write_results"]


def json_safe(obj: Any) -> Any:
    """``obj`` with every NaN replaced by None: strict JSON has no NaN (a standard error over one prompt)."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {key: json_safe(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(value) for value in obj]
    return obj


def _cell(x: float | None) -> str:
    # A table cell: three decimals, "n/a" for a missing value.
    return "n/a" if x is None or math.isnan(x) else f"{x:.3f}"


def markdown_table(results: dict[str, Any]) -> str:
    """One row per model: pass@k ± standard error for every k, prompts solved at least once, greedy accuracy."""
    ks = results["settings"]["ks"]
    models = results["models"]
    has_greedy = any("greedy" in m for m in models.values())
    header = ["model", *[f"pass@{k}" for k in ks], "solved", *(["greedy"] if has_greedy else [])]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, m in models.items():
        cells = [label]
        cells += [f"{_cell(m['pass@k'][str(k)]['mean'])} ± {_cell(m['pass@k'][str(k)]['se'])}" for k in ks]
        cells.append(f"{m['solved']}/{m['num_prompts']}")
        if has_greedy:
            cells.append(_cell(m["greedy"]["mean"]) if "greedy" in m else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(results: dict[str, Any], output_dir: str | Path) -> Path:
    """Write ``results`` to ``<output_dir>/results.json`` (NaN as null); returns the path."""
    path = Path(output_dir) / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe(results), indent=2, allow_nan=False))
    return path

"""A run's directory: the name of the run config `pkpo-train` writes there (which pkpo-eval reads back), and the
message that says how two configs differ (a run resumed with another config, a sample cache written with other
settings)."""

from __future__ import annotations

from typing import Any

__all__ = ["RUN_CONFIG_FILE", "config_diff"]

RUN_CONFIG_FILE = "pkpo_run_config.json"  # written by pkpo-train next to its checkpoints, read by pkpo-eval


def config_diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """``"key: old -> new"`` for every key whose value differs between ``old`` and ``new`` (a missing key reads as
    None), nested dicts by dotted key (``"training.learning_rate: 0.001 -> 0.002"``), sorted."""
    lines = []
    for key in set(old) | set(new):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if isinstance(before, dict) and isinstance(after, dict):
            lines += config_diff(before, after, f"{prefix}{key}.")
        else:
            lines.append(f"{prefix}{key}: {before!r} -> {after!r}")
    return sorted(lines)

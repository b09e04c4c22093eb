"""Paired comparisons and Pareto plots of the learning benchmark (``bench_learning.py``; issue 20).

Every method runs with the same seeds as GRPO, so each method's difference to GRPO is taken seed by seed: the
table reports the mean of the per-seed differences ± the standard error of those differences, which removes
the variation that seeds share (data order, sampling) and is what decides whether a difference is a real one.
The A/A control (PKPO k = 1 with ``scale_rewards="group"``, GRPO's advantage up to the epsilon in its std) gives
the size of a difference that chance alone produces; a difference no larger than it is not called a win.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BASELINE, CONTROL, PEER = "grpo", "aa_control", "maxrl"


def paired_differences(runs: Sequence[dict[str, Any]], metrics: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per method (GRPO excluded) and metric: ``{"mean", "se", "n", "seeds"}`` of ``method - GRPO`` over the seeds
    both have; ``se`` is the sample std of the differences over ``sqrt(n)`` (NaN for one seed)."""
    by_method: dict[str, dict[int, dict[str, float]]] = {}
    for run in runs:
        by_method.setdefault(run["method"], {})[run["seed"]] = run["metrics"]
    base = by_method.get(BASELINE, {})
    out: dict[str, dict[str, Any]] = {}
    for name, seeds in by_method.items():
        if name == BASELINE:
            continue
        shared = sorted(set(seeds) & set(base))
        out[name] = {}
        for metric in metrics:
            diffs = [seeds[s][metric] - base[s][metric] for s in shared if metric in seeds[s] and metric in base[s]]
            n = len(diffs)
            mean = math.fsum(diffs) / n if n else math.nan
            var = math.fsum((d - mean) ** 2 for d in diffs) / (n - 1) if n > 1 else math.nan
            out[name][metric] = {"mean": mean, "se": math.sqrt(var / n) if n > 1 else math.nan, "n": n,
                                 "seeds": shared}  # fmt: skip
    return out


def pareto_metrics(setting: dict[str, Any]) -> tuple[str, str]:
    """(x, y) of the Pareto plot: held-out pass@1 over all prompts, and pass@16 (the largest k evaluated) on the
    hard ones (the setting's ``pareto`` field overrides)."""
    if setting.get("pareto"):
        return tuple(setting["pareto"])
    names = [s["name"] for s in setting["subsets"]]
    everything = "all" if len(names) > 1 else names[0]
    hard = "hard" if "hard" in names else names[-1]
    k = max(k for k in setting["eval_ks"] if k <= setting["eval_samples"])
    return f"eval/{everything}/pass@1", f"eval/{hard}/pass@{k}"


def paired_table(summary: dict[str, Any], paired: dict[str, dict[str, Any]], metrics: Sequence[str]) -> str:
    """Markdown: one row per method, each metric's mean over seeds and its paired difference to GRPO (points)."""
    header = ["method", "seeds"]
    for metric in metrics:
        header += [f"{metric[5:]} (%)", "Δ vs GRPO (points, paired)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, entry in summary.items():
        row = [entry["label"], str(len(entry["seeds"]))]
        for metric in metrics:
            stat = entry["metrics"][metric]
            row.append(f"{100 * stat['mean']:.2f} ± {100 * stat['se']:.2f}")
            diff = paired.get(name, {}).get(metric)
            row.append("—" if diff is None else f"{100 * diff['mean']:+.2f} ± {100 * diff['se']:.2f}")
        lines.append("| " + " | ".join(row) + " |")
    control = paired.get(CONTROL)
    if control:
        noise = ", ".join(f"{m[5:]} {100 * control[m]['mean']:+.2f} ± {100 * control[m]['se']:.2f}" for m in metrics)
        lines.append(f"\nA/A control (chance alone) vs GRPO: {noise} points.")
    return "\n".join(lines)


def plot_pareto(summary: dict[str, Any], x_metric: str, y_metric: str, path: Path, title: str) -> Path:
    """One point per method at (mean x, mean y) over seeds with ±1 s.e. error bars; GRPO, the A/A control and
    MaxRL drawn apart so that they are found at a glance."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 5.2))
    ax = fig.subplots()
    markers = {BASELINE: ("s", "black"), CONTROL: ("D", "grey"), PEER: ("^", "tab:red")}
    for index, (name, entry) in enumerate(summary.items()):
        x, y = entry["metrics"][x_metric], entry["metrics"][y_metric]
        marker, color = markers.get(name, ("o", f"C{index % 10}"))
        ax.errorbar(100 * x["mean"], 100 * y["mean"], xerr=100 * x["se"], yerr=100 * y["se"], fmt=marker,
                    color=color, markersize=8 if name in markers else 6, capsize=3,
                    label=f"{entry['label']} ({len(entry['seeds'])} seeds)")  # fmt: skip
    ax.set(xlabel=f"held-out {x_metric[5:]} (%)", ylabel=f"held-out {y_metric[5:]} (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6.5, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path

"""GRPO's learning-rate sweep and the admission rule of issue 27 (``bench_learning.py --sweep-lr``).

A setting is *admitted* when GRPO at its tuned rate ends above the starting model on held-out pass@1 (over all
prompts) by more than two standard errors. The before-RL model is one fixed, seeded evaluation shared by every
seed, so there is nothing to pair it with: the standard error is GRPO's over seeds (sample std / sqrt(n)).

The sweep runs GRPO at each rate for each seed (seed by seed, so that a partial sweep already compares every rate),
each rate in its own resumable run store ``learning_<setting>_lr<rate>_runs/``; the tuned rate is the one with the
highest mean held-out pass@1. ``--learning-rate tuned`` then runs a matrix in the tuned rate's store, so the
sweep's GRPO runs are the matrix's GRPO runs of those seeds.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from learning_settings import Setting

SIGMAS = 2.0  # how many standard errors above the starting model admit a setting


def parse_rate(text: str) -> float | str:
    """``--learning-rate``: a learning rate (a float), or ``"tuned"``."""
    if text.strip() == "tuned":
        return "tuned"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a learning rate: {text!r} (e.g. 3e-4, or 'tuned')") from None


def parse_rates(text: str) -> list[float]:
    """``--sweep-lr``: a comma list of learning rates."""
    try:
        return [float(rate) for rate in text.split(",") if rate.strip()]
    except ValueError:
        raise SystemExit(f"--sweep-lr takes a comma list of learning rates, got {text!r}") from None


def rate_tag(rate: float) -> str:
    """``lr3e-04``: a learning rate as it appears in a store's name (one spelling per rate)."""
    return f"lr{rate:.0e}"


def at_rate(setting: Setting, rate: float) -> Setting:
    """``setting`` with RL learning rate ``rate``, named ``<setting>_lr<rate>`` (its own run store)."""
    tuned = copy.deepcopy(setting)
    tuned.rl["learning_rate"] = rate
    tuned.name = f"{setting.name}_{rate_tag(rate)}"
    return tuned


def admission(before: float, finals: Sequence[float]) -> dict[str, Any]:
    """Whether GRPO's held-out pass@1 ``finals`` (one per seed) end above ``before`` by more than
    :data:`SIGMAS` standard errors over seeds: ``{"gain", "se", "n", "admitted", "text"}`` (points)."""
    n = len(finals)
    mean = math.fsum(finals) / n if n else math.nan
    se = math.sqrt(math.fsum((v - mean) ** 2 for v in finals) / (n - 1) / n) if n > 1 else math.nan
    gain = mean - before
    admitted = n > 1 and gain > SIGMAS * se
    verdict = "ADMITTED" if admitted else "not admitted"
    spread = f"± {100 * se:.2f} points (s.e. over {n} seeds)" if n > 1 else "points (one seed: no s.e.)"
    text = (f"GRPO {100 * mean:.2f} % vs before RL {100 * before:.2f} %: {100 * gain:+.2f} {spread} -> {verdict} "
            f"(needs > {SIGMAS:g} s.e.)")  # fmt: skip
    return {"gain": gain, "se": se, "n": n, "admitted": bool(admitted), "text": text}


def sweep_summary(setting: Setting, rates: Sequence[float], runs_by_rate: dict[float, list[dict[str, Any]]],
                  before: dict[str, Any], metric: str) -> dict[str, Any]:  # fmt: skip
    """Per rate: GRPO's ``metric`` per seed and :func:`admission`; the tuned rate (highest mean; None before any
    run finished) and whether the setting is admitted at it."""
    subset, key = metric.split("/")[1:]
    start = before[subset][key]
    per_rate = {}
    for rate in rates:
        finals = {run["seed"]: run["metrics"][metric] for run in runs_by_rate.get(rate, [])}
        per_rate[f"{rate:.0e}"] = {"rate": rate, "per_seed": finals, **admission(start, list(finals.values()))}
    done = [entry for entry in per_rate.values() if entry["n"]]
    tuned = max(done, key=lambda e: e["gain"]) if done else None
    return {
        "setting": setting.name, "metric": metric, "before_rl": start, "rates": per_rate,
        "tuned_rate": tuned["rate"] if tuned else None, "admitted": bool(tuned and tuned["admitted"]),
    }  # fmt: skip


def sweep_table(summary: dict[str, Any]) -> str:
    """Markdown: one row per rate, GRPO's held-out pass@1 per seed, its gain over the starting model, the verdict."""
    lines = [f"GRPO learning-rate sweep, {summary['setting']}: held-out {summary['metric'][5:]}, before RL "
             f"{100 * summary['before_rl']:.2f} %", "",
             "| learning rate | per seed (%) | gain over before RL (points, ± s.e. over seeds) | admitted |",
             "|---|---|---|---|"]  # fmt: skip
    for entry in summary["rates"].values():
        seeds = ", ".join(f"{s}: {100 * v:.2f}" for s, v in sorted(entry["per_seed"].items())) or "not run yet"
        gain = f"{100 * entry['gain']:+.2f} ± {100 * entry['se']:.2f}" if entry["n"] else "—"
        tuned = " (tuned)" if entry["rate"] == summary["tuned_rate"] else ""
        lines.append(f"| {entry['rate']:.0e}{tuned} | {seeds} | {gain} | {'yes' if entry['admitted'] else 'no'} |")
    verdict = "ADMITTED" if summary["admitted"] else "not admitted"
    lines.append(f"\nTuned rate {summary['tuned_rate']}: setting {verdict} (GRPO > before RL by > {SIGMAS:g} s.e.).")
    return "\n".join(lines)


def run_sweep(setting: Setting, rates: Sequence[float], seeds: Sequence[int], out: Path,
              run_benchmark: Callable[..., dict[str, Any]], metric: str, **kwargs) -> dict[str, Any]:  # fmt: skip
    """GRPO at every rate, seed by seed, each rate's runs in its own store (resumable); writes
    ``learning_<setting>_sweep.json`` after every seed and returns the summary."""
    results: dict[float, dict[str, Any]] = {}
    for i in range(len(seeds)):
        for rate in rates:
            results[rate] = run_benchmark(at_rate(setting, rate), ["grpo"], list(seeds[: i + 1]), out, resume=True,
                                          **kwargs)  # fmt: skip
        summary = sweep_summary(setting, rates, {r: res["runs"] for r, res in results.items()},
                                results[rates[0]]["before_rl"], metric)  # fmt: skip
        summary["table_markdown"] = sweep_table(summary)
        (out / f"learning_{setting.name}_sweep.json").write_text(json.dumps(summary, indent=1))
    print("\n" + summary["table_markdown"])
    return summary


def tuned_rate(setting: Setting, out: Path) -> float:
    """The tuned rate of ``setting``'s sweep file; a one-line error if there is none or the setting is not admitted."""
    path = out / f"learning_{setting.name}_sweep.json"
    if not path.is_file():
        raise SystemExit(f"--learning-rate tuned: no sweep of {setting.name!r} in {path} (run --sweep-lr first)")
    summary = json.loads(path.read_text())
    if not summary["admitted"]:
        raise SystemExit(f"--learning-rate tuned: {setting.name!r} is not admitted by its sweep ({path}): "
                         "GRPO does not beat the starting model by more than 2 s.e. at any rate")  # fmt: skip
    return summary["tuned_rate"]

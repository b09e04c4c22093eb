"""Test-time-scaling efficiency (MaxRL, arXiv 2602.02710, reports it as "how many fewer samples" the trained model
needs): a method's efficiency at ``k0`` is ``k0 / k*``, where ``k*`` is the k at which the method's held-out pass@k
curve reaches GRPO's pass@``k0`` (interpolated linearly in log k between the evaluated ks). 2.0 means the method
needs half GRPO's samples; GRPO itself is 1.0. Taken seed by seed (the method's curve against GRPO's of the same
seed), then mean ± s.e. over seeds.

Two cases give no number, and are reported as what they are instead of a made-up one:

* ``never``: the method's pass@k stays below GRPO's pass@``k0`` up to the largest k evaluated;
* ``at_least``: the method's pass@1 (the smallest k) already reaches it, so ``k* <= 1`` and the efficiency is only
  known to be ``>= k0``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

BASELINE = "grpo"
EFFICIENCY_KS = (16, 64)


def k_to_reach(ks: Sequence[int], curve: Sequence[float], target: float) -> tuple[float | None, str]:
    """``(k*, status)``: the k at which ``curve`` (pass@k at ``ks``, increasing k) first reaches ``target``,
    linearly interpolated in log k. ``status`` is ``"reached"``, ``"at_least"`` (reached at ``ks[0]`` already:
    ``k* <= ks[0]``, returned as ``ks[0]``) or ``"never"`` (``k*`` None)."""
    if len(ks) != len(curve) or not ks:
        raise ValueError(f"ks and curve must be non-empty and of one length, got {len(ks)} and {len(curve)}")
    if curve[0] >= target:
        return float(ks[0]), "at_least"
    for i in range(1, len(ks)):
        if curve[i] >= target:
            lo, hi = math.log(ks[i - 1]), math.log(ks[i])
            fraction = (target - curve[i - 1]) / (curve[i] - curve[i - 1])
            return (float(ks[i]) if fraction == 1 else math.exp(lo + fraction * (hi - lo))), "reached"
    return None, "never"


def efficiency(ks: Sequence[int], method: Sequence[float], baseline: Sequence[float], k0: int) -> dict[str, Any]:
    """``{"value", "status", "k_star"}``: ``k0 / k*`` where ``method`` reaches ``baseline``'s pass@``k0``
    (:func:`k_to_reach`); ``value`` is None when it never does and the lower bound ``k0 / ks[0]`` for
    ``"at_least"``."""
    if k0 not in ks:
        raise ValueError(f"k0 = {k0} is not among the evaluated ks {list(ks)}")
    k_star, status = k_to_reach(ks, method, baseline[list(ks).index(k0)])
    return {"value": None if k_star is None else k0 / k_star, "status": status, "k_star": k_star}


def curve_of(record: dict[str, Any], subset: str) -> tuple[list[int], list[float]] | None:
    """``(ks, pass@k)`` of a run's (or the before-RL record's) held-out curve of ``subset``, or None if it has
    none (runs stored before the curves were kept)."""
    curves = record.get("passk_curves", {})
    if subset not in curves:
        return None
    values = curves[subset]
    return list(range(1, len(values) + 1)), list(values)


def paired_efficiency(runs: Sequence[dict[str, Any]], subset: str, k0s: Sequence[int] = EFFICIENCY_KS,
                      before: dict[str, Any] | None = None) -> dict[str, dict[int, dict[str, Any]]]:  # fmt: skip
    """Per method (and ``"before RL"`` if ``before`` has curves) and ``k0``: the per-seed efficiencies against
    GRPO's run of the same seed and their summary (:func:`summarize_efficiency`). Methods or seeds without a
    curve, and ``k0`` beyond the curves, are left out."""
    base = {run["seed"]: curve_of(run, subset) for run in runs if run["method"] == BASELINE}
    base = {seed: curve for seed, curve in base.items() if curve is not None}
    rows: dict[str, dict[int, list[dict[str, Any]]]] = {}
    candidates = [(run["method"], run["seed"], curve_of(run, subset)) for run in runs]
    if before is not None and curve_of(before, subset) is not None:
        candidates += [("before RL", seed, curve_of(before, subset)) for seed in base]
    for method, seed, curve in candidates:
        if curve is None or seed not in base:
            continue
        ks, values = curve
        base_ks, base_values = base[seed]
        for k0 in k0s:
            if k0 <= len(values) and base_ks == ks:
                rows.setdefault(method, {}).setdefault(k0, []).append(
                    {"seed": seed, **efficiency(ks, values, base_values, k0)}
                )
    return {method: {k0: summarize_efficiency(per_seed) for k0, per_seed in by_k.items()}
            for method, by_k in rows.items()}  # fmt: skip


def summarize_efficiency(per_seed: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± s.e. (sample std / sqrt(n)) over the seeds where the curve reached the target; counts of the seeds
    where it never did and where only a lower bound is known; and a text that says all of it."""
    reached = [e["value"] for e in per_seed if e["status"] == "reached"]
    never = sum(e["status"] == "never" for e in per_seed)
    bounds = [e["value"] for e in per_seed if e["status"] == "at_least"]
    n = len(reached)
    mean = math.fsum(reached) / n if n else None
    se = math.sqrt(math.fsum((v - mean) ** 2 for v in reached) / (n - 1) / n) if n > 1 else None
    text = efficiency_text(mean, se, n, never, bounds, len(per_seed))
    return {"mean": mean, "se": se, "n": n, "never": never, "at_least": len(bounds), "seeds": len(per_seed),
            "per_seed": list(per_seed), "text": text}  # fmt: skip


def efficiency_text(mean, se, n: int, never: int, bounds: Sequence[float], seeds: int) -> str:
    """``"1.52x ± 0.10"``, with what the other seeds did: ``"never reaches (5 of 5 seeds)"``, ``">= 16x"``..."""
    parts = []
    if n:
        parts.append(f"{mean:.2f}x" + (f" ± {se:.2f}" if se is not None else " (1 seed)"))
    if never:
        parts.append(f"never reaches ({never} of {seeds} seeds)")
    if bounds:
        parts.append(f">= {min(bounds):.0f}x ({len(bounds)} of {seeds} seeds)")
    if n and n < seeds:
        parts[0] += f" ({n} of {seeds} seeds)"
    return "; ".join(parts) if parts else "—"


def efficiency_table(effs: dict[str, dict[int, dict[str, Any]]], labels: dict[str, str], subset: str) -> str:
    """Markdown: one row per method, its efficiency at each ``k0`` (paired by seed)."""
    k0s = sorted({k0 for by_k in effs.values() for k0 in by_k})
    header = ["method", *(f"{subset} efficiency at k = {k0} (x GRPO's samples)" for k0 in k0s)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, by_k in effs.items():
        row = [labels.get(method, method), *(by_k[k0]["text"] if k0 in by_k else "—" for k0 in k0s)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)

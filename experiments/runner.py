"""Run the toy reproductions, write figures (PNG), a JSON record and a markdown results table.

Used by ``python -m experiments {all,toy,variance,training} --out DIR [--quick] [--seed N]``.
Each section writes ``DIR/<section>.json`` and its figure; ``DIR/results.json`` and ``DIR/results.md`` are
then rebuilt from whichever section files are present.

Settings (full / quick):

- toy (paper Figure 1): ``k in {1, 2, 4, 8, 16, 32}``, ``sigma = 0.1``, exact curves by quadrature,
  optima by golden-section search, Monte Carlo check points from :func:`pkpo_trl.estimators.maxg_at_k`.
- variance (paper Figure 4): ``n = 16`` (quick 8), ``k = 1..n``, ``theta in {0.0, 0.5, 0.9}``
  (quick ``{0.5, 0.9}``), 50 000 groups (quick 4 000), common random numbers across estimators; plus the
  binary variant (success iff ``0.9 <= x <= 1``) at ``theta in {0.7, 0.9}`` (quick ``{0.9}``).
- training: SGD with ``lr = 0.05``, ``n = 16``, 4 groups per step, 300 steps (quick 60), 32 runs (quick 4),
  schedules ``k = 1, 4, 8`` and ``8 -> 1`` switching half-way, from ``theta0 = 0`` and from the
  sparse-reward start ``theta0 = -0.2``.
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .toy import SIGMA, exact_maxg_at_k, mc_maxg_at_k, optimal_theta
from .training import TrainingResult, train_schedules
from .variance import DEFAULT_ESTIMATORS, VarianceResult, gradient_variance

__all__ = [
    "SECTIONS",
    "ToyConfig",
    "TrainingConfig",
    "VarianceConfig",
    "progress_units",
    "run_toy",
    "run_training",
    "run_variance",
    "write_results",
]

SECTIONS = ("toy", "variance", "training")
FIGURES = {
    "toy": "fig1_maxg_vs_theta.png",
    "variance": "fig4_variance_vs_k.png",
    "training": "training_curves.png",
}
DPI = 90


@dataclass
class ToyConfig:
    """Settings of the Figure 1 reproduction."""

    ks: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    sigma: float = SIGMA
    theta_lo: float = -0.2
    theta_hi: float = 1.3
    grid: int = 601
    mc_thetas: int = 16
    mc_n: int = 32
    mc_groups: int = 2000
    seed: int = 0

    @classmethod
    def make(cls, quick: bool = False, seed: int = 0) -> ToyConfig:
        """Full or quick preset."""
        return cls(mc_thetas=8, mc_groups=200, seed=seed) if quick else cls(seed=seed)


@dataclass
class VarianceConfig:
    """Settings of the Figure 4 reproduction."""

    thetas: tuple[float, ...] = (0.0, 0.5, 0.9)
    binary_thetas: tuple[float, ...] = (0.7, 0.9)
    n: int = 16
    num_groups: int = 50_000
    estimators: tuple[str, ...] = DEFAULT_ESTIMATORS
    sigma: float = SIGMA
    seed: int = 0

    @classmethod
    def make(cls, quick: bool = False, seed: int = 0) -> VarianceConfig:
        """Full or quick preset."""
        if quick:
            return cls(thetas=(0.5, 0.9), binary_thetas=(0.9,), n=8, num_groups=4000, seed=seed)
        return cls(seed=seed)


@dataclass
class TrainingConfig:
    """Settings of the training toy (fixed k and 8 -> 1 annealing)."""

    starts: dict[str, float] = field(
        default_factory=lambda: {"theta0 = 0 (standard)": 0.0, "theta0 = -0.2 (sparse reward)": -0.2}
    )
    ks: tuple[int, ...] = (1, 4, 8)
    anneal: tuple[int, int] = (8, 1)
    steps: int = 300
    lr: float = 0.05
    n: int = 16
    groups_per_step: int = 4
    num_runs: int = 32
    estimator: str = "sloo_minus_one"
    eval_ks: tuple[int, ...] = (1, 8)
    sigma: float = SIGMA
    seed: int = 0

    @classmethod
    def make(cls, quick: bool = False, seed: int = 0) -> TrainingConfig:
        """Full or quick preset."""
        return cls(steps=60, num_runs=4, seed=seed) if quick else cls(seed=seed)

    def schedules(self) -> dict[str, str]:
        """Name -> k schedule spec (:class:`pkpo_trl.k.KSpec`): each fixed ``k``, then
        ``k_start -> k_end`` switching half-way."""
        out = {f"k={k}": f"constant:{k}" for k in self.ks}
        a, b = self.anneal
        out[f"anneal {a}->{b}"] = f"steps:0={a},{self.steps // 2}={b}"
        return out


def progress_units(section: str, cfg: ToyConfig | VarianceConfig | TrainingConfig) -> int:
    """Number of ``progress.update(1)`` calls a section makes (for one tqdm bar over everything)."""
    if section == "toy":
        return 2 * len(cfg.ks)
    if section == "variance":
        return (len(cfg.thetas) + len(cfg.binary_thetas)) * cfg.n
    if section == "training":
        return len(cfg.starts) * (len(cfg.ks) + 1) * cfg.steps
    raise ValueError(section)


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _first_step(curve: list[float], level: float) -> int | None:
    """First step at which ``curve`` reaches ``level`` (None if never)."""
    return next((i for i, v in enumerate(curve) if v >= level), None)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


# --------------------------------------------------------------------------------------------------
# Sections.


def run_toy(cfg: ToyConfig, out: Path | None = None, progress: Any = None) -> dict:
    """Exact ``maxg@k(theta)`` curves, optima and Monte Carlo check points (paper Figure 1).

    Returns a JSON-ready dict; with ``out``, also writes ``toy.json`` and the figure.
    """
    t0 = time.perf_counter()
    thetas = torch.linspace(cfg.theta_lo, cfg.theta_hi, cfg.grid, dtype=torch.float64)
    mc_thetas = torch.linspace(cfg.theta_lo, cfg.theta_hi, cfg.mc_thetas, dtype=torch.float64)
    gen = torch.Generator().manual_seed(cfg.seed)
    curves, optima, mc = {}, {}, {}
    for k in cfg.ks:
        curves[k] = exact_maxg_at_k(thetas, k, cfg.sigma).tolist()
        optima[k] = optimal_theta(k, cfg.sigma)
        if progress is not None:
            progress.update(1)
        mean, se = mc_maxg_at_k(mc_thetas, k, max(cfg.mc_n, k), cfg.mc_groups, cfg.sigma, gen)
        mc[k] = (mc_thetas.tolist(), mean.tolist(), se.tolist())
        if progress is not None:
            progress.update(1)
    # Largest |MC - exact| in units of its standard error: a check of the closed form and of maxg_at_k.
    z = max(
        abs(m - float(exact_maxg_at_k(t, k, cfg.sigma))) / max(s, 1e-12) for k in cfg.ks for t, m, s in zip(*mc[k])
    )
    record = {
        "config": asdict(cfg),
        "optima": [
            {
                "k": k,
                "theta_star": optima[k][0],
                "maxg_at_k": optima[k][1],
                "maxg_at_1_at_theta_star": float(exact_maxg_at_k(optima[k][0], 1, cfg.sigma)),
            }
            for k in cfg.ks
        ],
        "mc_check_max_abs_z": z,
        "seconds": time.perf_counter() - t0,
    }
    if out is not None:
        from .plots import plot_maxg_vs_theta

        _save(plot_maxg_vs_theta(thetas.tolist(), curves, optima, mc, cfg.sigma), out / FIGURES["toy"])
        (out / "toy.json").write_text(json.dumps(record, indent=1))
    return record


def run_variance(
    cfg: VarianceConfig, out: Path | None = None, progress: Any = None
) -> tuple[dict, list[VarianceResult]]:
    """Gradient-estimator variance vs ``k`` at each ``theta`` (paper Figure 4).

    Returns ``(record, results)``; with ``out``, also writes ``variance.json`` and the figure.
    """
    t0 = time.perf_counter()
    panels = [(theta, False) for theta in cfg.thetas] + [(theta, True) for theta in cfg.binary_thetas]
    results = [
        gradient_variance(
            theta,
            cfg.n,
            None,
            cfg.estimators,
            cfg.num_groups,
            cfg.seed + i,
            cfg.sigma,
            progress=progress,
            binary=binary,
        )
        for i, (theta, binary) in enumerate(panels)
    ]
    summary = []
    for res in results:
        v = res.variance
        ordered = [
            k
            for j, k in enumerate(res.ks)
            if k >= 2 and k <= res.n - 1 and v["sloo_minus_one"][j] < v["sloo"][j] < v["s"][j]
        ]
        checkable = [k for k in res.ks if 2 <= k <= res.n - 1]
        # Unbiasedness check: the largest |mean - exact gradient| in standard errors, over k and the unbiased
        # estimators (all but pass_at_k_training, whose mean is reported as a ratio to the exact gradient).
        z = max(
            abs(m - g) / se
            for e in res.mean
            if e != "pass_at_k_training"
            for m, g, se in zip(res.mean[e], res.exact_gradient, res.standard_error(e))
            if math.isfinite(m) and se > 0
        )
        entry = {
            "theta": res.theta,
            "binary": res.binary,
            "ordering_holds_for_k": ordered,
            "ordering_fails_for_k": [k for k in checkable if k not in ordered],
            "max_abs_z_mean_vs_exact_gradient": z,
        }
        if "pass_at_k_training" in res.mean:
            entry["pass_at_k_training_mean_over_exact"] = [
                _finite(m / g) if math.isfinite(m) and g != 0 else None
                for m, g in zip(res.mean["pass_at_k_training"], res.exact_gradient)
            ]
        summary.append(entry)
    record = {
        "config": asdict(cfg),
        "results": [
            {
                **r.to_dict(),
                "variance": {e: [_finite(x) for x in xs] for e, xs in r.variance.items()},
                "mean": {e: [_finite(x) for x in xs] for e, xs in r.mean.items()},
            }
            for r in results
        ],
        "summary": summary,
        "seconds": time.perf_counter() - t0,
    }
    if out is not None:
        from .plots import plot_variance

        _save(plot_variance(results), out / FIGURES["variance"])
        (out / "variance.json").write_text(json.dumps(record, indent=1))
    return record, results


def run_training(
    cfg: TrainingConfig, out: Path | None = None, progress: Any = None
) -> tuple[dict, dict[str, dict[str, TrainingResult]]]:
    """Train ``theta`` with each schedule from each start; returns ``(record, results[start][schedule])``.

    With ``out``, also writes ``training.json`` and the figure.
    """
    t0 = time.perf_counter()
    results = {
        start: train_schedules(
            cfg.schedules(),
            seed=cfg.seed,
            progress=progress,
            steps=cfg.steps,
            lr=cfg.lr,
            n=cfg.n,
            groups_per_step=cfg.groups_per_step,
            estimator=cfg.estimator,
            theta0=theta0,
            num_runs=cfg.num_runs,
            eval_ks=cfg.eval_ks,
            sigma=cfg.sigma,
        )
        for start, theta0 in cfg.starts.items()
    }
    references = {k: optimal_theta(k, cfg.sigma) for k in cfg.eval_ks}
    final = [
        {
            "start": start,
            "schedule": name,
            "theta": res.theta_mean[-1],
            "theta_std": res.theta_std[-1],
            **{f"maxg_at_{k}": res.final(k) for k in cfg.eval_ks},
            **{f"maxg_at_{k}_std": res.maxg_std[k][-1] for k in cfg.eval_ks},
            "steps_to_95pct_maxg_at_1": _first_step(res.maxg[1], 0.95 * references[1][1])
            if 1 in cfg.eval_ks
            else None,
        }
        for start, by_schedule in results.items()
        for name, res in by_schedule.items()
    ]
    record = {
        "config": asdict(cfg),
        "optima": {str(k): {"theta_star": t, "maxg": v} for k, (t, v) in references.items()},
        "final": final,
        "curves": {start: {name: r.to_dict() for name, r in rs.items()} for start, rs in results.items()},
        "seconds": time.perf_counter() - t0,
    }
    if out is not None:
        from .plots import plot_training

        _save(plot_training(results, cfg.eval_ks, references), out / FIGURES["training"])
        (out / "training.json").write_text(json.dumps(record, indent=1))
    return record, results


# --------------------------------------------------------------------------------------------------
# Results table.


def _fmt(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}g}"


def _markdown(sections: dict[str, dict], meta: dict) -> str:
    lines = [
        "# PKPO toy reproduction: results",
        "",
        f"Generated by `python -m experiments` ({'quick' if meta['quick'] else 'full'} mode, "
        f"seed {meta['seed']}, torch {meta['torch']}, Python {meta['python']}). All numbers below are "
        "measured by this package; none is copied from the paper.",
        "",
    ]
    toy = sections.get("toy")
    if toy:
        sigma = toy["config"]["sigma"]
        lines += [
            f"## Optimal policy mean per k (paper Figure 1; sigma = {sigma})",
            "",
            f"Figure: `{FIGURES['toy']}`. Exact quadrature of maxg@k(theta) = int_0^1 (1 - F(t)^k) dt; "
            f"the Monte Carlo estimator `maxg_at_k` agrees within {toy['mc_check_max_abs_z']:.2f} standard "
            "errors at every check point.",
            "",
            "| k | theta* | maxg@k(theta*) | maxg@1(theta*) |",
            "|---:|---:|---:|---:|",
        ]
        for row in toy["optima"]:
            lines.append(
                f"| {row['k']} | {row['theta_star']:.4f} | {row['maxg_at_k']:.4f} "
                f"| {row['maxg_at_1_at_theta_star']:.4f} |"
            )
        lines.append("")
    var = sections.get("variance")
    if var:
        cfg = var["config"]
        lines += [
            f"## Gradient-estimator variance vs k (paper Figure 4; n = {cfg['n']}, {cfg['num_groups']} groups)",
            "",
            f"Figure: `{FIGURES['variance']}`. Variance over groups of sum_i A_i (x_i - theta)/sigma^2. "
            "`sloo` and `l2o` need k <= n-1; `grpo_passk` exists at k = n only (= `sloo_minus_one` there); "
            "`pass_at_k_training` needs 0/1 rewards (binary panels) and is not unbiased.",
            "",
        ]
        for res, summ in zip(var["results"], var["summary"]):
            ests = list(res["variance"])
            lines += [
                f"### theta = {res['theta']:g}"
                + (" (binary: success iff 0.9 <= x <= 1)" if res.get("binary") else ""),
                "",
                f"sloo_minus_one < sloo < s holds for k = {summ['ordering_holds_for_k'] or 'none'}"
                + (f"; fails for k = {summ['ordering_fails_for_k']}" if summ["ordering_fails_for_k"] else "")
                + f". Means match the exact gradient within {summ['max_abs_z_mean_vs_exact_gradient']:.2f} "
                "standard errors (unbiased).",
                "",
                "| k | exact gradient | " + " | ".join(ests) + " |",
                "|---:|---:|" + "---:|" * len(ests),
            ]
            for j, k in enumerate(res["ks"]):
                vals = " | ".join(_fmt(res["variance"][e][j]) for e in ests)
                lines.append(f"| {k} | {res['exact_gradient'][j]:.4g} | {vals} |")
            lines.append("")
    tr = sections.get("training")
    if tr:
        cfg = tr["config"]
        eval_ks = cfg["eval_ks"]
        lines += [
            f"## Training theta (SGD lr = {cfg['lr']}, n = {cfg['n']}, {cfg['groups_per_step']} groups/step, "
            f"{cfg['steps']} steps, {cfg['num_runs']} runs, estimator {cfg['estimator']})",
            "",
            f"Figure: `{FIGURES['training']}`. End-of-training means (± std over runs) of the exact objectives. "
            "Optima: "
            + ", ".join(
                f"maxg@{k} max {tr['optima'][str(k)]['maxg']:.4f} at theta {tr['optima'][str(k)]['theta_star']:.4f}"
                for k in eval_ks
            )
            + ".",
            "",
            "| start | schedule | theta | "
            + " | ".join(f"maxg@{k}" for k in eval_ks)
            + " | steps to 95% of max maxg@1 |",
            "|---|---|---:|" + "---:|" * len(eval_ks) + "---:|",
        ]
        for row in tr["final"]:
            vals = " | ".join(f"{row[f'maxg_at_{k}']:.4f} ± {row[f'maxg_at_{k}_std']:.4f}" for k in eval_ks)
            theta = f"{row['theta']:.3f} ± {row['theta_std']:.3f}"
            reach = row.get("steps_to_95pct_maxg_at_1")
            reach = "never" if reach is None else str(reach)
            lines.append(f"| {row['start']} | {row['schedule']} | {theta} | {vals} | {reach} |")
        lines.append("")
    lines += [f"Wall time: {meta['seconds']:.1f} s for the sections run last.", ""]
    return "\n".join(lines)


def write_results(out: Path, quick: bool, seed: int, seconds: float) -> dict:
    """Combine the ``<section>.json`` files in ``out`` into ``results.json`` and ``results.md``.

    Training curves are left out of ``results.json`` (they stay in ``training.json``).
    """
    sections = {}
    for s in SECTIONS:
        path = out / f"{s}.json"
        if path.exists():
            sections[s] = json.loads(path.read_text())
    meta = {
        "quick": quick,
        "seed": seed,
        "seconds": seconds,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    slim = {s: {k: v for k, v in rec.items() if k != "curves"} for s, rec in sections.items()}
    (out / "results.json").write_text(json.dumps({"meta": meta, **slim}, indent=1))
    (out / "results.md").write_text(_markdown(sections, meta))
    return slim

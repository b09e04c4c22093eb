"""How biased MaxRL's estimator is, and that the harmonic k mixture is not (issue 20).

One Bernoulli(p) prompt, groups of n, parameterised by p itself (score of a success 1/p, of a failure -1/(1-p)).
MaxRL's truncated maximum-likelihood objective ``J_T = sum_{k<=T} pass@k / k`` has the gradient
``(1 - (1-p)^T) / p``; ``T -> inf`` is ``grad log p = 1/p``. For each p the table gives the expected gradient of

* ``maxrl`` (``pkpo_estimator="maxrl"``: MaxRL's published ``(r - mean) / mean`` over n, whose sum over the group
  is the published per-sample mean),
* ``harmonic`` (``pkpo_k="harmonic"``, T = n, times H_n to undo the normalised weights),

exactly (a sum over the success count c ~ Binomial(n, p)) and by Monte Carlo (``--groups`` groups, ± 1 s.e.),
against the targets at T = n and T = n - 1.

    python benchmarks/maxrl_bias.py --n 16 --groups 200000
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pkpo_trl.estimators import transform_rewards, transform_rewards_mixture  # noqa: E402
from pkpo_trl.k import KMixture  # noqa: E402


def advantages(rewards: torch.Tensor, name: str, n: int) -> torch.Tensor:
    """The estimator's advantages, rescaled so that ``sum_i A_i score_i`` estimates the unnormalised objective."""
    if name == "maxrl":
        return transform_rewards(rewards, 1, "maxrl")
    harmonic = sum(1 / k for k in range(1, n + 1))
    return transform_rewards_mixture(rewards, KMixture.harmonic(n).as_dict()) * harmonic


def exact(name: str, n: int, p: float) -> float:
    groups = (torch.arange(n) < torch.arange(n + 1).unsqueeze(-1)).double()  # row c: c successes first
    a = advantages(groups, name, n)
    out = 0.0
    for c in range(n + 1):
        score = c * (a[c, 0].item() if c else 0.0) / p - (n - c) * (a[c, -1].item() if c < n else 0.0) / (1 - p)
        out += math.comb(n, c) * p**c * (1 - p) ** (n - c) * score
    return out


def monte_carlo(name: str, n: int, p: float, groups: int, seed: int = 0) -> tuple[float, float]:
    rewards = (torch.rand(groups, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) < p).double()
    per_group = (advantages(rewards, name, n) * torch.where(rewards == 1, 1 / p, -1 / (1 - p))).sum(-1)
    return per_group.mean().item(), per_group.std().item() / math.sqrt(groups)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=16, help="group size (default 16)")
    parser.add_argument("--groups", type=int, default=200_000, help="Monte Carlo groups per p (default 200000)")
    parser.add_argument("--ps", type=float, nargs="+", default=[0.02, 0.05, 0.1, 0.3, 0.6])
    args = parser.parse_args(argv)
    n = args.n
    lines = [
        f"| p | target T=n | target T=n-1 | maxrl exact | maxrl MC (n={n}) | harmonic exact | harmonic MC |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in args.ps:
        t_n, t_n1 = (1 - (1 - p) ** n) / p, (1 - (1 - p) ** (n - 1)) / p
        cells = [f"{p:g}", f"{t_n:.4f}", f"{t_n1:.4f}"]
        for name in ("maxrl", "harmonic"):
            mean, se = monte_carlo(name, n, p, args.groups)
            value = exact(name, n, p)
            cells += [f"{value:.4f} ({100 * (value / t_n - 1):+.2f} % vs T=n)", f"{mean:.4f} ± {se:.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    return table


if __name__ == "__main__":
    main()

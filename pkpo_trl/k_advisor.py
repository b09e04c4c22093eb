"""Which k gives a data set a training signal, read off a base model's samples before training (issue 20).

``pkpo-eval BASE --suggest_k true --num_generations 16`` samples ``N`` completions per prompt; prompt ``j`` has
``c_j`` successes. A training group is ``n = num_generations`` of those completions, so its success count is
hypergeometric, ``P(C = c) = C(c_j, c) C(N - c_j, n - c) / C(N, n)`` (the same "subsets of the observed samples"
that make the pass@k estimator unbiased; no assumed success probability). With 0/1 rewards a group's transformed
rewards depend only on ``c``: ``A(c)`` (correct and incorrect value, :func:`pkpo_trl.estimators.transform_rewards`).
For each candidate k (and the harmonic mixture) the advisor reports

* ``frac_signal``: ``mean_j P(A(C) != 0)``, the fraction of prompts whose group carries any gradient signal (a
  group with no success carries none for every estimator; with k > 1, one with too few failures carries none
  either, as every subset of k holds a success);
* ``mean_norm``: ``mean_j E ||A(C)||_2``, the expected size of a group's advantage vector before scaling;
* ``hard_share``: the share of ``sum_j E ||A(C)||`` that goes to the prompts with the lowest base pass@1 (the
  hardest quarter), i.e. where the update goes under ``scale_rewards="batch"``, which divides all by one number.

Pure torch; no TRL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .estimators import ESTIMATORS, transform_rewards_mixture
from .estimators.estimates import log_binom
from .k import KMixture

__all__ = ["KAdvice", "advice_table", "suggest_k"]


@dataclass(frozen=True)
class KAdvice:
    """One candidate: ``name`` (``"k=4"``, ``"harmonic:16"``) and the three numbers of the module docstring."""

    name: str
    frac_signal: float
    mean_norm: float
    hard_share: float


def _check_counts(correct: Sequence[int] | torch.Tensor, num_samples: int) -> None:
    """Refuse what no sampling can give: a success count outside ``[0, num_samples]``, a fractional one, counts that
    are not one per prompt (a flat list), or ``num_samples < 1``."""
    if isinstance(num_samples, bool) or not hasattr(num_samples, "__index__") or num_samples < 1:
        raise ValueError(f"num_samples={num_samples!r} must be a positive integer (samples drawn per prompt)")
    counts = torch.as_tensor(correct, dtype=torch.float64)
    if counts.dim() != 1:
        raise ValueError(f"correct must be one success count per prompt (a flat list), got shape {list(counts.shape)}")
    bad = counts[(counts != counts.round()) | (counts < 0) | (counts > num_samples)]
    if bad.numel():
        raise ValueError(f"success counts must be integers in [0, num_samples={num_samples}]; got {bad.tolist()[:5]}")


def group_count_distribution(correct: torch.Tensor, num_samples: int, group_size: int) -> torch.Tensor:
    """``[P, n + 1]``: for each prompt with ``correct[j]`` successes of ``num_samples``, the distribution of the
    success count of a group of ``group_size`` drawn from those samples without replacement (hypergeometric)."""
    if not 1 <= group_size <= num_samples:
        raise ValueError(
            f"a training group of num_generations={group_size} must be drawn from the {num_samples} samples per "
            f"prompt: use --num_samples >= {group_size}"
        )
    c_j = torch.as_tensor(correct, dtype=torch.float64).reshape(-1, 1)
    c = torch.arange(group_size + 1, dtype=torch.float64)
    total, size = (torch.tensor(float(x), dtype=torch.float64) for x in (num_samples, group_size))
    log_p = log_binom(c_j, c) + log_binom(total - c_j, size - c) - log_binom(total, size)
    return torch.exp(log_p)


def advantage_table(mixture: dict[int, float], group_size: int, estimator: str) -> torch.Tensor:
    """``[n + 1]``: ``||A(c)||_2`` of a 0/1 group of ``group_size`` with ``c`` successes, for ``c = 0..n``: one
    vectorised transform of the ``n + 1`` canonical groups ``[1]*c + [0]*(n-c)``."""
    c = torch.arange(group_size + 1).unsqueeze(-1)
    groups = (torch.arange(group_size) < c).to(torch.float64)
    return transform_rewards_mixture(groups, mixture, estimator).norm(dim=-1)


def suggest_k(
    correct: Sequence[int] | torch.Tensor,
    num_samples: int,
    group_size: int,
    estimator: str = "sloo_minus_one",
    ks: Sequence[int] | None = None,
    hard_fraction: float = 0.25,
) -> list[KAdvice]:
    """The advisor's numbers (module docstring) for each k in ``ks`` (default: every k the estimator allows for
    ``group_size``) and the harmonic mixture over all of them, from per-prompt success counts of the base model."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {sorted(ESTIMATORS)}")
    _check_counts(correct, num_samples)
    if not 0 < hard_fraction <= 1:
        raise ValueError(f"hard_fraction={hard_fraction} must lie in (0, 1]: the share of prompts called hardest")
    if ks is not None and not list(ks):
        raise ValueError("ks is empty: give at least one k, or None for every k the groups allow")
    spec = ESTIMATORS[estimator]
    k_min, k_max = spec.k_range(group_size)
    if k_max < 1:
        raise ValueError(f"num_generations={group_size} is too small for estimator {estimator!r}")
    candidates: list[tuple[str, dict[int, float]]] = []
    if spec.uses_k and k_min == 1:  # a choice of k (grpo_passk has one k, n; maxrl none)
        ks = list(range(1, k_max + 1)) if ks is None else sorted(set(ks))
        if bad := [k for k in ks if not 1 <= k <= k_max]:
            raise ValueError(f"k={bad} outside [1, {k_max}] for estimator {estimator!r} and groups of {group_size}")
        candidates += [(f"k={k}", {k: 1.0}) for k in ks]
        candidates.append((f"harmonic:{k_max}", KMixture.harmonic(k_max).as_dict()))
    else:  # one candidate: the estimator's own k
        candidates.append((estimator, {k_max: 1.0}))
    correct = torch.as_tensor(correct, dtype=torch.float64).reshape(-1)
    if correct.numel() == 0:
        raise ValueError("no prompts: the advisor needs the success counts of at least one prompt")
    weights = group_count_distribution(correct, num_samples, group_size)
    hardest = correct.argsort(stable=True)[: max(1, round(hard_fraction * correct.numel()))]
    out = []
    for name, mixture in candidates:
        norms = advantage_table(mixture, group_size, estimator)
        expected_norm = weights @ norms
        signal = weights @ (norms > 0).to(torch.float64)
        total = expected_norm.sum().item()
        share = expected_norm[hardest].sum().item() / total if total > 0 else float("nan")
        out.append(KAdvice(name, signal.mean().item(), expected_norm.mean().item(), share))
    return out


def advice_table(advice: Sequence[KAdvice], hard_fraction: float = 0.25) -> str:
    """Markdown table of :func:`suggest_k`'s result."""
    lines = [
        f"| candidate | prompts with signal | mean E‖A‖ | share of ‖A‖ on the hardest {hard_fraction:.0%} |",
        "|---|---|---|---|",
    ]
    for a in advice:
        lines.append(f"| {a.name} | {a.frac_signal:.1%} | {a.mean_norm:.4f} | {a.hard_share:.1%} |")
    return "\n".join(lines)

"""Scoring completions with the training reward functions (called as TRL calls them), and pass@k over prompts from
the combined rewards."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from ..estimators import is_binary, maxg_at_k
from ..metrics import check_reward_values, group_pass_at_k, mean_se
from ..rewards import get_reward_funcs
from .errors import EvalInputError

__all__ = ["pass_at_k_stats", "score_completions"]

logger = logging.getLogger(__name__)


class _CountFailures(logging.Filter):
    """Swallows the rewards module's per-completion failure warnings, counting them (reported once)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.first: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if "raised for completion" in record.msg:
            self.count += 1
            self.first = self.first or record.getMessage()
            return False
        return True


@contextlib.contextmanager
def _failures_counted() -> Iterator[_CountFailures]:
    rewards_logger = logging.getLogger(get_reward_funcs.__module__)  # where the per-completion warnings come from
    counter = _CountFailures()
    rewards_logger.addFilter(counter)
    try:
        yield counter
    finally:
        rewards_logger.removeFilter(counter)


def score_completions(
    reward_func: Callable[..., Any],
    prompts: Sequence[Any],
    completions: Sequence[Sequence[str]],
    columns: dict[str, Sequence[Any]],
    what: str = "",
) -> list[list[float]]:
    """Rewards ``r[p][j]`` of completion ``j`` of prompt ``p`` from one TRL reward function, called as TRL
    calls it (``prompts``, ``completions``, the data set's other columns repeated per completion;
    ``completion_ids`` and ``trainer_state`` are None). Conversational prompts get conversational
    completions. A completion the function cannot score (it raised, or returned None) gets NaN; failures
    are reported in one warning.
    """
    sizes = [len(c) for c in completions]
    flat_prompts = [p for p, size in zip(prompts, sizes, strict=True) for _ in range(size)]
    flat = [
        text if isinstance(p, str) else [{"role": "assistant", "content": text}]
        for p, group in zip(prompts, completions, strict=True)
        for text in group
    ]
    kwargs = {
        key: [v for v, size in zip(values, sizes, strict=True) for _ in range(size)] for key, values in columns.items()
    }
    name = getattr(reward_func, "__name__", type(reward_func).__name__)
    with _failures_counted() as failures:
        rewards = reward_func(
            prompts=flat_prompts, completions=flat, completion_ids=None, trainer_state=None,
            log_extra=lambda *a, **k: None, log_metric=lambda *a, **k: None, **kwargs,
        )  # fmt: skip
    if failures.count:
        logger.warning(
            "Reward %r raised on %d of %d completions%s; they are scored as failed. First: %s",
            name, failures.count, len(flat), f" of {what}" if what else "", failures.first,
        )  # fmt: skip
    try:  # the trainer's check: a real number of any Python, numpy or torch type, or None
        values = [math.nan if r is None else r for r in check_reward_values(name, rewards)]
    except TypeError as exc:
        raise EvalInputError(str(exc)) from exc
    out, start = [], 0
    for size in sizes:
        out.append(values[start : start + size])
        start += size
    return out


def pass_at_k_stats(
    rewards: torch.Tensor, ks: Sequence[int], threshold: float = 1.0, greedy: torch.Tensor | None = None
) -> dict[str, Any]:
    """pass@k (and max@k) over prompts from combined rewards ``[P, n]`` (NaN = failed).

    With ``c_p`` successes (``reward >= threshold``) among the ``n`` samples of prompt ``p``:
    ``pass@k = mean_p [1 - C(n - c_p, k) / C(n, k)]`` (Eq. 8), standard error ``std_p / sqrt(P)``
    (:func:`~pkpo_trl.metrics.group_pass_at_k` with failed samples counted as failures, not left out).
    For non-binary rewards also ``max@k = mean_p maxg@k_p`` (Eq. 19, failed samples scored 0).

    Returns:
        ``{"pass@k": {k: {"mean", "se"}}, "max@k": ... (non-binary only), "solved": prompts with c_p > 0,
        "num_prompts", "num_samples", "num_failed", "mean_reward", "correct": [c_p], "greedy": {...}}``.
    """
    num_prompts, n = rewards.shape
    failed = rewards.isnan()
    scored = rewards.nan_to_num(0.0).double()
    correct = (scored >= threshold).logical_and(~failed).sum(-1)
    as_failures = rewards.masked_fill(failed, -math.inf)  # a failed sample counts as a failure, not left out
    stats: dict[str, Any] = {
        "num_prompts": num_prompts,
        "num_samples": n,
        "pass@k": {str(k): v for k, v in group_pass_at_k(as_failures, ks, threshold, se=True).items()},
        "solved": int((correct > 0).sum()),
        "num_failed": int(failed.sum()),
        "mean_reward": scored.mean().item(),
        "correct": correct.tolist(),
    }
    if not (is_binary(scored, may_have_nan=False) and threshold == 1.0):
        stats["max@k"] = {str(k): mean_se(maxg_at_k(scored, k)) for k in ks}
    if greedy is not None:
        hit = (greedy.nan_to_num(0.0) >= threshold).logical_and(~greedy.isnan()).double()
        stats["greedy"] = {**mean_se(hit), "solved": int(hit.sum())}
    return stats

"""What training, the callbacks, evaluation and the benchmarks share: the combined reward, prompt keys, pass@k of
groups (with its standard error over groups), and the default ks.

- :func:`combine_rewards`: ``g = sum_f w_f r_f`` as TRL combines its reward functions (NaN-skipping).
- :func:`prompt_key`: the key of a prompt in the trainer's per-prompt bookkeeping and pkpo-eval's cache.
- :func:`group_pass_at_k`: the one pass@k of groups: mean unbiased pass@k over the groups of a batch or the prompts
  of an evaluation (the trainer, :class:`~pkpo_trl.callbacks.PassAtKCallback`, pkpo-eval and the benchmarks).
- :func:`mean_se`: the one standard error, ``std / sqrt(P)`` over ``P`` prompts (or seeds).
- :func:`check_reward_values`: a reward function's values as floats, or a TypeError naming what is not a number
  (the trainer and pkpo-eval check every reward function's output with it).
- :func:`default_ks`: the one rule for the ks reported when none are given: powers of 2 below ``n``, and ``n``.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .estimators import pass_at_k

__all__ = ["combine_rewards", "default_ks", "group_pass_at_k", "mean_se", "prompt_key"]


def prompt_key(prompt: Any) -> str:
    """A stable key of a prompt (string or conversation): the trainer's per-prompt bookkeeping (prompts solved,
    adapted k) and pkpo-eval's sample cache both use it."""
    text = prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()


def combine_rewards(rewards_per_func: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``g = sum_f w_f r_f`` over the last dimension of a ``[..., F]`` reward tensor (TRL's ``[B, F]``), NaN-skipping
    like TRL, and NaN where no reward function scored the completion (the trainers leave those out of their
    groups, pkpo-eval counts them as failed)."""
    rewards = (rewards_per_func * weights.to(rewards_per_func)).nansum(dim=-1)
    return rewards.masked_fill(torch.isnan(rewards_per_func).all(dim=-1), torch.nan)


def default_ks(n: int) -> list[int]:
    """The ks of pass@k reported for groups of ``n`` when none are asked for: powers of 2 up to ``n``, and ``n``
    itself (pass@n: a group solved at least once) when it is not one. pkpo-eval (``--ks``) and pkpo-train
    (``--pass_at_ks``) both use it."""
    ks = [2**i for i in range(n.bit_length())]
    return ks if ks[-1] == n else [*ks, n]


def group_pass_at_k(
    groups: torch.Tensor, ks: Sequence[int], threshold: float = 1.0, se: bool = False
) -> dict[int, float] | dict[int, dict[str, float]]:
    """Mean unbiased pass@k over the rows of combined rewards ``[G, n]``, for each ``k <= n``.

    A completion succeeds when its reward is ``>= threshold``; NaN marks an unscored one, left out of its group (as
    in the trainers; pkpo-eval, which counts them as failed, passes ``-inf`` for them). A group with ``n'`` scored
    completions and ``c`` successes has ``pass@k = 1 - C(n'-c, k') / C(n', k')`` (paper Eq. 8; equal to
    :func:`~pkpo_trl.estimators.maxg_at_k` on the 0/1 successes), ``k' = min(k, n')``; groups with none scored are
    left out of the mean. With ``se=True`` each value is :func:`mean_se` over the groups, ``{"mean", "se"}``.
    """
    ks = tuple(k for k in ks if k <= groups.shape[-1])
    scored = (~groups.isnan()).sum(-1)
    correct = (groups >= threshold).sum(-1)
    values = _pass_at_k_table(groups.shape[-1], ks).to(groups.device)[scored, correct]  # [G, len(ks)]
    if se:
        values = values[scored > 0]
        return {k: mean_se(values[:, j]) for j, k in enumerate(ks)}
    return dict(zip(ks, values.nanmean(0).tolist(), strict=True))


@functools.lru_cache(maxsize=64)
def _pass_at_k_table(n_max: int, ks: tuple[int, ...]) -> torch.Tensor:
    """``table[n, c, j]``: pass@k' of a group with ``n`` scored completions and ``c`` successes, ``k' =
    min(ks[j], n)`` (as :func:`~pkpo_trl.maxg_at_k` does for ``n < k``), ``1 - C(n-c, k') / C(n, k')`` (Eq. 8);
    NaN for ``n = 0``. A lookup per batch instead of the sorted estimator (~0.4 ms a batch)."""
    table = torch.full((n_max + 1, n_max + 1, len(ks)), math.nan, dtype=torch.float64)
    for n in range(1, n_max + 1):
        for j, k in enumerate(ks):
            table[n, : n + 1, j] = pass_at_k(n, torch.arange(n + 1), min(k, n))
    return table


def mean_se(values) -> dict[str, float]:
    """``{"mean", "se"}`` of ``P`` values (prompts, groups or seeds): the mean and its standard error
    ``std / sqrt(P)`` (sample std; NaN for fewer than two values)."""
    x = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    p = x.numel()
    return {"mean": x.mean().item(), "se": x.std().item() / math.sqrt(p) if p > 1 else math.nan}


def _is_real_number(value) -> bool:
    """A real number of any type Python, numpy or torch has: ``numbers.Real`` (bool included), a numpy scalar or
    one-element array of a bool, integer or floating dtype, or a one-element torch tensor of such a dtype."""
    if isinstance(value, numbers.Real):
        return True
    if isinstance(value, np.generic | np.ndarray):
        return value.size == 1 and value.dtype.kind in "biuf"
    if isinstance(value, torch.Tensor):
        return value.numel() == 1 and not value.dtype.is_complex
    return False


def check_reward_values(name: str, values):
    """``values`` as floats (None kept: a completion the function cannot score) if every entry is a real number
    (:func:`_is_real_number`) or None, else a TypeError naming the function, the value and its type."""
    for index, value in enumerate(values):
        if value is not None and not _is_real_number(value):
            raise TypeError(
                f"reward function {name!r} returned {value!r} ({type(value).__name__}) for completion {index}; a "
                "reward must be a real number (a Python, numpy or torch bool, int or float), or None for a "
                "completion it cannot score."
            )
    return [None if value is None else float(value.item() if hasattr(value, "item") else value) for value in values]


def checked_reward_func(func, name: str):
    """``func`` with its output checked by :func:`check_reward_values` (async functions stay async): TRL turns the
    values into a tensor with ``torch.tensor``, whose error for a string names neither the function nor the value."""
    if inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(type(func).__call__):

        @functools.wraps(func)
        async def checked_async(*args, **kwargs):
            return check_reward_values(name, await func(*args, **kwargs))

        return checked_async

    @functools.wraps(func)
    def checked(*args, **kwargs):
        return check_reward_values(name, func(*args, **kwargs))

    return checked

"""Checking and sorting the inputs of the estimators: rewards as float64 groups ``[..., n]``, k, and each group sorted
ascending with its unscored (NaN) slots first."""

from __future__ import annotations

import numpy as np
import torch


def as_float64(rewards) -> tuple[torch.Tensor, torch.dtype]:
    """float64 tensor and the output dtype (the input's if floating, else torch's default). In list or
    numpy input, ``None`` (TRL's "not scored") becomes NaN."""
    if not isinstance(rewards, torch.Tensor):
        floating = isinstance(rewards, np.ndarray) and rewards.dtype.kind == "f"
        out_dtype = torch.from_numpy(rewards[:0]).dtype if floating else torch.get_default_dtype()
        return torch.from_numpy(np.array(rewards, dtype=np.float64)), out_dtype
    out_dtype = rewards.dtype if rewards.is_floating_point() else torch.get_default_dtype()
    return rewards.to(torch.float64), out_dtype


def check_k(k) -> int:
    """``k`` as a Python int >= 1 (numpy and 0-d torch integers accepted), else a ValueError."""
    if isinstance(k, bool) or not isinstance(k, int):
        # numpy and 0-d torch integers are fine; floats (even 2.0) are a caller bug.
        if hasattr(k, "dtype") and not getattr(k.dtype, "is_floating_point", True) and k.ndim == 0:
            k = int(k)
        elif type(k).__module__ == "numpy" and "int" in type(k).__name__:
            k = int(k)
        else:
            raise ValueError(f"k must be an integer, got {k!r} of type {type(k).__name__}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got k={k}")
    return k


def check_rewards(rewards: torch.Tensor) -> tuple[int, bool]:
    """``n`` and whether any reward is NaN, after checking the shape and that no reward is infinite."""
    if rewards.ndim == 0:
        raise ValueError("rewards must have shape [..., n] with one group of n rewards in the last dim")
    n = rewards.shape[-1]
    if n == 0:
        raise ValueError("empty group: rewards has size 0 in its last (group) dimension")
    if bool(torch.isfinite(rewards).all()):
        return n, False
    if bool(torch.isinf(rewards).any()):
        raise ValueError("rewards contain inf; use NaN to mark a completion that could not be scored")
    return n, True


def is_binary(rewards: torch.Tensor, may_have_nan: bool = True) -> bool:
    """Whether every scored (non-NaN) reward is 0 or 1: pass@k rewards rather than max@k ones."""
    binary = (rewards == 0) | (rewards == 1)
    if may_have_nan:
        binary |= torch.isnan(rewards)
    return bool(binary.all())


# On CPU numpy's argsort beats torch.sort (torch 2.13, one thread: about 5x for rows of 64-256, 2x at 4096);
# other devices use torch.sort. tests/test_estimators.py runs both.
_NUMPY_SORT_ON_CPU = True


def sort_groups(
    g: torch.Tensor, has_nan: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Sort each group ascending with unscored (NaN) slots first.

    Returns the sorted rewards, the 1-based ranks among the scored rewards (<= 0 for NaN slots), the scored
    count ``n'`` (``None`` without NaNs: every group has all ``n``, the ranks are ``[n]`` and the weights
    have no batch dimension) and the sorting permutation. NaN slots hold the group's smallest scored reward
    (0 if none), so ``g_sorted[..., :1]`` is each group's minimum; all their weights are 0.
    """
    n = g.shape[-1]
    nan = torch.isnan(g) if has_nan else None
    keys = torch.where(nan, -torch.inf, g) if has_nan else g
    if _NUMPY_SORT_ON_CPU and g.device.type == "cpu":
        # numpy's quicksort is slow on long rows of few distinct values; its stable sort is fast there.
        kind = "stable" if n > 256 and is_binary(g) else "quicksort"
        order = torch.from_numpy(np.argsort(keys.detach().numpy(), axis=-1, kind=kind))
        g_sorted = keys.gather(-1, order)
    else:
        g_sorted, order = keys.sort(dim=-1)
    ranks = torch.arange(1, n + 1, dtype=torch.float64, device=g.device)
    if not has_nan:
        return g_sorted, ranks, None, order
    n_valid = (~nan).sum(-1, keepdim=True)
    lowest = g_sorted.gather(-1, torch.clamp(n - n_valid, max=n - 1))
    ranks = ranks - (n - n_valid)
    g_sorted = torch.where(ranks >= 1, g_sorted, torch.where(n_valid > 0, lowest, 0.0))
    return g_sorted, ranks, n_valid.to(torch.float64), order

"""The reward registry: names (and import paths) to TRL reward functions, each NaN on error per completion."""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

from .matchers import completion_text, exact_match, first_number, has_answer_format, numeric_match
from .math_verify_worker import math_verify_reward

logger = logging.getLogger(__name__)

# Keyword arguments GRPOTrainer._calculate_rewards passes to every reward function that are not dataset
# columns (TRL-internal: checked against TRL's source in tests/test_rewards.py).
TRL_CONTEXT_KWARGS = ("trainer_state", "log_extra", "log_metric", "environments")

# A per-completion scorer: (completion text, gold answer) -> reward, or None when not applicable.
Scorer = Callable[[str, str], float | None]
REWARDS: dict[str, Scorer] = {
    "math_verify": math_verify_reward,
    "exact_match": exact_match,
    "numeric_match": numeric_match,
    "first_number": first_number,
    "format": has_answer_format,
}


class RewardConfigError(ValueError):
    """A reward function is misconfigured (e.g. its answer column is missing): raised, never turned into NaN."""


def register_reward(name: str) -> Callable[[Scorer], Scorer]:
    """Decorator that adds a per-completion scorer ``(completion, gold) -> float | None`` to ``REWARDS``."""

    def decorator(scorer: Scorer) -> Scorer:
        if name in REWARDS:
            raise ValueError(f"A reward named {name!r} is already registered.")
        REWARDS[name] = scorer
        return scorer

    return decorator


def _nan_on_error(name: str, index: int, exc: BaseException) -> float:
    logger.warning(
        "Reward function %r raised for completion %d, reward NaN: %s: %s", name, index, type(exc).__name__, exc
    )
    return math.nan


def make_reward_func(name: str, scorer: Scorer, answer_column: str = "answer") -> Callable[..., list]:
    """A TRL reward function named ``name``: ``scorer(completion_text, gold)`` per completion, the gold answer
    read from the dataset column ``answer_column``; NaN (and a warning) where the scorer raises."""

    def reward_func(completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        if answer_column not in kwargs:
            columns = sorted(k for k in kwargs if k not in (*TRL_CONTEXT_KWARGS, "prompts", "completion_ids"))
            raise RewardConfigError(
                f"Reward {name!r} needs the gold answer in the dataset column {answer_column!r}, but the data set "
                f"has the columns {columns}. Map your answer column to {answer_column!r} or set the answer column."
            )
        rewards: list[float | None] = []
        for i, (completion, gold) in enumerate(zip(completions, kwargs[answer_column], strict=True)):
            try:
                rewards.append(scorer(completion_text(completion), gold))
            except Exception as exc:
                rewards.append(_nan_on_error(name, i, exc))
        return rewards

    reward_func.__name__ = reward_func.__qualname__ = name
    reward_func.__doc__ = scorer.__doc__
    return reward_func


def _one_by_one(kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    """The keyword arguments of each completion alone: per-completion lists cut to one element, the rest as is."""
    size = len(kwargs["completions"])
    per_completion = [
        key
        for key, value in kwargs.items()
        if key not in TRL_CONTEXT_KWARGS and isinstance(value, list | tuple) and len(value) == size
    ]
    return [{**kwargs, **{key: [kwargs[key][index]] for key in per_completion}} for index in range(size)]


def _checked(name: str, output: Any, size: int) -> list[float | None]:
    if not hasattr(output, "__len__") or isinstance(output, str) or len(output) != size:
        got = len(output) if hasattr(output, "__len__") else type(output).__name__
        raise ValueError(f"Reward function {name!r} must return a list of {size} floats or None, got {got}.")
    return list(output)


def safe_reward_func(func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a TRL reward function so that an exception costs only the completions it concerns.

    If ``func`` raises on the batch, it is called again on each completion alone; a completion for which it
    still raises gets NaN and a logged warning. A :class:`RewardConfigError` (a setup mistake) propagates, and
    so does a wrong number of rewards for the batch (a bug). ``__name__`` is kept; async functions stay async.
    """
    name = getattr(func, "__name__", type(func).__name__)

    # What to make of the outcomes lives in `rewards`; the sync and async wrappers differ only in how they call.
    def rewards(kwargs: dict[str, Any], batch: tuple[Any, Exception | None], ones: list | None) -> list:
        if batch[1] is None:
            return _checked(name, batch[0], len(kwargs["completions"]))
        out = []
        for index, (value, error) in enumerate(ones):
            if error is None:
                try:
                    out.append(_checked(name, value, 1)[0])
                    continue
                except ValueError as exc:
                    error = exc
            out.append(_nan_on_error(name, index, error))
        return out

    def outcome(kwargs: dict[str, Any]) -> tuple[Any, Exception | None]:
        try:
            return func(**kwargs), None
        except RewardConfigError:
            raise
        except Exception as exc:
            return None, exc

    if inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(getattr(func, "__call__", None)):  # noqa: B004

        async def async_outcome(kwargs: dict[str, Any]) -> tuple[Any, Exception | None]:
            try:
                return await func(**kwargs), None
            except RewardConfigError:
                raise
            except Exception as exc:
                return None, exc

        @functools.wraps(func)
        async def async_wrapper(**kwargs: Any) -> list[float | None]:
            batch = await async_outcome(kwargs)
            ones = [await async_outcome(one) for one in _one_by_one(kwargs)] if batch[1] is not None else None
            return rewards(kwargs, batch, ones)

        return async_wrapper

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> list[float | None]:
        batch = outcome(kwargs)
        return rewards(kwargs, batch, [outcome(one) for one in _one_by_one(kwargs)] if batch[1] is not None else None)

    return wrapper


def _import_reward(path: str) -> Callable[..., Any]:
    """The callable at ``"module:attribute"`` (the attribute may be dotted) or ``"package.module.function"``."""
    module_name, _, attribute = path.partition(":") if ":" in path else path.rpartition(".")
    if not module_name or not attribute:
        raise ValueError(f"A custom reward must be given as 'module:function' or 'module.function', got {path!r}.")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"Cannot import module {module_name!r} for the custom reward {path!r}: {exc}") from exc
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"Module {module_name!r} has no attribute {attribute!r} (custom reward {path!r}).")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"The custom reward {path!r} is not callable.")
    return obj


def get_reward_funcs(names: str | Sequence[str], answer_column: str = "answer") -> list[Callable[..., Any]]:
    """TRL reward functions for ``names``: registered names (``REWARDS``; the gold answer read from the dataset
    column ``answer_column``) or import paths of custom TRL reward functions, ``"module:function"`` or
    ``"module.function"`` (wrapped by :func:`safe_reward_func`). Each keeps its ``__name__``, which TRL uses in
    its metric names (``rewards/<name>/mean``). ValueError for an unknown name or an unresolvable path."""
    funcs: list[Callable[..., Any]] = []
    for name in [names] if isinstance(names, str) else names:
        if name in REWARDS:
            funcs.append(make_reward_func(name, REWARDS[name], answer_column))
        elif ":" in name or "." in name:
            funcs.append(safe_reward_func(_import_reward(name)))
        else:
            raise ValueError(
                f"Unknown reward function {name!r}. Registered rewards: {', '.join(sorted(REWARDS))}; "
                "a custom reward is given by import path, 'my_module:my_reward' or 'my_module.my_reward'."
            )
    return funcs

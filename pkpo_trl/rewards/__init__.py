"""Verifiable reward functions for TRL, selectable by name.

TRL calls a reward function as ``f(prompts=..., completions=..., completion_ids=..., **dataset_columns,
trainer_state=..., log_extra=..., log_metric=...)`` and expects one float (or ``None``, "not applicable") per
completion. A completion is a string, or for conversational data a list of messages; both work here.

The built-in rewards (``REWARDS``: ``math_verify``, ``exact_match``, ``numeric_match``, ``first_number``,
``format``; each scorer's docstring says what it rewards) compare a completion with the gold answer in the
dataset column ``"answer"``. Any other function is selected by import path, ``"my_module:my_reward"`` or (as
TRL's ``grpo.py`` takes it) ``"my_module.my_reward"``, and wrapped by :func:`safe_reward_func`: a function that
raises for one completion gives NaN for that completion (and a logged warning), not a crashed run; the built-in
rewards do the same. A new built-in is one function and one decorator::

    @register_reward("my_reward")
    def my_reward(completion: str, gold: str) -> float | None: ...
"""

from .matchers import completion_text, extract_final_answer
from .math_verify_worker import math_verify_equivalent
from .registry import (
    REWARDS,
    TRL_CONTEXT_KWARGS,
    RewardConfigError,
    get_reward_funcs,
    register_reward,
    safe_reward_func,
)

__all__ = [
    "REWARDS",
    "TRL_CONTEXT_KWARGS",
    "RewardConfigError",
    "completion_text",
    "extract_final_answer",
    "get_reward_funcs",
    "math_verify_equivalent",
    "register_reward",
    "safe_reward_func",
]

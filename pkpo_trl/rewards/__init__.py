"""Verifiable reward functions for TRL, selectable by name.

TRL calls a reward function as ``f(prompts=..., completions=..., completion_ids=..., **dataset_columns,
trainer_state=..., log_extra=..., log_metric=...)`` and expects one float (or ``None``, "not applicable") per
completion. A completion is a string, or for conversational data a list of messages; both work here.

Built-in rewards (``REWARDS``) compare a completion with the gold answer in a dataset column (``"answer"``):

- ``math_verify``: 1.0 if the answer is equivalent to the gold answer per ``math-verify`` with TRL's
  ``accuracy_reward`` settings (``\\boxed{}`` first; an answer needs an anchor, ``\\boxed{}``, ``Answer: x``
  or ``answer is x``: a bare ``72`` or ``#### 72`` scores 0), checked in a worker process with a hard
  per-completion timeout, so one pathological answer cannot hang a training step.
- ``exact_match``: 1.0 if the final answer (``\\boxed{}``, ``#### x``, ``Answer: x``, else the last number)
  equals the gold answer as a string, after light normalisation.
- ``numeric_match``: 1.0 if the final answer has the gold answer's numeric value.
- ``first_number``: 1.0 if the *first* number in the completion equals the gold answer (few-shot plain-text
  prompts such as ``"12+35=47\\n23+58="``, where a base model answers and then continues the pattern).
- ``format``: 1.0 if the completion states a final answer as ``\\boxed{}``, ``#### x`` or ``Answer: x``.

Any other function is selected by import path, ``"my_module:my_reward"`` or (as TRL's ``grpo.py`` takes it)
``"my_module.my_reward"``, and wrapped by :func:`safe_reward_func`: a function that raises for one completion
gives NaN for that completion (and a logged warning), not a crashed run; the built-in rewards do the same.
A new built-in is one function and one decorator::

    @register_reward("my_reward")
    def my_reward(completion: str, gold: str) -> float | None: ...

Layout: :mod:`.registry` (names and import paths to TRL reward functions), :mod:`.matchers` (answers as
text, the string and number scorers), :mod:`.math_verify_worker` (math-verify in a worker process).
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

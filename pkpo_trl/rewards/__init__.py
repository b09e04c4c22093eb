"""Verifiable reward functions for TRL, selectable by name.

TRL calls every reward function as

    f(prompts=..., completions=..., completion_ids=..., **dataset_columns,
      trainer_state=..., log_extra=..., log_metric=...)

and expects one float (or ``None``, "not applicable") per completion. A completion is a string, or for
conversational data a list of messages ``[{"role": "assistant", "content": "..."}]``; both work here.

Built-in rewards (``REWARDS``; each compares a completion with the gold answer in a dataset column,
``"answer"`` unless told otherwise):

================  ==================================================================================
name              reward
================  ==================================================================================
``math_verify``   1.0 if the completion's answer is mathematically equivalent to the gold answer, as
                  judged by the ``math-verify`` package with TRL's ``accuracy_reward`` settings
                  (``\\boxed{}`` first; an answer must be anchored by ``\\boxed{}``, ``Answer: x`` or
                  ``answer is x``: a bare ``72`` or ``#### 72`` scores 0); the check runs in a worker
                  process with a hard per-completion timeout, so one pathological answer cannot hang a
                  training step
``exact_match``   1.0 if the final answer (``\\boxed{}``, ``#### x``, ``Answer: x``, else the last
                  number) equals the gold answer as a string, after light normalisation
``numeric_match`` 1.0 if the final answer has the same numeric value as the gold answer
``first_number``  1.0 if the *first* number in the completion equals the gold answer: for few-shot
                  plain-text prompts (``"12+35=47\\n23+58="``) where a base model answers and then
                  continues the pattern
``format``        1.0 if the completion states its final answer in a required format (``\\boxed{}``,
                  ``#### x`` or ``Answer: x``)
================  ==================================================================================

Any other function is selected by import path, ``"my_module:my_reward"`` or (as TRL's own ``grpo.py``
takes it) ``"my_module.my_reward"``, and wrapped by :func:`safe_reward_func`: a function that raises for
one completion gives NaN for that completion (and a logged warning), not a crashed run. The built-in
rewards do the same, per completion.

Adding a reward is one function and one decorator::

    @register_reward("my_reward")
    def my_reward(completion: str, gold: str) -> float | None: ...

Layout: :mod:`.registry` (names and import paths to TRL reward functions), :mod:`.matchers` (answers as
text, the string and number scorers), :mod:`.math_verify_worker` (math-verify in a worker process).
"""

from .matchers import completion_text, extract_final_answer, extract_gold, gold_answer, last_boxed
from .math_verify_worker import MATH_VERIFY_TIMEOUT, math_verify_equivalent
from .registry import (
    DEFAULT_ANSWER_COLUMN,
    REWARDS,
    TRL_CONTEXT_KWARGS,
    RewardConfigError,
    get_reward_funcs,
    make_reward_func,
    register_reward,
    safe_reward_func,
)

__all__ = [
    "DEFAULT_ANSWER_COLUMN",
    "MATH_VERIFY_TIMEOUT",
    "REWARDS",
    "TRL_CONTEXT_KWARGS",
    "RewardConfigError",
    "completion_text",
    "extract_final_answer",
    "extract_gold",
    "get_reward_funcs",
    "gold_answer",
    "last_boxed",
    "make_reward_func",
    "math_verify_equivalent",
    "register_reward",
    "safe_reward_func",
]

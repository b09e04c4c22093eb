"""Built-in tasks, generated in code from a seed, offline: ``addition`` and ``multiplication`` of
``digits``-digit numbers, ``num_operands`` of them. More digits / operands make the task harder, so that pass@1
stalls while pass@k does not. Train and test problems are disjoint by construction (a problem's split is a hash
of the problem). :func:`pkpo_trl.data.load_task` loads them by name, like a hub data set.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable
from typing import Any

import datasets

from .prompts import DatasetError, PromptFormat, build_prompt, check_few_shot, check_prompt_template

__all__ = ["BUILTIN_TASKS", "TaskSizeError", "generate_arithmetic"]

_OPERATORS: dict[str, tuple[str, Callable[[list[int]], int]]] = {
    "addition": ("+", sum),
    "multiplication": ("*", math.prod),
}
BUILTIN_TASKS = tuple(_OPERATORS)
_TEST_FRACTION = 0.2  # share of each task's problem space reserved for the test split
TEST_SPLITS = ("test", "eval", "validation")


def _split_of(problem: str) -> str:
    """A problem's split, a pure function of the problem: train and test can never share a problem."""
    bucket = int(hashlib.sha256(problem.encode()).hexdigest()[:8], 16) / 16**8
    return "test" if bucket < _TEST_FRACTION else "train"


def _operand_range(digits: int) -> tuple[int, int]:
    return (0 if digits == 1 else 10 ** (digits - 1)), 10**digits - 1


def _num_problems(split: str, digits: int, num_operands: int) -> float:
    """About how many distinct problems ``split`` holds."""
    low, high = _operand_range(digits)
    return (high - low + 1) ** num_operands * (_TEST_FRACTION if split == "test" else 1 - _TEST_FRACTION)


class TaskSizeError(DatasetError):
    """More problems were asked of a built-in task than it holds: ``summary`` says so, ``limit`` is the most it can
    give (a command line names its own options for the remedy)."""

    def __init__(self, summary: str, limit: int):
        super().__init__(f"{summary} Use more digits or operands, or fewer examples.")
        self.summary, self.limit = summary, limit


def _sample_problems(
    task: str, split: str, num: int, seed: int, digits: int, num_operands: int
) -> list[tuple[str, list[int]]]:
    """``num`` distinct problems ``(text, operands)`` of ``split``, in a seeded random order."""
    low, high = _operand_range(digits)
    available = _num_problems(split, digits, num_operands)
    if num > 0.5 * available:
        raise TaskSizeError(
            f"Built-in task {task!r} with {digits}-digit numbers and {num_operands} operands has only about "
            f"{int(available)} {split} problems; {num} were asked for.",
            int(0.5 * available),
        )
    symbol = _OPERATORS[task][0]
    rng = random.Random(f"{task}/{split}/{digits}/{num_operands}/{seed}")
    problems: dict[str, list[int]] = {}
    while len(problems) < num:
        operands = [rng.randint(low, high) for _ in range(num_operands)]
        text = symbol.join(map(str, operands))
        if text not in problems and _split_of(text) == split:
            problems[text] = operands
    return list(problems.items())


def generate_arithmetic(
    task: str = "addition",
    split: str = "train",
    num_examples: int = 1000,
    seed: int = 0,
    digits: int = 2,
    num_operands: int = 2,
    few_shot: int = 4,
    prompt_format: PromptFormat = "chat",
    system_prompt: str | None = None,
    prompt_template: str | None = None,
    system_role: bool = True,
) -> datasets.Dataset:
    """A built-in arithmetic task as a ``Dataset`` with ``prompt`` and ``answer`` (the result, a string).

    Plain prompts are few-shot continuations for base models: ``few_shot`` solved training problems, one a
    line, then the question (``"12+35=47\\n61+20=81\\n23+58="``); score them with the ``first_number`` reward.
    Chat prompts ask ``"What is 23 + 58?"`` through ``prompt_template`` (default: answer in ``\\boxed{}``).
    The same arguments give the same data set; train and test problems never overlap.
    """
    if task not in _OPERATORS:
        raise DatasetError(f"Unknown built-in task {task!r}; built-in tasks: {', '.join(BUILTIN_TASKS)}.")
    if digits < 1 or num_operands < 2:
        raise ValueError(f"Need digits >= 1 and num_operands >= 2, got {digits} and {num_operands}.")
    check_few_shot(few_shot, "few_shot")
    check_prompt_template(prompt_template)  # unused by plain prompts, but a wrong one is refused all the same
    split = "test" if split in TEST_SPLITS else split
    if split != "train" and split != "test":
        raise DatasetError(f"Built-in task {task!r} has the splits 'train' and 'test', not {split!r}.")
    symbol, evaluate = _OPERATORS[task]
    problems = _sample_problems(task, split, num_examples, seed, digits, num_operands)
    pool_size = min(8 * few_shot, int(0.5 * _num_problems("train", digits, num_operands)))
    shots = _sample_problems(task, "train", pool_size, seed + 1, digits, num_operands) if few_shot else []
    if len(shots) <= few_shot and few_shot:
        raise DatasetError(f"Built-in task {task!r}: too few problems for {few_shot} few-shot examples.")
    shot_rng = random.Random(f"{task}/shots/{seed}")
    prompts: list[Any] = []
    for text, operands in problems:
        if prompt_format == "plain":
            # One extra draw so that the question itself can be dropped from its own examples.
            drawn = shot_rng.sample(shots, few_shot + 1) if few_shot else []
            drawn = [(t, ops) for t, ops in drawn if t != text][:few_shot]
            lines = [f"{t}={evaluate(ops)}" for t, ops in drawn]
            body = "\n".join([*lines, f"{text}="])
            prompts.append(f"{system_prompt}\n\n{body}" if system_prompt else body)
        else:
            question = f"What is {f' {symbol} '.join(map(str, operands))}?"
            prompts.append(build_prompt(question, "chat", system_prompt, prompt_template, system_role))
    answers = [str(evaluate(operands)) for _, operands in problems]
    return datasets.Dataset.from_dict({"prompt": prompts, "answer": answers})

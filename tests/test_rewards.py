"""Reward functions: answer extraction, registry, NaN-on-error wrapper, math-verify with a hard timeout."""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import re
import threading
import time

import pytest

from pkpo_trl.rewards import (
    REWARDS,
    TRL_CONTEXT_KWARGS,
    RewardConfigError,
    completion_text,
    extract_final_answer,
    get_reward_funcs,
    math_verify_equivalent,
    safe_reward_func,
)


def reward(name: str, completions: list, answers: list, **kwargs) -> list:
    (func,) = get_reward_funcs([name], **kwargs)
    return func(prompts=["q"] * len(completions), completions=completions, answer=answers)


# --- extraction ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so \\boxed{\\frac{1}{2}} and then \\boxed{42}", "42"),
        ("nested \\boxed{\\frac{3}{\\sqrt{2}}} ok", "\\frac{3}{\\sqrt{2}}"),
        ("Natalia sold 48 clips.\n#### 72", "72"),
        ("blah 3 blah\nAnswer: 17.", "17."),
        ("The final answer is 5", "5"),
        ("12 apples and 1,234 pears", "1,234"),
        ("no numbers here", None),
        ("unbalanced \\boxed{12", "12"),
    ],
)
def test_extract_final_answer(text, expected):
    assert extract_final_answer(text) == expected


def test_completion_text_plain_and_conversational():
    assert completion_text("42") == "42"
    assert completion_text([{"role": "assistant", "content": "it is 42"}]) == "it is 42"
    parts = [{"role": "assistant", "content": [{"type": "text", "text": "4"}, {"type": "text", "text": "2"}]}]
    assert completion_text(parts) == "42"
    with pytest.raises(TypeError):
        completion_text(42)


# --- built-in rewards ------------------------------------------------------------------------------------


def test_registry_names():
    assert {"math_verify", "exact_match", "numeric_match", "first_number", "format"} <= set(REWARDS)


@pytest.mark.parametrize("name", ["exact_match", "numeric_match", "math_verify"])
def test_correct_wrong_malformed(name):
    completions = [
        "First 3, then 4. \\boxed{72}",  # correct
        "#### 71",  # wrong
        "I don't know }{ \\boxed{",  # malformed
        "",  # empty
    ]
    assert reward(name, completions, ["72"] * 4) == [1.0, 0.0, 0.0, 0.0]


def test_conversational_completions():
    completions = [[{"role": "assistant", "content": "Answer: 1,000"}], [{"role": "assistant", "content": "999"}]]
    for name in ("exact_match", "numeric_match", "math_verify"):
        assert reward(name, completions, ["1000", "1000"]) == [1.0, 0.0], name


def test_numeric_match_values():
    completions = ["\\boxed{0.5}", "\\boxed{\\frac{1}{2}}", "Answer: 1/2", "\\boxed{12.0}", "\\boxed{-3}"]
    assert reward("numeric_match", completions, ["1/2", "0.5", "0.5", "12", "-3"]) == [1.0] * 5
    # Gold answers given as full solutions are reduced to their final answer.
    assert reward("numeric_match", ["#### 72"], ["She sold 24 + 48 = 72 clips.\n#### 72"]) == [1.0]
    assert reward("numeric_match", ["\\boxed{3}"], ["so \\boxed{3}"]) == [1.0]
    assert reward("numeric_match", ["\\boxed{18.9}", "5 percent"], ["\\$18.90", "5\\%"]) == [1.0, 1.0]
    # A gold answer that is not a number: not applicable.
    assert reward("numeric_match", ["\\boxed{1}", "\\boxed{1}"], ["x+1", "(1, 2)"]) == [None, None]


def test_exact_match_is_a_string_comparison():
    assert reward("exact_match", ["\\boxed{12.0}", "\\boxed{ \\text{Paris} }"], ["12", "paris"]) == [0.0, 1.0]


def test_first_number_for_few_shot_continuations():
    completions = ["81\n45+12=57\n", " 81", "8\n81", "-81", ""]
    assert reward("first_number", completions, ["81"] * 5) == [1.0, 1.0, 0.0, 0.0, 0.0]


def test_format_reward():
    completions = ["so \\boxed{3}", "#### 3", "The answer is 3", "Answer: 3", "3", "\\boxed{}"]
    assert reward("format", completions, ["3"] * 6) == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]


def test_math_verify_equivalences():
    assert math_verify_equivalent("\\frac{1}{2}", "\\boxed{0.5}") == 1.0
    assert math_verify_equivalent("x^2+2x+1", "$\\boxed{(x+1)^2}$") == 1.0
    assert math_verify_equivalent("\\left( 3, \\frac{\\pi}{2} \\right)", "\\boxed{(3, \\frac{\\pi}{2})}") == 1.0
    assert math_verify_equivalent("#### 1,000", "\\boxed{1000}") == 1.0
    assert math_verify_equivalent("7", "\\boxed{8}") == 0.0


def test_math_verify_reads_answers_as_trl_accuracy_reward_does():
    """\\boxed{} first; a number without an anchor (\\boxed{}, 'Answer:', 'answer is') is not an answer."""
    completions = ["It is 72", "The answer is $71$, so \\boxed{72}", "I think 72. \\boxed{71}", "The answer is 72"]
    assert reward("math_verify", completions, ["72"] * 4) == [0.0, 1.0, 0.0, 1.0]


def test_answer_column_is_configurable():
    (func,) = get_reward_funcs(["numeric_match"], answer_column="target")
    assert func(prompts=["q"], completions=["#### 5"], target=["5"]) == [1.0]
    with pytest.raises(RewardConfigError, match="'target'"):
        func(prompts=["q"], completions=["#### 5"], answer=["5"])


# --- robustness ------------------------------------------------------------------------------------------


PATHOLOGICAL = [
    "\\boxed{9^{9^{9^{9^{9}}}}}",
    "\\boxed{" + "(" * 3000 + "1" + ")" * 3000 + "}",
    "$" + "+".join(f"x^{{{i}}}" for i in range(3000)) + "$",
    "\\boxed{" + "9" * 100_000 + "}",
]


def test_pathological_answers_are_bounded():
    """Every answer gets a verdict, and math-verify stays within its per-completion timeout."""
    for name in ("exact_match", "numeric_match", "first_number", "format"):
        start = time.monotonic()
        assert all(r in (0.0, 1.0) for r in reward(name, PATHOLOGICAL, ["1"] * len(PATHOLOGICAL)))
        assert time.monotonic() - start < 5, name
    math_verify_equivalent("1", "\\boxed{1}")  # start the worker outside the timed region
    timeout = 2.0
    for completion in PATHOLOGICAL:
        start = time.monotonic()
        assert math_verify_equivalent("1", completion, timeout=timeout) == 0.0
        assert time.monotonic() - start < timeout + 8  # + a worker restart on a busy machine


def test_math_verify_hard_timeout_kills_and_recovers():
    """A timeout below math-verify's own (1 s minimum) soft timeout: the parent kills the worker, then a
    new worker answers the next request."""
    math_verify_equivalent("1", "\\boxed{1}")
    start = time.monotonic()
    assert math_verify_equivalent("1", PATHOLOGICAL[0], timeout=0.3) == 0.0
    assert time.monotonic() - start < 0.3 + 1.5
    assert math_verify_equivalent("2", "\\boxed{2}") == 1.0


def test_math_verify_outside_the_main_thread():
    out: list = []
    worker = threading.Thread(target=lambda: out.append(reward("math_verify", ["\\boxed{2}", "3"], ["2", "2"])))
    worker.start()
    worker.join(60)
    assert out == [[1.0, 0.0]]


def test_unparseable_gold_is_not_applicable():
    assert math_verify_equivalent("", "\\boxed{2}") is None


# --- NaN wrapper and custom rewards ----------------------------------------------------------------------


def fragile_reward(completions, **kwargs):
    """Raises on a completion that says 'boom'; 1.0 otherwise."""
    if any("boom" in c for c in completions):
        raise RuntimeError("boom!")
    return [1.0] * len(completions)


def column_reward(completions, answer, **kwargs):
    return [float(c == a) for c, a in zip(completions, answer, strict=True)]


async def async_fragile_reward(completions, **kwargs):
    return fragile_reward(completions, **kwargs)


def test_raising_reward_gives_nan_for_that_completion_only(caplog):
    wrapped = safe_reward_func(fragile_reward)
    assert wrapped.__name__ == "fragile_reward"
    with caplog.at_level(logging.WARNING, logger="pkpo_trl.rewards"):
        out = wrapped(prompts=["a", "b", "c"], completions=["ok", "boom", "fine"], trainer_state=None)
    assert out[0] == 1.0 and math.isnan(out[1]) and out[2] == 1.0
    assert "fragile_reward" in caplog.text and "RuntimeError" in caplog.text and "boom!" in caplog.text


def test_async_reward_stays_async():
    wrapped = safe_reward_func(async_fragile_reward)
    assert asyncio.iscoroutinefunction(wrapped) and wrapped.__name__ == "async_fragile_reward"
    out = asyncio.run(wrapped(prompts=["a", "b"], completions=["boom", "ok"]))
    assert math.isnan(out[0]) and out[1] == 1.0


def test_wrong_length_is_a_bug_not_a_nan():
    wrapped = safe_reward_func(lambda completions, **kwargs: [1.0])
    with pytest.raises(ValueError, match="must return a list of 2"):
        wrapped(completions=["a", "b"])


def test_builtin_reward_scorer_error_gives_nan(monkeypatch, caplog):
    def broken(completion, gold):
        if completion == "x":
            raise ZeroDivisionError("bad luck")
        return None

    monkeypatch.setitem(REWARDS, "broken", broken)
    with caplog.at_level(logging.WARNING, logger="pkpo_trl.rewards"):
        out = reward("broken", ["x", "y"], ["1", "1"])
    assert math.isnan(out[0]) and out[1] is None
    assert "'broken'" in caplog.text and "ZeroDivisionError" in caplog.text


def test_custom_reward_by_import_path(tmp_path, monkeypatch):
    (tmp_path / "my_rewards_mod.py").write_text(
        "def length_reward(completions, **kwargs):\n    return [float(len(c)) for c in completions]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    funcs = get_reward_funcs(["my_rewards_mod:length_reward", "format", f"{__name__}:column_reward"])
    assert [f.__name__ for f in funcs] == ["length_reward", "format", "column_reward"]
    assert funcs[0](prompts=["p"], completions=["abc"]) == [3.0]
    assert funcs[2](prompts=["p", "q"], completions=["1", "2"], answer=["1", "3"]) == [1.0, 0.0]


def test_custom_reward_by_dotted_path_as_trl_takes_it(tmp_path, monkeypatch):
    (tmp_path / "my_dotted_pkg").mkdir()
    (tmp_path / "my_dotted_pkg" / "__init__.py").write_text("")
    (tmp_path / "my_dotted_pkg" / "rewards.py").write_text(
        "def length_reward(completions, **kwargs):\n    return [float(len(c)) for c in completions]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    funcs = get_reward_funcs(["my_dotted_pkg.rewards.length_reward", f"{__name__}.column_reward"])
    assert [f.__name__ for f in funcs] == ["length_reward", "column_reward"]
    assert funcs[0](prompts=["p"], completions=["abc"]) == [3.0]
    assert funcs[1](prompts=["p", "q"], completions=["1", "2"], answer=["1", "3"]) == [1.0, 0.0]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nope", "Registered rewards: exact_match, first_number, format, math_verify, numeric_match"),
        ("no_such_module_xyz:f", "Cannot import module 'no_such_module_xyz'"),
        (f"{__name__}:missing", "has no attribute 'missing'"),
        ("sys:maxsize", "not callable"),
        (":f", "'module:function'"),
        ("no_such_module_xyz.f", "Cannot import module 'no_such_module_xyz'"),
        (f"{__name__}.missing", "has no attribute 'missing'"),
        ("sys.maxsize", "not callable"),
    ],
)
def test_unknown_rewards_raise_clear_errors(name, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        get_reward_funcs([name])


def test_trl_context_kwargs_are_what_grpo_trainer_passes():
    """The one list of TRL's non-column reward kwargs matches what GRPOTrainer._calculate_rewards sets."""
    from trl import GRPOTrainer

    source = inspect.getsource(GRPOTrainer._calculate_rewards)
    assert set(re.findall(r'reward_kwargs\["(\w+)"\]\s*=\s*self\.', source)) == set(TRL_CONTEXT_KWARGS)

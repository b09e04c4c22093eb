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
                  judged by the ``math-verify`` package; the check runs in a worker process with a hard
                  per-completion timeout, so one pathological answer cannot hang a training step
``exact_match``   1.0 if the final answer (``\\boxed{}``, ``#### x``, ``Answer: x``, else the last
                  number) equals the gold answer as a string, after light normalisation
``numeric_match`` 1.0 if the final answer has the same numeric value as the gold answer
``first_number``  1.0 if the *first* number in the completion equals the gold answer: for few-shot
                  plain-text prompts (``"12+35=47\\n23+58="``) where a base model answers and then
                  continues the pattern
``format``        1.0 if the completion states its final answer in a required format (``\\boxed{}``,
                  ``#### x`` or ``Answer: x``)
================  ==================================================================================

Any other function is selected by import path, ``"my_module:my_reward"``. Every function that
:func:`get_reward_funcs` returns is wrapped by :func:`safe_reward_func`: a function that raises for one
completion gives NaN for that completion (and a logged warning), not a crashed run.

Adding a reward is one function and one decorator::

    @register_reward("my_reward")
    def my_reward(completion: str, gold: str) -> float | None: ...
"""

from __future__ import annotations

import atexit
import functools
import importlib
import inspect
import json
import logging
import math
import os
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

__all__ = [
    "DEFAULT_ANSWER_COLUMN",
    "MATH_VERIFY_TIMEOUT",
    "REWARDS",
    "RewardConfigError",
    "completion_text",
    "extract_final_answer",
    "get_reward_funcs",
    "make_reward_func",
    "math_verify_equivalent",
    "register_reward",
    "safe_reward_func",
]

logger = logging.getLogger(__name__)

DEFAULT_ANSWER_COLUMN = "answer"
MATH_VERIFY_TIMEOUT = 5.0  # seconds per completion, parsing and comparison together

# A per-completion scorer: (completion text, gold answer) -> reward, or None when not applicable.
Scorer = Callable[[str, str], float | None]
REWARDS: dict[str, Scorer] = {}

# Keyword arguments TRL passes that are not per-completion columns.
_TRL_CONTEXT_KWARGS = ("trainer_state", "log_extra", "log_metric", "environments")


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


# ---------------------------------------------------------------------------------------------------------
# Completions and answers as text
# ---------------------------------------------------------------------------------------------------------


def completion_text(completion: Any) -> str:
    """The text of a completion: a string as is; for a conversational completion (a list of messages),
    the content of its last assistant message (content parts of type ``"text"`` are joined)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, list | tuple):
        messages = [m for m in completion if isinstance(m, dict)]
        assistant = [m for m in messages if m.get("role", "assistant") == "assistant"] or messages
        if not assistant:
            return ""
        content = assistant[-1].get("content") or ""
        if isinstance(content, list):  # multimodal-style content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        return str(content)
    raise TypeError(f"A completion must be a string or a list of messages, got {type(completion).__name__}.")


_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+")
_HASHES = re.compile(r"####\s*([^\n]*)")
_ANSWER_IS = re.compile(r"(?:final answer|answer)\s*(?:is|:)\s*([^\n]*)", re.IGNORECASE)
_MAX_NUMBER_CHARS = 200  # longer digit strings are compared as strings, never converted


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces balanced; None if absent."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth, begin = 1, i
    while i < len(text):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[begin:i]
        i += 1
    return None  # unbalanced: no answer


def extract_final_answer(text: str) -> str | None:
    """The final answer stated in ``text``, in order of precedence: the last ``\\boxed{...}``, the text
    after the last ``####`` (GSM8K), the text after the last ``Answer:`` / ``answer is``, else the last
    number. None if there is none of these."""
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    for pattern in (_HASHES, _ANSWER_IS):
        matches = pattern.findall(text)
        if matches and matches[-1].strip():
            return matches[-1].strip()
    numbers = _NUMBER.findall(text)
    return numbers[-1] if numbers else None


def _gold_answer(gold: Any) -> str:
    """The gold answer as a string; a full solution (``\\boxed{}`` or ``####`` inside) is reduced to its
    final answer, so that raw GSM8K / MATH columns work too."""
    gold = str(gold).strip()
    if "\\boxed" in gold or "\\fbox" in gold or "####" in gold:
        return extract_final_answer(gold) or gold
    return gold


def _normalize(answer: str) -> str:
    """Light normalisation for string comparison: no surrounding ``$``/spaces/final period, no
    ``\\text{}``/``\\mathrm{}`` wrappers, no thousands separators, collapsed whitespace, lower case."""
    answer = answer.strip().strip("$").strip()
    answer = re.sub(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}", r"\1", answer)
    answer = re.sub(r"(?<=\d),(?=\d{3}\b)", "", answer)
    answer = re.sub(r"\s+", " ", answer).rstrip(".").strip()
    return answer.lower()


def _to_number(text: str) -> Fraction | str | None:
    """The value of the last number in ``text`` (``\\frac{a}{b}``, ``a/b``, ``1,234.5``, ``-3`` ...), exact
    as a Fraction; an absurdly long digit string is returned as its normalised string; None if no number."""
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    frac = re.findall(r"(-?)\\frac\{\s*(-?\d+)\s*\}\{\s*(-?\d+)\s*\}", text) or re.findall(
        r"(-?)\b(\d+)\s*/\s*(\d+)\b", text
    )
    if frac:
        sign, num, den = frac[-1]
        if len(num) + len(den) <= _MAX_NUMBER_CHARS and int(den) != 0:
            value = Fraction(int(num), int(den))
            return -value if sign else value
    numbers = _NUMBER.findall(text)
    if not numbers:
        return None
    number = numbers[-1].replace(",", "")
    if len(number) > _MAX_NUMBER_CHARS:
        return number.lstrip("0") or "0"
    return Fraction(number)


_PURE_NUMBER = re.compile(rf"-?\\[dt]?frac\{{-?\d+\}}\{{-?\d+\}}|-?\d+/\d+|{_NUMBER.pattern}")


def _gold_number(gold: Any) -> Fraction | str | None:
    """The value of a gold answer that is a number (``72``, ``1,000``, ``\\$18.90``, ``10\\%``, ``\\frac{1}{2}``);
    None if it is anything else (``x+1``, ``(1, 2)``)."""
    text = re.sub(r"\\text\{\s*\}|\\[$%!,]|[$%\s]", "", _gold_answer(gold)).rstrip(".")
    return _to_number(text) if _PURE_NUMBER.fullmatch(text) else None


def _numbers_equal(a: Fraction | str | None, b: Fraction | str | None) -> bool:
    """Equal values (relative tolerance 1e-6, for rounded decimals); strings compare exactly."""
    if a is None or b is None:
        return False
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return abs(a - b) <= Fraction(1, 10**6) * max(1, abs(b))


# ---------------------------------------------------------------------------------------------------------
# Built-in rewards: per-completion scorers
# ---------------------------------------------------------------------------------------------------------


@register_reward("exact_match")
def exact_match(completion: str, gold: str) -> float:
    """1.0 if the completion's final answer equals the gold answer as a (normalised) string."""
    answer = extract_final_answer(completion)
    return float(answer is not None and _normalize(answer) == _normalize(_gold_answer(gold)))


@register_reward("numeric_match")
def numeric_match(completion: str, gold: str) -> float | None:
    """1.0 if the completion's final answer has the gold answer's numeric value; None if the gold answer
    is not a number (the reward does not apply)."""
    expected = _gold_number(gold)
    if expected is None:
        return None
    answer = extract_final_answer(completion)
    return float(answer is not None and _numbers_equal(_to_number(answer), expected))


@register_reward("first_number")
def first_number(completion: str, gold: str) -> float | None:
    """1.0 if the first number in the completion equals the gold answer (few-shot continuation tasks)."""
    expected = _gold_number(gold)
    if expected is None:
        return None
    match = _NUMBER.search(completion)
    return float(match is not None and _numbers_equal(_to_number(match.group()), expected))


_FORMAT = re.compile(r"\\boxed\{.+\}|####\s*\S|answer\s*(?:is|:)\s*\S", re.IGNORECASE | re.DOTALL)


@register_reward("format")
def answer_format(completion: str, gold: str) -> float:
    """1.0 if the completion states a final answer explicitly: ``\\boxed{...}``, ``#### x`` or ``Answer: x``.
    (The gold answer is not used.)"""
    return float(_FORMAT.search(completion) is not None)


@register_reward("math_verify")
def math_verify_reward(completion: str, gold: str) -> float | None:
    """1.0 if ``math-verify`` finds the completion's answer equivalent to the gold answer, 0.0 if not or if
    the check runs past ``MATH_VERIFY_TIMEOUT`` seconds; None if the gold answer cannot be parsed."""
    return math_verify_equivalent(gold, completion, timeout=MATH_VERIFY_TIMEOUT)


# ---------------------------------------------------------------------------------------------------------
# math-verify in a worker process
#
# math-verify's own timeouts use signal.alarm: they only work in the main thread, and cannot interrupt C
# code (sympy evaluating 9^(9^(9^9)) runs in a single big-integer power). So the check runs in a separate
# Python process, talking one JSON line per request over pipes; the parent waits at most `timeout` seconds
# for the answer and kills the worker otherwise (a new one starts on the next request). The worker is a
# plain subprocess running this file as a script, so it never re-imports the user's __main__ (as
# multiprocessing's spawn/forkserver would) and never forks a multi-threaded process.
# ---------------------------------------------------------------------------------------------------------

_WORKER_FLAG = "--math-verify-worker"
_WORKER_START_TIMEOUT = 120.0  # importing sympy on a busy machine can be slow


def _math_verify_in_process(gold: str, prediction: str, timeout: int | None) -> bool | None:
    """math-verify's parse + verify; None if the gold answer cannot be parsed. ``timeout`` is passed to
    math-verify's own (signal-based, main-thread only) timeouts."""
    from math_verify import parse, verify

    gold = str(gold).strip()
    if "####" in gold:
        gold = _gold_answer(gold)
    # A bare gold answer ("72", "\frac{1}{2}") is wrapped in $...$ so the LaTeX extractor sees it.
    delimited = "$" in gold or "\\boxed" in gold or "\\(" in gold or "\\[" in gold
    gold_parsed = parse(gold if delimited else f"${gold}$", parsing_timeout=timeout)
    if not gold_parsed and not delimited:
        gold_parsed = parse(gold, parsing_timeout=timeout)
    if not gold_parsed:
        return None
    prediction_parsed = parse(prediction, parsing_timeout=timeout)
    return bool(verify(gold_parsed, prediction_parsed, timeout_seconds=timeout))


def _worker_main() -> None:
    """The worker's loop: one JSON request ``{"gold", "prediction", "timeout"}`` per stdin line, one JSON
    reply ``{"result": bool | None}`` or ``{"error": str}`` per stdout line. Exits at end of input."""
    logging.basicConfig(level=logging.ERROR)
    protocol = sys.stdout
    sys.stdout = sys.stderr  # stray prints must not corrupt the protocol
    import math_verify  # noqa: F401  (import before announcing readiness)

    protocol.write('{"ready": true}\n')
    protocol.flush()
    for line in sys.stdin:
        try:
            request = json.loads(line)
            reply = {"result": _math_verify_in_process(request["gold"], request["prediction"], request["timeout"])}
        except BaseException as exc:  # math-verify's TimeoutException is a BaseException
            reply = {"error": f"{type(exc).__name__}: {exc}"[:1000]}
        protocol.write(json.dumps(reply) + "\n")
        protocol.flush()


class _MathVerifyWorker:
    """The parent's handle on the worker process; thread-safe (one request at a time)."""

    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None
        self._buffer = b""
        self._lock = threading.Lock()
        atexit.register(self.close)

    def _start(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # -P: do not put this file's directory (pkpo_trl/) on sys.path, where data.py etc. could shadow modules.
        self._process = subprocess.Popen(
            [sys.executable, "-P", os.path.abspath(__file__), _WORKER_FLAG],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self._buffer = b""
        ready = self._read_line(time.monotonic() + _WORKER_START_TIMEOUT)
        if ready is None or not json.loads(ready).get("ready"):
            self.close()
            raise RuntimeError(
                f"The math-verify worker process did not start within {_WORKER_START_TIMEOUT:.0f} s; is "
                "`math-verify` installed (pip install math-verify)?"
            )

    def _read_line(self, deadline: float) -> bytes | None:
        """One line from the worker, or None if none came before ``deadline`` or the worker died."""
        assert self._process is not None and self._process.stdout is not None
        fd = self._process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:  # worker exited
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def check(self, gold: str, prediction: str, timeout: float) -> bool | None:
        """math-verify's verdict, killing the worker (and answering False) after ``timeout`` seconds."""
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._start()
            assert self._process is not None and self._process.stdin is not None
            inner_timeout = max(1, int(timeout / 2))  # math-verify's own soft timeout, per parse/compare
            request = {"gold": gold, "prediction": prediction, "timeout": inner_timeout}
            try:
                self._process.stdin.write((json.dumps(request) + "\n").encode())
                self._process.stdin.flush()
            except BrokenPipeError:
                self.close()
                raise RuntimeError("The math-verify worker process died.") from None
            line = self._read_line(time.monotonic() + timeout)
            if line is None:
                self.close()
                logger.warning(
                    "math_verify: no verdict within %.1f s, reward 0.0 (answer: %.200r)", timeout, prediction
                )
                return False
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"math-verify failed: {reply['error']}")
        return reply["result"]

    def close(self) -> None:
        """Kill the worker, if any."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
            for stream in (self._process.stdin, self._process.stdout):
                if stream is not None:
                    stream.close()
            self._process = None


_WORKER: _MathVerifyWorker | None = None


def math_verify_equivalent(gold: str, prediction: str, timeout: float = MATH_VERIFY_TIMEOUT) -> float | None:
    """1.0 if ``prediction`` (a completion) is equivalent to ``gold`` per math-verify, else 0.0; None if the
    gold answer cannot be parsed. At most ``timeout`` seconds (plus a one-off worker start): a check that
    takes longer scores 0.0. Safe to call from any thread."""
    global _WORKER
    if os.name != "posix":  # no select() on pipes: math-verify's own (multiprocessing-based) timeout
        result = _math_verify_in_process(gold, prediction, max(1, math.ceil(timeout)))
    else:
        if _WORKER is None:
            _WORKER = _MathVerifyWorker()
        result = _WORKER.check(gold, prediction, timeout)
    return None if result is None else float(result)


# ---------------------------------------------------------------------------------------------------------
# TRL-compatible reward functions
# ---------------------------------------------------------------------------------------------------------


def _nan_on_error(name: str, index: int, exc: BaseException) -> float:
    logger.warning(
        "Reward function %r raised for completion %d, reward NaN: %s: %s", name, index, type(exc).__name__, exc
    )
    return math.nan


def make_reward_func(name: str, scorer: Scorer, answer_column: str = DEFAULT_ANSWER_COLUMN) -> Callable[..., list]:
    """A TRL reward function named ``name`` that applies ``scorer(completion_text, gold)`` to each completion,
    the gold answer read from the dataset column ``answer_column``. A completion for which the scorer raises
    gets NaN (and a warning)."""

    def reward_func(completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        if answer_column not in kwargs:
            columns = sorted(k for k in kwargs if k not in (*_TRL_CONTEXT_KWARGS, "prompts", "completion_ids"))
            raise RewardConfigError(
                f"Reward {name!r} needs the gold answer in the dataset column {answer_column!r}, but the data set "
                f"has the columns {columns}. Map your answer column to {answer_column!r} or set the answer column."
            )
        golds = kwargs[answer_column]
        rewards: list[float | None] = []
        for i, (completion, gold) in enumerate(zip(completions, golds, strict=True)):
            try:
                rewards.append(scorer(completion_text(completion), gold))
            except Exception as exc:
                rewards.append(_nan_on_error(name, i, exc))
        return rewards

    reward_func.__name__ = reward_func.__qualname__ = name
    reward_func.__doc__ = scorer.__doc__
    return reward_func


def _slice_kwargs(kwargs: dict[str, Any], index: int, size: int) -> dict[str, Any]:
    """The keyword arguments of one completion: per-completion lists cut to one element, the rest as is."""
    return {
        key: [value[index]]
        if key not in _TRL_CONTEXT_KWARGS and isinstance(value, list | tuple) and len(value) == size
        else value
        for key, value in kwargs.items()
    }


def _check_output(name: str, output: Any, size: int) -> list[float | None]:
    if not hasattr(output, "__len__") or isinstance(output, str) or len(output) != size:
        got = len(output) if hasattr(output, "__len__") else type(output).__name__
        raise ValueError(f"Reward function {name!r} must return a list of {size} floats or None, got {got}.")
    return list(output)


def safe_reward_func(func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a TRL reward function so that an exception costs only the completions it concerns.

    If ``func`` raises on the batch, it is called again on each completion alone (per-completion keyword
    arguments cut to that completion); a completion for which it still raises gets NaN and a logged warning
    naming the function and the exception. A :class:`RewardConfigError` is a setup mistake and propagates.
    ``__name__`` (TRL's metric name) is kept; async functions stay async. A function that returns the wrong
    number of rewards is a bug, and still raises.
    """
    name = getattr(func, "__name__", type(func).__name__)

    def size_of(kwargs: dict[str, Any]) -> int:
        return len(kwargs["completions"])

    if inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(getattr(func, "__call__", None)):  # noqa: B004

        @functools.wraps(func)
        async def async_wrapper(**kwargs: Any) -> list[float | None]:
            size = size_of(kwargs)
            try:
                return _check_output(name, await func(**kwargs), size)
            except RewardConfigError:
                raise
            except Exception:
                rewards: list[float | None] = []
                for i in range(size):
                    try:
                        rewards.append(_check_output(name, await func(**_slice_kwargs(kwargs, i, size)), 1)[0])
                    except Exception as exc:
                        rewards.append(_nan_on_error(name, i, exc))
                return rewards

        return async_wrapper

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> list[float | None]:
        size = size_of(kwargs)
        try:
            output = func(**kwargs)
        except RewardConfigError:
            raise
        except Exception:
            rewards: list[float | None] = []
            for i in range(size):
                try:
                    rewards.append(_check_output(name, func(**_slice_kwargs(kwargs, i, size)), 1)[0])
                except Exception as exc:
                    rewards.append(_nan_on_error(name, i, exc))
            return rewards
        return _check_output(name, output, size)

    return wrapper


def _import_reward(path: str) -> Callable[..., Any]:
    """The callable at ``"package.module:attribute"`` (the attribute may be dotted)."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"A custom reward must be given as 'module:function', got {path!r}.")
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


def get_reward_funcs(
    names: str | Sequence[str], answer_column: str = DEFAULT_ANSWER_COLUMN
) -> list[Callable[..., Any]]:
    """TRL reward functions for ``names``: registered names (see ``REWARDS``) or import paths
    ``"module:function"`` of custom TRL reward functions. The built-in rewards read the gold answer from the
    dataset column ``answer_column``. Every function is wrapped by :func:`safe_reward_func`; each keeps its
    name (``__name__``), which TRL uses in its metric names (``rewards/<name>/mean``).

    Raises:
        ValueError: for an unknown name (the message lists the registry) or an import path that does not
            resolve to a callable.
    """
    if isinstance(names, str):
        names = [names]
    funcs: list[Callable[..., Any]] = []
    for name in names:
        if name in REWARDS:
            func = make_reward_func(name, REWARDS[name], answer_column)
        elif ":" in name:
            func = _import_reward(name)
        else:
            raise ValueError(
                f"Unknown reward function {name!r}. Registered rewards: {', '.join(sorted(REWARDS))}; "
                "a custom reward is given by import path, 'my_module:my_reward'."
            )
        funcs.append(safe_reward_func(func))
    return funcs


if __name__ == "__main__" and sys.argv[1:] == [_WORKER_FLAG]:
    _worker_main()

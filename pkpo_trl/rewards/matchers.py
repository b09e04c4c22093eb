"""Answers as text: the final answer of a completion, the gold answer of a dataset row, and the
per-completion scorers ``(completion, gold) -> float | None`` that compare them without math-verify."""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any, Literal

AnswerFormat = Literal["auto", "raw", "gsm8k", "boxed"]

_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+")
_HASHES = re.compile(r"####\s*([^\n]*)")
_ANSWER_IS = re.compile(r"(?:final answer|answer)\s*(?:is|:)\s*([^\n]*)", re.IGNORECASE)
_MAX_NUMBER_CHARS = 200  # longer digit strings are compared as strings, never converted


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


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces balanced; None if absent."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    begin = text.index("{", start) + 1
    depth = 1
    for i in range(begin, len(text)):
        depth += (text[i] == "{") - (text[i] == "}")
        if depth == 0:
            return text[begin:i]
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


def extract_gold(text: Any, answer_format: AnswerFormat = "auto") -> str | None:
    """The gold answer in an answer column's ``text``: as is (``raw``), after the last ``####`` (``gsm8k``), the
    last ``\\boxed{}`` (``boxed``), or whichever of these the text calls for (``auto``). None if absent."""
    text = str(text).strip()
    if answer_format == "auto":
        boxed = "\\boxed{" in text or "\\fbox{" in text
        answer_format = "gsm8k" if "####" in text else "boxed" if boxed else "raw"
    if answer_format == "gsm8k":
        if "####" not in text:
            return None
        return text.rsplit("####", 1)[1].strip().replace(",", "") or None
    if answer_format == "boxed":
        boxed = last_boxed(text)
        return boxed.strip() if boxed is not None else None
    return text or None


def gold_answer(gold: Any) -> str:
    """The gold answer a reward compares with: a full solution (``####`` or ``\\boxed{}`` inside) reduced to its
    final answer by :func:`extract_gold`, so that raw GSM8K / MATH columns work too; anything else as is."""
    return extract_gold(gold) or str(gold).strip()


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
    text = re.sub(r"\\text\{\s*\}|\\[$%!,]|[$%\s]", "", gold_answer(gold)).rstrip(".")
    return _to_number(text) if _PURE_NUMBER.fullmatch(text) else None


def _number_reward(answer: str | None, gold: Any) -> float | None:
    """1.0 if the last number in ``answer`` has the gold answer's value (relative tolerance 1e-6, for rounded
    decimals; absurdly long numbers compare as strings), else 0.0; None if the gold answer is not a number."""
    expected = _gold_number(gold)
    if expected is None:
        return None
    value = None if answer is None else _to_number(answer)
    if value is None or isinstance(value, str) or isinstance(expected, str):
        return float(value == expected)
    return float(abs(value - expected) <= Fraction(1, 10**6) * max(1, abs(expected)))


# Per-completion scorers (registered by name in registry.py).


def exact_match(completion: str, gold: str) -> float:
    """1.0 if the completion's final answer equals the gold answer as a (normalised) string."""
    answer = extract_final_answer(completion)
    return float(answer is not None and _normalize(answer) == _normalize(gold_answer(gold)))


def numeric_match(completion: str, gold: str) -> float | None:
    """1.0 if the completion's final answer has the gold answer's numeric value; None if the gold answer
    is not a number (the reward does not apply)."""
    return _number_reward(extract_final_answer(completion), gold)


def first_number(completion: str, gold: str) -> float | None:
    """1.0 if the first number in the completion equals the gold answer (few-shot continuation tasks)."""
    match = _NUMBER.search(completion)
    return _number_reward(match.group() if match else None, gold)


_FORMAT = re.compile(r"\\boxed\{.+\}|####\s*\S|answer\s*(?:is|:)\s*\S", re.IGNORECASE | re.DOTALL)


def has_answer_format(completion: str, gold: str) -> float:
    """1.0 if the completion states a final answer explicitly: ``\\boxed{...}``, ``#### x`` or ``Answer: x``.
    (The gold answer is not used.)"""
    return float(_FORMAT.search(completion) is not None)

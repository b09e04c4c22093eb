"""Prompts from questions: templates, chat or plain text, and the system role a chat template may lack.

A prompt is conversational (``[{"role": "user", "content": ...}]``, optionally preceded by a system message) or
plain text. Gemma-2/3 chat templates have no system role: there the system prompt is folded into the first user
turn (see :func:`supports_system_role`). :class:`DatasetError` is the error of every data module
(:mod:`pkpo_trl.data`, :mod:`pkpo_trl.tasks`).
"""

from __future__ import annotations

import string
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["DatasetError", "PromptFormat", "build_prompt", "supports_system_role"]

PromptFormat = Literal["chat", "plain"]

DEFAULT_CHAT_TEMPLATE = "{question}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}."
DEFAULT_PLAIN_TEMPLATE = "Question: {question}\nAnswer:"

# Models whose chat template has no system role (Gemma-2 raises on it; Gemma-3 folds it in itself).
NO_SYSTEM_ROLE_MODEL_TYPES = frozenset({"gemma", "gemma2", "gemma3", "gemma3_text"})


class DatasetError(ValueError):
    """A data set cannot be loaded or does not have what was asked for."""


def check_few_shot(value: int, name: str) -> None:
    """A count >= 0 (0: no examples): a negative one trained silently as 0 (a slice of the drawn examples), or
    failed in random.sample with a message that names neither the option nor the fix."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DatasetError(
            f"{name}={value!r}: give a number of solved examples >= 0 to put before each question (0 for none)."
        )


_TEMPLATE_RULE = (
    "it may use only the placeholder {question} (where each question goes, once or more); write a literal brace "
    "twice, as in \\boxed{{}}"
)


def check_prompt_template(template: str | None) -> None:
    """Refuse a ``prompt_template`` that cannot place each question in its prompt, where it is given.

    ``str.format`` either fails on it prompt by prompt (a ``KeyError`` for an unknown ``{name}``, an ``IndexError``
    for a literal ``{}`` as in ``\\boxed{}``), after the model has loaded, or, worse, succeeds: a template without
    ``{question}`` (or with it escaped, ``{{question}}``) gives every problem the same prompt, and
    ``{question.upper}`` or ``{question[0]}`` one that is not the question. None or "" is the default template.
    """
    if template is None or template == "":
        return
    if not isinstance(template, str):
        raise DatasetError(f"prompt_template={template!r} must be a string: {_TEMPLATE_RULE}.")
    problem = None
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:  # an unmatched brace
        problem = f"is not a valid format string ({exc})"
    else:
        others = list(dict.fromkeys(f"{{{name}}}" for name in fields if name != "question"))
        if others:
            problem = f"uses {', '.join(others)}"
        elif not fields:
            problem = "has no {question} placeholder, so every problem would get this same prompt"
        else:
            try:  # a conversion or format spec that a question cannot take ({question!x}, {question:d})
                template.format(question="")
            except (ValueError, KeyError, IndexError) as exc:  # KeyError/IndexError: a nested {name} in the spec
                problem = f"is not a valid format string ({type(exc).__name__}: {exc})"
    if problem is not None:
        raise DatasetError(f"prompt_template={template!r} {problem}: {_TEMPLATE_RULE}.")


# ---------------------------------------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------------------------------------


def supports_system_role(tokenizer: PreTrainedTokenizerBase | None = None, model_type: str | None = None) -> bool:
    """Whether prompts may carry a system message: False for Gemma model types, or when the tokenizer's chat
    template raises on a system message (as Gemma-2's does); True when nothing says otherwise."""
    if model_type in NO_SYSTEM_ROLE_MODEL_TYPES:
        return False
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        return True
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    try:
        tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception:  # jinja2's TemplateError from raise_exception(), or anything a template raises
        return False
    return True


def build_prompt(
    question: str,
    prompt_format: PromptFormat = "chat",
    system_prompt: str | None = None,
    prompt_template: str | None = None,
    system_role: bool = True,
) -> str | list[dict[str, str]]:
    """The prompt for one question: ``prompt_template`` (a ``{question}`` format string) applied to it, as a
    plain string or as a conversation. Without ``system_role``, the system prompt opens the user turn
    (``system + "\\n\\n" + user``, as Gemma-3's own template does)."""
    check_prompt_template(prompt_template)
    template = prompt_template or (DEFAULT_CHAT_TEMPLATE if prompt_format == "chat" else DEFAULT_PLAIN_TEMPLATE)
    text = template.format(question=question)
    if prompt_format == "plain":
        return f"{system_prompt}\n\n{text}" if system_prompt else text
    if not system_prompt:
        return [{"role": "user", "content": text}]
    if system_role:
        return [{"role": "system", "content": system_prompt}, {"role": "user", "content": text}]
    return [{"role": "user", "content": f"{system_prompt}\n\n{text}"}]

"""Data sets for PKPO training, in one shape: a ``datasets.Dataset`` with a ``prompt`` and an ``answer`` column.

Two sources, one entry point, :func:`load_task`:

* **Built-in tasks** (``BUILTIN_TASKS``, :mod:`pkpo_trl.tasks`), generated in code from a seed, offline:
  ``addition`` and ``multiplication``, train and test problems disjoint by construction.
* **Hub (or local) data sets** by id, with a column mapping to ``prompt``/``answer``. Presets
  (``HUB_PRESETS``) cover ``openai/gsm8k`` and MATH-style sets; any other set works with explicit or
  guessed columns. Local ``.json``/``.jsonl``/``.csv``/``.parquet`` files load the same way.

Prompts (:mod:`pkpo_trl.prompts`) are conversational or plain text; Gemma-2/3 chat templates have no system
role, so there the system prompt is folded into the first user turn (:func:`supports_system_role`).

The command line reads :class:`DataArguments` and calls :func:`load_datasets`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
from trl import ScriptArguments

from .prompts import (
    DatasetError,
    PromptFormat,
    build_prompt,
    check_few_shot,
    check_prompt_template,
    supports_system_role,
)
from .rewards.matchers import AnswerFormat, extract_gold
from .tasks import BUILTIN_TASKS, TEST_SPLITS, generate_arithmetic

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "HUB_PRESETS",
    "DataArguments",
    "DatasetError",
    "DatasetPreset",
    "load_datasets",
    "load_task",
    "standardize_columns",
]

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------------------
# Command-line arguments
# ---------------------------------------------------------------------------------------------------------


@dataclass
class DataArguments(ScriptArguments):
    """Which data set to train and evaluate on, and how to turn it into prompts (read by ``pkpo-train`` and
    ``pkpo-eval``).

    The data set fields are those of ``trl.ScriptArguments`` (``dataset_name``, ``dataset_config``,
    ``dataset_train_split``, ``dataset_test_split``); ``dataset_name`` is declared again only for its default, the
    built-in ``addition`` task. An empty or ``None`` ``dataset_test_split`` means no evaluation set. The other two
    fields of ``trl.ScriptArguments`` are refused (an error when true): ``dataset_streaming``, since a split is
    loaded whole, to be subsampled and mapped, and ``ignore_bias_buffers``, a DDP workaround of TRL's DPO script
    that its GRPO script does not apply either.
    """

    dataset_name: str = field(
        default="addition",
        metadata={
            "help": "A built-in task (`addition`, `multiplication`; generated offline from `task_seed`), a Hugging "
            "Face Hub data set id (e.g. `openai/gsm8k`, `HuggingFaceH4/MATH-500`) or a local .json/.jsonl/.csv/"
            ".parquet file."
        },
    )
    num_train_examples: int | None = field(
        default=None,
        metadata={
            "help": "Number of training problems (a seeded random subset for hub data sets; all if unset, "
            "1000 for built-in tasks)."
        },
    )
    num_eval_examples: int | None = field(
        default=None,
        metadata={"help": "Number of evaluation problems (all if unset, 200 for built-in tasks)."},
    )
    task_seed: int = field(
        default=0,
        metadata={"help": "Seed that generates built-in task problems and picks hub subsets."},
    )
    task_digits: int = field(
        default=2,
        metadata={"help": "Built-in arithmetic tasks: digits of each operand (difficulty)."},
    )
    task_operands: int = field(
        default=2,
        metadata={"help": "Built-in arithmetic tasks: number of operands (difficulty)."},
    )
    task_few_shot: int = field(
        default=4,
        metadata={"help": "Built-in tasks, plain prompts: number of solved examples before the question (>= 0)."},
    )
    prompt_format: str = field(
        default="chat",
        metadata={
            "help": "`chat`: conversational prompts (`[{'role': 'user', 'content': ...}]`), for models with a chat "
            "template. `plain`: plain-text prompts, for base models (built-in tasks: few-shot `12+35=47` lines)."
        },
    )
    system_prompt: str | None = field(
        default=None,
        metadata={
            "help": "System prompt of chat prompts. Folded into the first user turn for chat templates without a "
            "system role (Gemma)."
        },
    )
    prompt_template: str | None = field(
        default=None,
        metadata={
            "help": "Python format string for the prompt text, with a `{question}` field, its only one (a literal "
            "brace is written twice: `\\boxed{{}}`). Default: ask for the final answer in `\\boxed{}` for chat "
            "prompts; `Question: ...\\nAnswer:` for plain prompts."
        },
    )
    prompt_column: str | None = field(
        default=None,
        metadata={"help": "Column holding the question (default: preset, else `prompt`/`question`/`problem`)."},
    )
    answer_column: str | None = field(
        default=None,
        metadata={"help": "Column holding the gold answer (default: preset, else `answer`/`solution`)."},
    )
    answer_format: str | None = field(
        default=None,
        metadata={
            "help": "How the gold answer is read from its column: `raw` (as is), `gsm8k` (after `####`), `boxed` "
            "(last `\\boxed{}` of a solution) or `auto` (by content). Default: preset, else `auto`."
        },
    )

    def __post_init__(self) -> None:
        if self.dataset_streaming or self.ignore_bias_buffers:
            raise ValueError(
                "dataset_streaming and ignore_bias_buffers (trl.ScriptArguments options) are not supported: a split "
                "is loaded whole, to be subsampled and mapped, and no DDP bias-buffer workaround is applied."
            )
        if self.prompt_format not in ("chat", "plain"):
            raise ValueError(f"prompt_format must be 'chat' or 'plain', got {self.prompt_format!r}.")
        if self.answer_format not in (None, "auto", "raw", "gsm8k", "boxed"):
            raise ValueError(f"answer_format must be auto/raw/gsm8k/boxed, got {self.answer_format!r}.")
        if self.dataset_test_split in ("", "None", "none"):
            self.dataset_test_split = None
        for name in ("num_train_examples", "num_eval_examples"):
            _check_num_examples(getattr(self, name), name)
        check_few_shot(self.task_few_shot, "task_few_shot")
        check_prompt_template(self.prompt_template)
        for name, least in (("task_digits", 1), ("task_operands", 2)):  # before any model loads, by option name
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise DatasetError(f"{name}={value!r}: a built-in task needs an integer >= {least} here.")


def _check_num_examples(value: int | None, name: str) -> None:
    """None (all rows) or a positive count: 0 or less would train or evaluate on nothing and still succeed."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise DatasetError(f"{name}={value!r}: give a number of examples >= 1, or leave it unset for all of them.")


# ---------------------------------------------------------------------------------------------------------
# Hub and local data sets
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetPreset:
    """How a known data set maps onto ``prompt``/``answer``."""

    prompt_column: str
    answer_column: str
    answer_format: AnswerFormat = "raw"
    config: str | None = None


HUB_PRESETS: dict[str, DatasetPreset] = {
    "openai/gsm8k": DatasetPreset("question", "answer", "gsm8k", config="main"),
    "HuggingFaceH4/MATH-500": DatasetPreset("problem", "answer", "raw"),
    "DigitalLearningGmbH/MATH-lighteval": DatasetPreset("problem", "solution", "boxed", config="default"),
    "EleutherAI/hendrycks_math": DatasetPreset("problem", "solution", "boxed"),
    "AI-MO/NuminaMath-CoT": DatasetPreset("problem", "solution", "boxed"),
}
_PROMPT_COLUMNS = ("prompt", "question", "problem", "input", "query")
_ANSWER_COLUMNS = ("answer", "final_answer", "solution", "target", "output")
_LOCAL_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


def _is_local_file(name: str | None) -> bool:
    return name is not None and Path(name).suffix in _LOCAL_BUILDERS and Path(name).is_file()


def _local_split(args: DataArguments, split: str) -> tuple[str, str]:
    """``(file, split)`` to load for ``split`` of a local data file ``args.dataset_name``.

    One file holds one split, the training split: a test split of it would be the training prompts again. A split
    that is itself a local data file is that file (a named test file); the training split's name is the file;
    any other split is refused rather than answered with the training rows.
    """
    if _is_local_file(split):
        return split, "test"
    if split in (args.dataset_train_split, "train"):
        return args.dataset_name, split
    raise DatasetError(
        f"{args.dataset_name!r} is one local file: its rows are the training split, so there is no {split!r} split "
        "in it (evaluating on it would report training prompts as held-out). Name a separate file as the split "
        "(--dataset_test_split test.jsonl; pkpo-eval: --split test.jsonl), or --split train to evaluate on the "
        "training prompts knowingly."
    )


def _describe(name: str, config: str | None, split: str) -> str:
    return f"data set {name!r}" + (f" (config {config!r})" if config else "") + f", split {split!r}"


def _local_file_problem(path: Path, exc: BaseException) -> str | None:
    """What is wrong with an existing local data file that ``datasets`` could not read (its own messages, a bare
    ``StopIteration`` or ``DatasetGenerationError``, say neither), or None."""
    size = path.stat().st_size
    if size == 0 or (size < 1 << 20 and not path.read_bytes().strip()):  # only whitespace
        return f"The local data file {str(path)!r} is empty: it needs one row per problem."
    causes, cause = [], exc
    while cause is not None and len(causes) < 10:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    if any(isinstance(c, UnicodeDecodeError) for c in causes):
        return f"The local data file {str(path)!r} is not UTF-8 text: save it as UTF-8 (e.g. iconv -t UTF-8)."
    return None


def _load_raw(name: str, config: str | None, split: str) -> datasets.Dataset:
    """``datasets.load_dataset`` for a hub id or a local file, with errors that say what was wanted."""
    path = Path(name)
    try:
        if path.suffix in _LOCAL_BUILDERS and path.is_file():
            loaded = datasets.load_dataset(_LOCAL_BUILDERS[path.suffix], data_files={split: str(path)}, split=split)
        else:
            loaded = datasets.load_dataset(name, config, split=split)
    except Exception as exc:
        if path.suffix in _LOCAL_BUILDERS and path.is_file() and (problem := _local_file_problem(path, exc)):
            raise DatasetError(problem) from exc
        hint = ""
        if path.suffix in _LOCAL_BUILDERS and path.is_file():
            hint = f" Check that the file is valid {_LOCAL_BUILDERS[path.suffix]}."
        elif "split" in str(exc).lower():
            hint = " Check the split name."
        elif path.suffix in _LOCAL_BUILDERS:
            hint = " No such file."
        else:
            hint = (
                " Check the id and config, your network, or for offline use (HF_HUB_OFFLINE=1) that the data set "
                f"is in the local cache. Built-in offline tasks: {', '.join(BUILTIN_TASKS)}."
            )
        raise DatasetError(
            f"Could not load {_describe(name, config, split)}: {type(exc).__name__}: {exc}.{hint}"
        ) from exc
    if isinstance(loaded, datasets.DatasetDict):  # load_dataset(split=...) returns a Dataset; be safe anyway
        loaded = loaded[split]
    return loaded


def standardize_columns(
    dataset: datasets.Dataset,
    prompt_column: str | None = None,
    answer_column: str | None = None,
    answer_format: AnswerFormat = "auto",
    prompt_format: PromptFormat = "chat",
    system_prompt: str | None = None,
    prompt_template: str | None = None,
    system_role: bool = True,
    source: str = "the data set",
) -> datasets.Dataset:
    """``dataset`` reduced to ``prompt`` (built with :func:`build_prompt`; an already conversational column is
    kept as is) and ``answer`` (read with :func:`extract_gold`). Columns not given are guessed from common
    names. Rows whose gold answer cannot be read are dropped (an error if that leaves none)."""
    check_prompt_template(prompt_template)  # here, not on the first row inside dataset.map
    columns = list(dataset.column_names)

    def pick(given: str | None, candidates: tuple[str, ...], role: str) -> str:
        if given is not None:
            if given not in columns:
                raise DatasetError(f"{source} has no {role} column {given!r}; its columns are {columns}.")
            return given
        for candidate in candidates:
            if candidate in columns:
                return candidate
        raise DatasetError(
            f"{source} has none of the usual {role} columns {list(candidates)}; its columns are {columns}. "
            f"Name the {role} column explicitly."
        )

    prompt_column = pick(prompt_column, _PROMPT_COLUMNS, "prompt")
    answer_column = pick(answer_column, _ANSWER_COLUMNS, "answer")
    if len(dataset) == 0:
        raise DatasetError(f"{source} is empty.")

    def convert(row: dict[str, Any]) -> dict[str, Any]:
        question = row[prompt_column]
        if isinstance(question, list):  # already a conversation
            prompt = question
        else:
            prompt = build_prompt(str(question), prompt_format, system_prompt, prompt_template, system_role)
        return {"prompt": prompt, "answer": extract_gold(row[answer_column], answer_format)}

    converted = dataset.map(convert, remove_columns=columns)
    converted = converted.filter(lambda row: row["answer"] is not None).select_columns(["prompt", "answer"])
    if len(converted) == 0:
        raise DatasetError(
            f"No gold answer could be read from column {answer_column!r} of {source} with answer_format "
            f"{answer_format!r}."
        )
    if len(converted) < len(dataset):
        logger.warning(
            "%s: dropped %d of %d rows whose gold answer could not be read from column %r with answer_format %r; "
            "%d remain.",
            source, len(dataset) - len(converted), len(dataset), answer_column, answer_format, len(converted),
        )  # fmt: skip
    return converted


# ---------------------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------------------


# load_task's keyword names for DataArguments fields, kept for plain callers (`load_task("addition", seed=3)`).
_LOAD_TASK_ALIASES = {
    "config": "dataset_config",
    "seed": "task_seed",
    "digits": "task_digits",
    "num_operands": "task_operands",
    "few_shot": "task_few_shot",
}


def load_task(
    task: str | DataArguments,
    split: str = "train",
    *,
    num_examples: int | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    model_type: str | None = None,
    **options: Any,
) -> datasets.Dataset:
    """One split of a task as a ``Dataset`` with ``prompt`` and ``answer`` columns.

    Args:
        task: a :class:`DataArguments`, or the ``dataset_name`` of one: a built-in task (``BUILTIN_TASKS``), a
            hub data set id or a local data file.
        split: ``"train"`` or ``"test"`` for built-in tasks; any split of a hub data set.
        num_examples: size of the result: a seeded random subset of a hub split (all rows if None); the number
            of generated problems for a built-in task (1000 for train, 200 for test if None).
        tokenizer, model_type: decide whether a system prompt can be a system message
            (:func:`supports_system_role`).
        **options: :class:`DataArguments` fields that override ``task``'s (``prompt_format="plain"``,
            ``answer_column=...``); ``config``, ``seed``, ``digits``, ``num_operands`` and ``few_shot`` name
            ``dataset_config``, ``task_seed``, ``task_digits``, ``task_operands`` and ``task_few_shot``.

    Raises:
        DatasetError: the data set cannot be loaded, a column is missing, or the split is empty.
    """
    _check_num_examples(num_examples, "num_examples")
    fields = {_LOAD_TASK_ALIASES.get(key, key): value for key, value in options.items()}
    args = DataArguments(dataset_name=task, **fields) if isinstance(task, str) else replace(task, **fields)
    system_role = supports_system_role(tokenizer, model_type) if args.system_prompt else True
    if args.dataset_name in BUILTIN_TASKS:
        if num_examples is None:
            num_examples = 200 if split in TEST_SPLITS else 1000
        return generate_arithmetic(
            args.dataset_name, split, num_examples, args.task_seed, args.task_digits, args.task_operands,
            args.task_few_shot, args.prompt_format, args.system_prompt, args.prompt_template, system_role,
        )  # fmt: skip
    name = args.dataset_name
    if _is_local_file(name) or _is_local_file(split):
        name, split = _local_split(args, split) if _is_local_file(name) else (split, "test")
    preset = HUB_PRESETS.get(name)
    config = args.dataset_config if args.dataset_config is not None else (preset.config if preset else None)
    source = _describe(name, config, split)
    raw = _load_raw(name, config, split)
    if len(raw) == 0:
        raise DatasetError(f"The {source} is empty.")
    if num_examples is not None and num_examples < len(raw):
        raw = raw.shuffle(seed=args.task_seed).select(range(num_examples))
    return standardize_columns(
        raw,
        prompt_column=args.prompt_column or (preset.prompt_column if preset else None),
        answer_column=args.answer_column or (preset.answer_column if preset else None),
        answer_format=args.answer_format or (preset.answer_format if preset else "auto"),
        prompt_format=args.prompt_format,
        system_prompt=args.system_prompt,
        prompt_template=args.prompt_template,
        system_role=system_role,
        source=f"The {source}",
    )


def load_datasets(
    args: DataArguments, tokenizer: PreTrainedTokenizerBase | None = None, model_type: str | None = None
) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    """The train and (if ``args.dataset_test_split``) evaluation sets that ``args`` describe.

    A local data file is a training split only: the default ``dataset_test_split="test"`` then means no evaluation
    set (it would be the same file), with a log line; a test file is named with ``dataset_test_split``.
    """

    def load(split: str, num_examples: int | None) -> datasets.Dataset:
        return load_task(args, split, num_examples=num_examples, tokenizer=tokenizer, model_type=model_type)

    train = load(args.dataset_train_split, args.num_train_examples)
    test_split = args.dataset_test_split
    if test_split == DataArguments.dataset_test_split and _is_local_file(args.dataset_name):
        logger.info(
            "%s is one local file, the training split: no evaluation set (name a test file with "
            "--dataset_test_split FILE).",
            args.dataset_name,
        )
        test_split = None
    test = load(test_split, args.num_eval_examples) if test_split else None
    return train, test

"""Data sets: built-in tasks, column mapping through the real `datasets` loader, errors, prompt building."""

from __future__ import annotations

import json
import re
import string

import datasets
import pytest

from pkpo_trl.data import HUB_PRESETS, DataArguments, DatasetError, load_datasets, load_task, standardize_columns
from pkpo_trl.prompts import build_prompt, supports_system_role
from pkpo_trl.rewards.matchers import extract_gold
from pkpo_trl.tasks import BUILTIN_TASKS, generate_arithmetic

# Gemma-2's chat template raises on a system message; Gemma-3's folds it into the first user turn itself.
GEMMA2_LIKE_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
WITH_SYSTEM_TEMPLATE = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>' + message['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def char_tokenizer(chat_template: str):
    """A real fast tokenizer over single characters, built in memory."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
    vocab = {t: i for i, t in enumerate(specials + list(string.printable))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("<start_of_turn>|<end_of_turn>|."), behavior="isolated")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    tokenizer.chat_template = chat_template
    return tokenizer


# --- built-in tasks --------------------------------------------------------------------------------------


def test_builtin_task_is_deterministic_by_seed():
    a = load_task("addition", "train", num_examples=50, seed=3, prompt_format="plain")
    b = load_task("addition", "train", num_examples=50, seed=3, prompt_format="plain")
    c = load_task("addition", "train", num_examples=50, seed=4, prompt_format="plain")
    assert a.column_names == ["prompt", "answer"]
    assert a.to_list() == b.to_list()
    assert a["prompt"] != c["prompt"]


@pytest.mark.parametrize("task", BUILTIN_TASKS)
def test_builtin_answers_are_correct(task):
    data = load_task(task, "train", num_examples=30, digits=3, num_operands=3, prompt_format="plain", few_shot=2)
    for prompt, answer in zip(data["prompt"], data["answer"], strict=True):
        lines = prompt.split("\n")
        assert len(lines) == 3 and lines[-1].endswith("=")
        for line in [*lines[:-1], lines[-1] + answer]:  # the shots and the question with its answer
            expression, result = line.split("=")
            assert len(expression.split("+" if task == "addition" else "*")) == 3
            assert eval(expression) == int(result)  # noqa: S307  (digits and operators only)


def test_difficulty_changes_answer_size():
    def mean_length(**kwargs):
        data = load_task("addition", "train", num_examples=100, **kwargs)
        return sum(map(len, data["answer"])) / len(data)

    assert mean_length(digits=2) < mean_length(digits=4) < mean_length(digits=6)
    products = load_task("multiplication", "train", num_examples=100, digits=3)
    assert sum(map(len, products["answer"])) / 100 > mean_length(digits=3)
    assert mean_length(digits=2, num_operands=2) < mean_length(digits=2, num_operands=20)


def test_train_and_test_problems_are_disjoint():
    def questions(split: str, seed: int) -> set[str]:
        num = 1000 if split == "train" else 500  # of about 6480 train and 1620 test problems
        data = load_task("addition", split, num_examples=num, digits=2, seed=seed, prompt_format="plain")
        return {p.rsplit("\n", 1)[-1] for p in data["prompt"]}

    train = questions("train", 0) | questions("train", 1)
    test = questions("test", 0) | questions("test", 7)
    assert len(questions("train", 0)) == 1000  # distinct problems
    assert train.isdisjoint(test)


def test_builtin_chat_prompts_and_small_problem_spaces():
    data = load_task("multiplication", "test", num_examples=5, digits=1)
    assert data[0]["prompt"][0]["role"] == "user" and "\\boxed{}" in data[0]["prompt"][0]["content"]
    with pytest.raises(DatasetError, match="only about 20 test problems"):
        load_task("addition", "test", num_examples=50, digits=1)
    with pytest.raises(DatasetError, match="splits 'train' and 'test'"):
        load_task("addition", "dev")


# --- prompts and system roles ----------------------------------------------------------------------------


def test_build_prompt_formats():
    assert build_prompt("2+2?", "plain", prompt_template="Q: {question}\nA:") == "Q: 2+2?\nA:"
    assert build_prompt("2+2?", "chat", prompt_template="{question}") == [{"role": "user", "content": "2+2?"}]
    assert build_prompt("2+2?", "chat", "Be terse.", "{question}") == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "2+2?"},
    ]
    assert build_prompt("2+2?", "chat", "Be terse.", "{question}", system_role=False) == [
        {"role": "user", "content": "Be terse.\n\n2+2?"}
    ]


def test_system_prompt_folded_for_gemma_like_template():
    gemma = char_tokenizer(GEMMA2_LIKE_TEMPLATE)
    other = char_tokenizer(WITH_SYSTEM_TEMPLATE)
    assert not supports_system_role(gemma)
    assert supports_system_role(other)
    assert not supports_system_role(other, model_type="gemma3_text")
    assert supports_system_role(None) and supports_system_role(None, model_type="llama")

    data = load_task("addition", "test", num_examples=3, system_prompt="Be terse.", tokenizer=gemma)
    (message,) = data[0]["prompt"]
    assert message["role"] == "user" and message["content"].startswith("Be terse.\n\nWhat is ")
    text = gemma.apply_chat_template(data[0]["prompt"], tokenize=False, add_generation_prompt=True)
    assert text.startswith("<bos><start_of_turn>user\nBe terse.") and text.endswith("<start_of_turn>model\n")

    data = load_task("addition", "test", num_examples=3, system_prompt="Be terse.", tokenizer=other)
    assert [m["role"] for m in data[0]["prompt"]] == ["system", "user"]


# --- hub / local data sets -------------------------------------------------------------------------------


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_extract_gold():
    assert extract_gold("Some reasoning\n#### 1,234") == "1234"
    assert extract_gold("so $\\boxed{\\frac{1}{2}}$.") == "\\frac{1}{2}"
    assert extract_gold(" 42 ") == "42"
    assert extract_gold("no marker", "gsm8k") is None
    assert extract_gold("no box", "boxed") is None


def test_gsm8k_style_mapping_through_the_json_loader(tmp_path):
    rows = [
        {"question": "Tom has 3 apples and buys 4. How many?", "answer": "3 + 4 = 7\n#### 7"},
        {"question": "What is 1000 + 234?", "answer": "#### 1,234"},
    ]
    path = write_jsonl(tmp_path / "gsm.jsonl", rows)
    data = load_task(str(path), "train", prompt_column="question", answer_format="gsm8k")
    assert data.column_names == ["prompt", "answer"]
    assert data["answer"] == ["7", "1234"]
    assert data[0]["prompt"][0]["content"].startswith("Tom has 3 apples")
    plain = load_task(str(path), "train", prompt_format="plain")  # guessed columns, auto answer format
    assert plain["prompt"][1] == "Question: What is 1000 + 234?\nAnswer:" and plain["answer"] == ["7", "1234"]


def test_math_style_mapping_on_a_loaded_dataset(tmp_path):
    rows = [
        {"problem": "Compute 1/2 + 1/2.", "solution": "It is $\\boxed{1}$.", "level": "Level 1"},
        {"problem": "Compute $\\sqrt{4}$.", "solution": "We get $\\boxed{2}$.", "level": "Level 1"},
        {"problem": "Broken row", "solution": "no boxed answer here", "level": "Level 5"},
    ]
    loaded = datasets.load_dataset("json", data_files=str(write_jsonl(tmp_path / "math.json", rows)), split="train")
    preset = HUB_PRESETS["DigitalLearningGmbH/MATH-lighteval"]
    data = standardize_columns(
        loaded, preset.prompt_column, preset.answer_column, preset.answer_format, prompt_template="{question}"
    )
    assert data["answer"] == ["1", "2"]  # the row without a gold answer is dropped
    assert data[1]["prompt"] == [{"role": "user", "content": "Compute $\\sqrt{4}$."}]
    assert HUB_PRESETS["openai/gsm8k"].config == "main"
    assert HUB_PRESETS["HuggingFaceH4/MATH-500"].answer_column == "answer"


def test_missing_column_names_what_was_wanted(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "label": "1"}])
    with pytest.raises(DatasetError, match=r"no answer column 'answer_text'.*\['question', 'label'\]"):
        load_task(str(path), "train", answer_column="answer_text")
    with pytest.raises(DatasetError, match=r"none of the usual answer columns.*\['question', 'label'\]"):
        load_task(str(path), "train")


def test_empty_split_is_an_error(tmp_path):
    empty = datasets.Dataset.from_dict({"question": [], "answer": []})
    with pytest.raises(DatasetError, match="is empty"):
        standardize_columns(empty, source="The data set 'x', split 'test'")
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    with pytest.raises(DatasetError, match=r"empty\.jsonl"):
        load_task(str(path), "test")


def test_unreachable_hub_dataset_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DatasetError, match=r"'no-such-user/no-such-dataset-pkpo'.*split 'train'.*HF_HUB_OFFLINE"):
        load_task("no-such-user/no-such-dataset-pkpo", "train")
    with pytest.raises(DatasetError, match=r"'openai/gsm8k' \(config 'main'\), split 'test'"):
        load_task("openai/gsm8k", "test")


def test_data_arguments_drive_load_datasets():
    args = DataArguments(dataset_name="addition", num_train_examples=20, num_eval_examples=10, prompt_format="plain")
    train, test = load_datasets(args)
    assert len(train) == 20 and len(test) == 10
    assert load_datasets(DataArguments(num_train_examples=5, dataset_test_split="none"))[1] is None
    with pytest.raises(ValueError, match="prompt_format"):
        DataArguments(prompt_format="markdown")


def test_data_arguments_are_trls_script_arguments_and_refuse_the_options_that_do_not_apply():
    from trl import ScriptArguments

    assert isinstance(DataArguments(), ScriptArguments) and DataArguments().dataset_name == "addition"
    for option in ("dataset_streaming", "ignore_bias_buffers"):
        with pytest.raises(ValueError, match="dataset_streaming and ignore_bias_buffers .* are not supported"):
            DataArguments(**{option: True})


def test_load_task_takes_data_arguments_or_a_name_with_overrides():
    args = DataArguments(dataset_name="addition", task_seed=3, task_digits=3, task_few_shot=2, prompt_format="plain")
    by_args = load_task(args, "train", num_examples=20)
    by_name = load_task("addition", "train", num_examples=20, seed=3, digits=3, few_shot=2, prompt_format="plain")
    assert by_args.to_list() == by_name.to_list()
    assert load_task(args, "train", num_examples=20, seed=4).to_list() != by_args.to_list()
    with pytest.raises(TypeError, match="no_such_option"):
        load_task("addition", no_such_option=1)


def test_plain_prompts_without_few_shot_examples():
    from pkpo_trl.data import load_task

    data = load_task("addition", "train", num_examples=5, digits=2, few_shot=0, prompt_format="plain")
    assert len(data) == 5
    for row in data:
        assert "\n" not in row["prompt"] and row["prompt"].endswith("=")


def test_one_local_file_is_a_training_split_only_unless_a_test_file_is_named(tmp_path):
    # The default dataset_test_split="test" loaded the same file again: training prompts reported as held-out.
    train_rows = [{"question": f"{a}+1", "answer": str(a + 1)} for a in range(4)]
    path = write_jsonl(tmp_path / "train.jsonl", train_rows)
    train, test = load_datasets(DataArguments(dataset_name=str(path)))
    assert len(train) == 4 and test is None
    with pytest.raises(DatasetError, match=r"one local file: its rows are the training split.*--split test.jsonl"):
        load_task(str(path), "test")
    with pytest.raises(DatasetError, match="no 'validation' split"):
        load_datasets(DataArguments(dataset_name=str(path), dataset_test_split="validation"))

    held_out = write_jsonl(tmp_path / "test.jsonl", [{"question": "9+9", "answer": "18"}])
    train, test = load_datasets(DataArguments(dataset_name=str(path), dataset_test_split=str(held_out)))
    assert len(train) == 4 and test["answer"] == ["18"]
    assert load_task(str(path), str(held_out))["answer"] == ["18"]  # what pkpo-eval --split FILE loads


@pytest.mark.parametrize("count", [0, -1])
def test_a_number_of_examples_below_one_is_refused(tmp_path, count):
    # num_train_examples=0 trained 0 steps, exited 0 and saved an untrained adapter.
    for name in ("num_train_examples", "num_eval_examples"):
        with pytest.raises(DatasetError, match=rf"{name}={count}: give a number of examples >= 1"):
            DataArguments(**{name: count})
    with pytest.raises(DatasetError, match=rf"num_examples={count}"):
        load_task("addition", num_examples=count)


@pytest.mark.parametrize("count", [-1, -3])
def test_a_negative_number_of_few_shot_examples_is_refused(count):
    # task_few_shot=-1 trained on prompts with no examples, as 0 does, without a word; -2 ended in random.sample's
    # "Sample larger than population or is negative". 0 (no examples) stays allowed.
    for make in (
        lambda: DataArguments(task_few_shot=count),
        lambda: load_task("addition", num_examples=4, few_shot=count, prompt_format="plain"),
    ):
        with pytest.raises(DatasetError, match=rf"^task_few_shot={count}: give a number of solved examples >= 0"):
            make()
    with pytest.raises(DatasetError, match=rf"^few_shot={count}: give a number of solved examples >= 0"):
        generate_arithmetic(num_examples=4, few_shot=count, prompt_format="plain")
    assert DataArguments(task_few_shot=0).task_few_shot == 0


@pytest.mark.parametrize(
    "template, problem",
    [
        ("Solve this.", "has no {question} placeholder"),  # every prompt was this same text, silently
        ("{{question}}", "has no {question} placeholder"),  # an escaped brace: the literal text "{question}"
        ("{question} in {units}", "uses {units}"),  # KeyError: 'units'
        ("{question} Put the answer in \\boxed{}.", "uses {}"),  # IndexError: Replacement index 0 out of range
        ("{question.upper}", "uses {question.upper}"),  # silently "<built-in method upper of str object at ...>"
        ("{question", "is not a valid format string"),  # ValueError: expected '}' before end of string
        ("{question!x}", "is not a valid format string"),  # ValueError: Unknown conversion specifier x
    ],
)
def test_a_prompt_template_that_does_not_place_the_question_is_refused_before_any_prompt_is_built(template, problem):
    # It must fail where the template is given (the command line, DataArguments), not on the first row inside
    # datasets.map, and never train on prompts without their question.
    expected = "^" + re.escape(f"prompt_template={template!r} {problem}") + r".*only the placeholder \{question\}"
    rows = datasets.Dataset.from_dict({"question": ["1+1"], "answer": ["2"]})
    for make in (
        lambda: DataArguments(prompt_template=template),
        lambda: build_prompt("1+1", "chat", prompt_template=template),
        lambda: standardize_columns(rows, prompt_template=template),
        lambda: generate_arithmetic(num_examples=4, prompt_template=template),
    ):
        with pytest.raises(DatasetError, match=expected):
            make()


def test_a_prompt_template_may_repeat_the_question_and_escape_literal_braces():
    template = "{question}\nAgain: {question!r:>8} in \\boxed{{}}"
    assert DataArguments(prompt_template=template).prompt_template == template
    assert build_prompt("1+1", "plain", prompt_template=template) == "1+1\nAgain:    '1+1' in \\boxed{}"


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("empty.jsonl", b"", "local data file '.*empty.jsonl' is empty"),
        ("blank.jsonl", b"\n\n", "local data file '.*blank.jsonl' is empty"),
        ("latin1.csv", "question,answer\ncafé?,1\n".encode("latin-1"), "'.*latin1.csv' is not UTF-8 text"),
    ],
)
def test_an_existing_file_that_cannot_be_read_says_why_not_no_such_file(tmp_path, name, content, match):
    # They said "StopIteration ... No such file." and "DatasetGenerationError ... No such file."
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=match) as error:
        load_task(str(path))
    assert "No such file" not in str(error.value)


@pytest.mark.parametrize(("field", "value"), [("task_digits", 0), ("task_digits", -2), ("task_operands", 1)])
def test_built_in_task_sizes_are_checked_with_the_options(field, value):
    # They were refused only once the data was built, after the model had loaded, naming `digits`/`num_operands`.
    with pytest.raises(DatasetError, match=rf"^{field}={value}: "):
        DataArguments(dataset_name="addition", **{field: value})
    with pytest.raises(DatasetError, match=rf"^{field}={value}: "):
        load_task("addition", num_examples=4, **{{"task_digits": "digits"}.get(field, "num_operands"): value})

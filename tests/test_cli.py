"""`pkpo-train`: every recipe parses, `--help` documents the fields, and real end-to-end runs on a tiny
Gemma-2 under `accelerate launch` with 1 and 2 processes leave a loadable LoRA adapter."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from trl import GRPOConfig, GRPOTrainer

from pkpo_trl import PKPOConfig
from pkpo_trl.run_dir import RUN_CONFIG_FILE, check_output_dir
from pkpo_trl.train import main, parse_args, run

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))
ACCELERATE_CONFIGS = sorted((ROOT / "recipes" / "accelerate").glob("*.yaml"))
TINY_RECIPE = Path(__file__).parent / "data" / "tiny_recipe.yaml"


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_recipe_parses_into_valid_configs(recipe):
    raw = yaml.safe_load(recipe.read_text())
    # This machine has no GPU and no vLLM: parse with those two switched off, check their values apart (and the
    # batch rules with the real values: tests/test_recipes.py).
    overrides = ["--use_vllm", "false", "--bf16", "false"]
    script, data, config, model = parse_args(["--config", str(recipe), *overrides])
    assert model.model_name_or_path, f"{recipe.name} names no model"
    if script.trainer == "grpo":  # the baseline is TRL's GRPO, with TRL's defaults
        assert type(config) is GRPOConfig and config.scale_rewards == "group"
    else:
        assert isinstance(config, PKPOConfig) and max(config.k_spec().values) <= config.num_generations
    if raw.get("use_vllm"):
        assert raw["vllm_mode"] in ("colocate", "server")
    if "gemma-2" in model.model_name_or_path:
        # Unset (pkpo_trl.models picks flash_attention_2 or eager) or one that applies the soft-cap: never sdpa.
        assert model.attn_implementation in (None, "eager", "flash_attention_2"), "sdpa drops Gemma-2's soft-cap"
        assert raw.get("lora_dropout", 0.0) == 0.0, "dropout is on in TRL's log-probs and off in vLLM's"
        if raw.get("log_completions"):
            assert raw.get("num_completions_to_print"), "unset, TRL prints the whole generation batch"
        if raw.get("eval_strategy", "no") != "no":
            assert raw.get("eval_on_start") is True
        assert raw.get("bf16") is True and model.dtype == "bfloat16"
    assert script.trainer in ("pkpo", "grpo")


@pytest.mark.parametrize("config", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_accelerate_configs_load(config):
    from accelerate.commands.config.config_args import ClusterConfig

    assert ClusterConfig.from_yaml_file(str(config)).num_processes >= 1


def test_gpu_recipes_cover_the_documented_matrix():
    names = {p.name for p in RECIPES}
    for model in ("gemma2_2b_it", "gemma2_9b_it"):
        for data in ("gsm8k", "math"):
            assert f"{model}_{data}_lora_vllm.yaml" in names
    assert "gemma2_2b_it_gsm8k_lora_vllm_server.yaml" in names
    assert "gemma2_2b_it_gsm8k_grpo_baseline.yaml" in names
    assert {p.name for p in ACCELERATE_CONFIGS} >= {"single_gpu.yaml", "multi_gpu.yaml", "zero2.yaml", "zero3.yaml"}


def test_grpo_baseline_differs_from_its_pkpo_recipe_only_in_trainer_and_scaling():
    pkpo = yaml.safe_load((ROOT / "recipes" / "gemma2_2b_it_gsm8k_lora_vllm.yaml").read_text())
    grpo = yaml.safe_load((ROOT / "recipes" / "gemma2_2b_it_gsm8k_grpo_baseline.yaml").read_text())
    differing = {key for key in set(pkpo) | set(grpo) if pkpo.get(key) != grpo.get(key)}
    assert differing == {"trainer", "scale_rewards", "output_dir"}


def test_help_is_short_and_lists_the_scripts_data_and_pkpo_options_and_help_all_lists_every_option():
    def helped(flag):
        result = subprocess.run(
            [sys.executable, "-m", "pkpo_trl.train", flag], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    lines = helped("--help")
    for flag in ("--config", "--pkpo_k", "--pkpo_estimator", "--reward_funcs", "--use_peft", "--learning_rate"):
        assert any(line.strip().startswith(flag) for line in lines), flag
    headings = [line for line in lines if line.endswith(":") and not line.startswith(" ")]
    assert [h.split(" (")[0].rstrip(":") for h in headings] == [
        "script options", "data options", "PKPO options", "common TRL options"
    ]  # fmt: skip
    assert len(lines) < 150 and not any("pkpo_k_schedule" in line for line in lines)
    every = helped("--help-all")
    assert len(every) > 500 and any(line.strip().startswith("--vllm_mode") for line in every)


def test_output_dir_with_a_different_run_is_refused(tmp_path):
    (tmp_path / RUN_CONFIG_FILE).write_text('{"training": {"learning_rate": 0.1}}')
    with pytest.raises(ValueError, match="holds a run with a different config.*learning_rate"):
        check_output_dir(tmp_path, {"training": {"learning_rate": 0.2}}, resuming=False, overwrite=False)
    check_output_dir(tmp_path, {"training": {"learning_rate": 0.2}}, resuming=False, overwrite=True)
    check_output_dir(tmp_path, {"training": {"learning_rate": 0.1}}, resuming=True, overwrite=False)


def test_output_dir_holding_another_tools_run_is_refused(tmp_path):
    # Checkpoints and an adapter, but no pkpo_run_config.json: not ours, and not to be overwritten silently.
    (tmp_path / "checkpoint-10").mkdir()
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(
        ValueError,
        match=rf"{re.escape(str(tmp_path))} holds checkpoints.*--resume_from_checkpoint.*--overwrite_output",
    ):
        check_output_dir(tmp_path, {"training": {}}, resuming=False, overwrite=False)
    check_output_dir(tmp_path, {"training": {}}, resuming=False, overwrite=True)


def test_a_corrupt_run_config_is_an_error_that_names_the_file(tmp_path):
    (tmp_path / RUN_CONFIG_FILE).write_text('{"training": ')
    with pytest.raises(ValueError, match=rf"{re.escape(str(tmp_path / RUN_CONFIG_FILE))}.*not valid JSON"):
        check_output_dir(tmp_path, {"training": {}}, resuming=True, overwrite=False)


def test_rerunning_into_a_directory_with_checkpoints_refuses_until_told_to_overwrite(tmp_path, tiny_model_dir):
    out = tmp_path / "run"
    command = ["--config", str(TINY_RECIPE), "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out)]
    command += ["--save_strategy", "steps", "--save_steps", "1", "--plot", "false"]
    main(command)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    stamp = (out / "checkpoint-2" / "trainer_state.json").read_text()

    # The same command, or one differing only in a resumable key, would restart at step 0 over these checkpoints.
    # pkpo-train says so in one line (no traceback).
    for extra in ([], ["--max_steps", "1"]):
        with pytest.raises(
            SystemExit,
            match=rf"^pkpo-train: error: {re.escape(str(out))} holds checkpoints.*--resume_from_checkpoint.*"
            "--overwrite_output",
        ):
            main(command + extra)
    assert (out / "checkpoint-2" / "trainer_state.json").read_text() == stamp

    # Starting over removes the old run's checkpoints, so that a later resume cannot pick one of them up.
    main(command + ["--max_steps", "1", "--overwrite_output_dir"])
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1"]


def _accelerate_launch(num_processes: int, args: list[str], port: int) -> subprocess.CompletedProcess:
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    launch = [accelerate, "launch", "--num_processes", str(num_processes), "--num_machines", "1"]
    launch += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port)]
    if num_processes > 1:
        launch.append("--multi_gpu")  # torchrun; on a machine without CUDA torch.distributed uses gloo
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    return subprocess.run(
        [*launch, "-m", "pkpo_trl.train", *args], env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
@pytest.mark.parametrize("num_processes", [1, 2])
def test_pkpo_train_end_to_end_leaves_a_loadable_adapter(tmp_path, tiny_model_dir, num_processes):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    args = ["--config", str(TINY_RECIPE), "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out)]
    if num_processes == 2:
        args += ["--per_device_train_batch_size", "4"]
    result = _accelerate_launch(num_processes, args, port=29540 + num_processes)
    assert result.returncode == 0, result.stderr[-4000:]
    assert (out / "adapter_config.json").exists() and (out / "adapter_model.safetensors").exists()
    plot = tmp_path / "run-pass_at_k.png"
    assert plot.exists() and plot.stat().st_size > 10_000
    assert f"plot written to {plot}" in result.stdout

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = PeftModel.from_pretrained(base, out)
    assert any("lora_A" in name for name, _ in model.named_parameters())


def test_grpo_baseline_recipe_builds_trls_own_config_without_pkpo_warnings(caplog):
    recipe = ROOT / "recipes" / "gemma2_2b_it_gsm8k_grpo_baseline.yaml"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        script, _, config, _ = parse_args(["--config", str(recipe), "--use_vllm", "false", "--bf16", "false"])
    assert script.trainer == "grpo" and type(config) is GRPOConfig
    assert not [w for w in caught if "PKPO" in str(w.message)], [str(w.message) for w in caught]
    ignored = [r.getMessage() for r in caught_logs(caplog) if "ignored" in r.getMessage()]
    assert not ignored  # the recipe's PKPO options are PKPOConfig's defaults
    parse_args(["--config", str(recipe), "--use_vllm", "false", "--bf16", "false", "--pkpo_k", "4"])
    ignored = [r.getMessage() for r in caught_logs(caplog) if "ignored" in r.getMessage()]
    assert len(ignored) == 1 and "pkpo_k" in ignored[0]


def caught_logs(caplog):
    return [record for record in caplog.records if record.name in ("pkpo_trl.train", "pkpo_trl.config")]


def test_grpo_baseline_trains_with_trls_defaults_and_trls_advantages(tmp_path, tiny_model_dir):
    # `--trainer grpo` on a PKPO recipe: TRL's GRPOTrainer on a plain GRPOConfig, so TRL's defaults apply
    # (scale_rewards="group", not PKPO's "batch"), and the advantages are TRL's group-normalised rewards.
    from trl.trainer.utils import nanstd

    command = ["--config", str(TINY_RECIPE), "--model_name_or_path", str(tiny_model_dir), "--trainer", "grpo"]
    command += ["--output_dir", str(tmp_path / "run"), "--plot", "false", "--max_steps", "1"]
    command += ["--reward_funcs", "test_trainer:continuous_reward"]
    trainer = run(*parse_args(command))
    assert type(trainer) is GRPOTrainer and type(trainer.args) is GRPOConfig
    assert trainer.args.scale_rewards == GRPOConfig.scale_rewards == "group"
    rewards = torch.tensor(list(trainer._logs["rewards"]["continuous_reward"])).view(-1, 4)
    expected = (rewards - rewards.mean(dim=1, keepdim=True)) / (nanstd(rewards, dim=1, keepdim=True) + 1e-4)
    assert expected.abs().sum() > 0
    torch.testing.assert_close(torch.tensor(list(trainer._logs["advantages"])), expected.view(-1))


def test_the_saved_adapter_has_a_model_card_saying_what_was_trained(tmp_path, tiny_model_dir):
    out = tmp_path / "run"
    command = ["--config", str(TINY_RECIPE), "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out)]
    trainer = run(*parse_args([*command, "--plot", "false"]))
    card = (out / "README.md").read_text()
    assert "More Information Needed" not in card  # PEFT's empty template is replaced
    assert "library_name: peft" in card and f"| base model | `{tiny_model_dir}` |" in card
    assert "built-in `addition` task: 1-digit, 2 operands, 2-shot plain prompts" in card
    assert "pkpo_k=linear:4->1, pkpo_estimator=sloo_minus_one" in card
    assert "2505.15201" in card and "## Quick start" not in card  # TRL's card (its quick start loads model="None")
    assert "LoRA r=4, alpha=8 on q_proj, v_proj" in card
    last_pass_at_1 = [e["pass@k/1"] for e in trainer.state.log_history if "pass@k/1" in e][-1]
    assert "| `pass@k/1` |" in card and f"{last_pass_at_1:.4g} (step 2)" in card
    assert "| `pass@k/1` |" in card and "| `solved/num_prompts` |" in card  # fixed-k numbers, comparable with GRPO
    assert f"AutoPeftModelForCausalLM.from_pretrained({str(out)!r})" in card


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        (dict(pkpo_k="1:0.5,4:0.5"), "pkpo_k=1:0.5,4:0.5, pkpo_estimator=sloo_minus_one"),
        (dict(pkpo_k="adaptive:1..4"), "pkpo_k=adaptive:1..4, pkpo_estimator=sloo_minus_one"),
        (dict(pkpo_k=3), "pkpo_k=3, pkpo_estimator=sloo_minus_one"),
        (dict(pkpo_estimator="maxrl"), "pkpo_estimator=maxrl (no k)"),
        (dict(), "pkpo_k=harmonic, pkpo_estimator=sloo_minus_one"),
    ],
)
def test_the_training_line_and_the_model_card_name_the_k_in_use(tmp_path, fields, text):
    from pkpo_trl import PKPOConfig
    from pkpo_trl.model_card import k_description

    args = PKPOConfig(str(tmp_path), use_cpu=True, report_to="none", per_device_train_batch_size=8, **fields)
    assert k_description(args) == text
    assert k_description(GRPOConfig(str(tmp_path), use_cpu=True, report_to="none")) == "TRL's GRPO (no k)"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--pkpo_kk", "4"], "unknown option pkpo_kk on the command line; did you mean pkpo_k?"),
        (["--pkpo_k_mixture", "harmonic"], "pkpo_k_mixture (on the command line) was removed: k is one option now"),
    ],
)
def test_a_mistyped_or_removed_option_gets_one_line_naming_it_and_the_right_one(tmp_path, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["--output_dir", str(tmp_path / "run"), "--use_cpu", "true", *argv])
    assert str(exit_info.value.code) == f"pkpo-train: error: {message}" or message in str(exit_info.value.code)
    assert "\n" not in str(exit_info.value.code)


def test_a_recipe_key_typo_names_the_file_and_the_closest_key(tmp_path):
    recipe = recipe_with(tmp_path, pkpo_k_mixtrue="harmonic")
    with pytest.raises(SystemExit, match=rf"unknown option pkpo_k_mixtrue in {re.escape(str(recipe))}; did you mean"):
        main(["--config", str(recipe)])


def recipe_with(tmp_path: Path, **fields) -> Path:
    """The tiny test recipe with ``fields`` set (as a user's recipe would set them), written to ``tmp_path``."""
    recipe = {**yaml.safe_load(TINY_RECIPE.read_text()), "output_dir": str(tmp_path / "run"), **fields}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.mark.parametrize(
    "field, value",
    [
        ("trainer", "pkp0"),
        ("trainer", "GRPO"),
        ("pkpo_estimator", "sloo-minus-one"),
        ("pkpo_k", "histroy"),
        ("dtype", "fp32"),
        ("reward_funcs", ["numeric_mach"]),
    ],
)
def test_a_recipe_value_outside_a_fields_fixed_set_is_refused_in_one_line(tmp_path, tiny_model_dir, field, value):
    # argparse checks `choices` only on the command line; a recipe's value must be refused as well, before any
    # model is loaded, and as a message (no traceback), never by training something else.
    recipe = recipe_with(tmp_path, **{field: value})
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", str(recipe), "--model_name_or_path", str(tiny_model_dir)])
    message = str(exit_info.value.code)
    assert message.startswith("pkpo-train: error: ") and "\n" not in message
    shown = value[0] if isinstance(value, list) else value
    assert repr(shown) in message and (field in message or field == "reward_funcs")
    assert not (tmp_path / "run").exists()


def never_scores(completions, **kwargs) -> list[None]:
    """A reward function that can score no completion (as math_verify on output it cannot parse)."""
    return [None] * len(completions)


def test_a_run_no_reward_could_score_still_writes_its_model_card_and_plot(tmp_path, tiny_model_dir):
    out = tmp_path / "run"
    command = ["--config", str(TINY_RECIPE), "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out)]
    run(*parse_args([*command, "--reward_funcs", "test_cli:never_scores"]))
    card = (out / "README.md").read_text()
    assert "| `reward` | n/a (step 1) | n/a (step 2) |" in card
    assert "**Warning: 2 of 2 logged steps had no reward signal**" in card
    assert (tmp_path / "run-pass_at_k.png").stat().st_size > 10_000


@pytest.mark.parametrize("count", ["0", "-1"])
def test_no_training_examples_is_refused_in_one_line(tmp_path, tiny_model_dir, count):
    command = ["--config", str(TINY_RECIPE), "--model_name_or_path", str(tiny_model_dir)]
    with pytest.raises(SystemExit, match=rf"^pkpo-train: error: num_train_examples={count}: give a number"):
        main([*command, "--output_dir", str(tmp_path / "run"), "--num_train_examples", count])
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "option, value, match",
    [
        ("--task_few_shot", "-1", "task_few_shot=-1: give a number of solved examples >= 0"),
        ("--prompt_template", "Solve it.", "prompt_template='Solve it.' has no {question} placeholder"),
        ("--prompt_template", "{question} in {units}", "prompt_template='{question} in {units}' uses {units}"),
    ],
)
def test_a_data_option_that_cannot_make_the_prompts_is_refused_in_one_line(tmp_path, option, value, match):
    # task_few_shot=-1 trained silently as 0; a template without {question} trained on one prompt text for every
    # problem; one with {units} ended in a KeyError traceback from build_prompt, after the model had loaded.
    command = ["--config", str(TINY_RECIPE), "--model_name_or_path", "never-loaded", "--output_dir", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--prompt_format", "chat", option, value])
    message = str(exit_info.value.code)
    assert message.startswith(f"pkpo-train: error: {match}") and "\n" not in message
    assert not (tmp_path / RUN_CONFIG_FILE).exists()


@pytest.mark.parametrize("trainer", ["pkpo", "grpo"])
@pytest.mark.parametrize(
    "option, value, match",
    [
        ("--num_generations", "0", "num_generations=0: completions per prompt must be an integer >= 2"),
        ("--num_generations", "1", "num_generations=1: completions per prompt must be an integer >= 2"),
        ("--num_generations_eval", "0", "num_generations_eval=0: completions per prompt must be an integer >= 1"),
    ],
)
def test_a_group_size_too_small_is_refused_in_one_line_by_both_trainers(tmp_path, trainer, option, value, match):
    # --trainer grpo --num_generations 0 ended in TRL's ZeroDivisionError traceback (GRPOConfig takes
    # generation_batch_size % num_generations before its own `num_generations < 2` check); PKPOConfig refused it.
    command = ["--config", str(TINY_RECIPE), "--model_name_or_path", "never-loaded", "--output_dir", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--trainer", trainer, option, value])
    message = str(exit_info.value.code)
    assert message.startswith(f"pkpo-train: error: {match}") and "\n" not in message


def test_rows_dropped_for_an_unreadable_answer_are_warned_about_and_the_card_counts_what_was_trained(
    tmp_path, tiny_model_dir, caplog
):
    rows = [{"question": f"{a}+1", "answer": f"#### {a + 1}"} for a in range(7)] + [{"question": "x", "answer": "?"}]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "run"
    command = ["--config", str(TINY_RECIPE), "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out)]
    command += ["--dataset_name", str(data), "--answer_format", "gsm8k", "--num_train_examples", "8"]
    command += ["--per_device_train_batch_size", "4", "--max_steps", "1", "--plot", "false"]
    with caplog.at_level(logging.WARNING, logger="pkpo_trl.data"):
        run(*parse_args(command))
    assert any("dropped 1 of 8 rows" in record.getMessage() for record in caplog.records)
    assert (
        "7 training prompts (8 requested; rows without a readable gold answer were dropped)"
        in (out / "README.md").read_text()
    )


def test_resume_skips_a_checkpoint_left_incomplete_by_a_crash_and_says_so(tmp_path, tiny_model_dir, caplog):
    out = tmp_path / "run"
    command = ["--config", str(TINY_RECIPE), "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out)]
    command += ["--save_strategy", "steps", "--save_steps", "1", "--plot", "false"]
    main([*command, "--max_steps", "1"])
    # Killed while writing checkpoint-2: its weights are there, its trainer_state.json is not.
    shutil.copytree(out / "checkpoint-1", out / "checkpoint-2")
    (out / "checkpoint-2" / "trainer_state.json").unlink()
    with caplog.at_level(logging.WARNING, logger="pkpo_trl.train"):
        trainer = run(*parse_args([*command, "--resume_from_checkpoint", "true"]))
    messages = [record.getMessage() for record in caplog.records]
    assert any("skipping" in m and "checkpoint-2" in m and "no trainer_state.json" in m for m in messages)
    assert any(m.endswith(f"resuming from {out / 'checkpoint-1'}.") for m in messages)
    assert trainer.state.global_step == 2


STEP_LINE = re.compile(
    r"^step (\d+)/2 · loss \S+ · reward \S+ · pass@1 \S+ · pass@4 \S+ · k [\d.]+ · \d+\.\d s/step$", re.M
)


def _logged_keys(out: Path) -> list[set[str]]:
    """The keys of each training step's entry of ``log_history`` in the run's last checkpoint."""
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    return [set(entry) for entry in state["log_history"] if "loss" in entry]


def _console_run(out: Path, tiny_model_dir: Path, *extra: str) -> str:
    """Run pkpo-train in this process for 2 steps (checkpoint at step 2 for its trainer_state.json); its stdout."""
    command = ["--config", str(TINY_RECIPE), "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out)]
    command += ["--save_strategy", "steps", "--save_steps", "2", "--plot", "false", *extra]
    with contextlib.redirect_stdout(io.StringIO()) as stdout:
        main(command)
    return stdout.getvalue()


@pytest.fixture(scope="module")
def raw_run(tmp_path_factory, tiny_model_dir) -> tuple[str, Path]:
    """The console output and output directory of a 2-step run with ``--log_format raw``."""
    out = tmp_path_factory.mktemp("raw") / "run"
    return _console_run(out, tiny_model_dir, "--log_format", "raw"), out


@pytest.mark.parametrize("disable_tqdm", ["false", "true"])  # ProgressCallback, or PrinterCallback without tqdm
def test_the_console_shows_phase_lines_and_a_compact_line_per_step_and_the_state_keeps_every_key(
    tmp_path, tiny_model_dir, raw_run, disable_tqdm
):
    out = tmp_path / "run"
    compact = _console_run(out, tiny_model_dir, "--disable_tqdm", disable_tqdm)
    phases = [line.removeprefix("pkpo-train: ") for line in compact.splitlines() if line.startswith("pkpo-train: ")]
    assert phases == [
        f"loading model {tiny_model_dir} (float32)",
        "data addition: 32 training prompts (split train), no evaluation split",
        "training 2 steps · 8 completions per step (2 prompts x 4) · pkpo_k=linear:4->1, "
        "pkpo_estimator=sloo_minus_one",
        f"saving the LoRA adapter to {out}",
    ]
    assert [int(m.group(1)) for m in STEP_LINE.finditer(compact)] == [1, 2], compact
    assert re.search(r"^done · 2 steps in \d+\.\d s · mean loss \S+$", compact, re.M), compact
    assert "{'" not in compact and "grad_norm" not in compact  # no raw metrics dict on the console
    # The full dict still reaches trainer_state.json: the same keys as with transformers' own printing.
    keys = _logged_keys(out)
    assert len(keys) == 2 and keys == _logged_keys(raw_run[1])
    assert {"grad_norm", "completions/mean_length", "pkpo/frac_zero_advantage", "pass@k/2", "step_time"} <= keys[0]


def test_log_format_raw_prints_transformers_metrics_dict(raw_run):
    raw, _ = raw_run
    assert raw.count("{'loss': ") == 2 and "'pkpo/pass@k_at_current_k'" in raw and "'grad_norm'" in raw
    assert not STEP_LINE.search(raw) and "pkpo-train: training 2 steps" in raw  # the phase lines stay


def test_compact_lines_for_evaluation_grpo_and_unknown_logs():
    from pkpo_trl.console import compact_log_line

    grpo = {"loss": 0.1234, "reward": None, "pass@k/1": 0.5, "pass@k/2": 0.75, "pass@k/8": 0.9, "step_time": 3.0}
    assert (
        compact_log_line(grpo, 3, 30) == "step 3/30 · loss 0.123 · reward n/a · pass@1 0.50 · pass@8 0.90 · 3.0 s/step"
    )
    evaluation = {"eval_loss": 0.0, "eval_reward": 0.25, "eval_pkpo/pass@1": 0.25, "eval_pkpo/k": 4.0}
    assert compact_log_line(evaluation, 10, 30) == "eval at step 10 · loss 0 · reward 0.25 · pass@1 0.25 · k 4"
    assert compact_log_line({"train_runtime": 332.4, "train_loss": -0.05}, 30, 30) == (
        "done · 30 steps in 5 min 32 s · mean loss -0.05"
    )
    assert compact_log_line({"my_callback/metric": 1.0}, 3, 30) is None  # printed raw, as transformers does


def test_a_model_directory_without_tokenizer_files_is_refused_before_it_loads(tmp_path, tiny_model_dir):
    # transformers built a 5-token placeholder tokenizer: training exited 0 and saved it beside the adapter.
    import shutil

    from pkpo_trl.models import TOKENIZER_FILES

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model, ignore=shutil.ignore_patterns(*TOKENIZER_FILES, "special_tokens_map.json"))
    with pytest.raises(SystemExit, match=r"^pkpo-train: error: Model .* has no tokenizer files") as exit_info:
        main(["--config", str(TINY_RECIPE), "--model_name_or_path", str(model), "--output_dir", str(tmp_path / "run")])
    assert "\n" not in str(exit_info.value.code) and not (tmp_path / "run").exists()


@pytest.mark.parametrize("field, value", [("reward_weights", 1.0), ("reward_funcs", "first_number")])
def test_a_recipe_list_given_as_one_value_is_refused_in_one_line_before_the_model_loads(tmp_path, field, value):
    # reward_weights: 1.0 was a TypeError traceback after the model loaded; reward_funcs: first_number was read letter
    # by letter (training exited 0 with rewards "f", "i", ...).
    recipe = recipe_with(tmp_path, **{field: value})
    with pytest.raises(SystemExit, match=rf"^pkpo-train: error: {field}=.* must be a list") as exit_info:
        main(["--config", str(recipe), "--model_name_or_path", "never-loaded"])
    assert "\n" not in str(exit_info.value.code)

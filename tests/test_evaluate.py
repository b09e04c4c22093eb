"""`pkpo-eval` on tiny offline models: pass@k equals a brute-force count on the cached samples, a resumed
evaluation equals an uninterrupted one, several models in one call, re-scoring without generation, bad
input refused before any generation."""

from __future__ import annotations

import graphlib
import itertools
import json
import logging
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, package_imports

from pkpo_trl.data import DatasetError
from pkpo_trl.evaluation import CacheError, EvalArguments, EvalInputError, SamplingSettings, prepare
from pkpo_trl.evaluation.cli import parse_and_run, parse_args
from pkpo_trl.evaluation.models import resolve_model
from pkpo_trl.evaluation.sampling import generate_batch
from pkpo_trl.tiny import build_char_tokenizer, build_tiny_gemma2

N = 8
KS = [1, 2, 4, 8]
MARKED: set[str] = set()  # completions `raises_on_marked` raises on


def has_seven(completions, **kwargs) -> list[float]:
    """A reward a random tiny model earns sometimes: the completion contains a '7'."""
    return [1.0 if "7" in c else 0.0 for c in completions]


def has_one(completions, **kwargs) -> list[float]:
    return [1.0 if "1" in c else 0.0 for c in completions]


def raises_on_marked(completions, **kwargs) -> list[float]:
    if any(c in MARKED for c in completions):
        raise ValueError("cannot score this completion")
    return has_seven(completions)


def brute_force_pass_at_k(successes: list[bool], k: int) -> float:
    """The fraction of k-subsets holding at least one success: the definition of pass@k on n samples."""
    subsets = list(itertools.combinations(successes, k))
    return sum(any(s) for s in subsets) / len(subsets)


def save_tiny(path: Path, **overrides) -> Path:
    tokenizer = build_char_tokenizer()
    build_tiny_gemma2(len(tokenizer), **overrides).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def save_adapter(base: Path, out: Path, **model_overrides) -> Path:
    from peft import LoraConfig, get_peft_model

    tokenizer = build_char_tokenizer()
    model = build_tiny_gemma2(len(tokenizer), **model_overrides)
    model.config._name_or_path = str(base)
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("eval")
    rows = [{"question": f"{a}+{b}", "answer": str(a + b)} for a, b in [(1, 2), (3, 4), (12, 5), (7, 7)]]
    (root / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "no_answer.jsonl").write_text("".join(json.dumps({"question": r["question"]}) + "\n" for r in rows))
    save_tiny(root / "model_a")
    save_tiny(root / "model_b", seed=1, initializer_range=0.5)  # peaked logits: samples unlike model_a's
    save_adapter(root / "model_a", root / "adapter_a")
    save_adapter(root / "other_base", root / "adapter_other", hidden_size=48)
    return root


def data_options(root: Path) -> list[str]:
    return [
        "--dataset_name", str(root / "data.jsonl"), "--split", "train", "--prompt_format", "plain",
        "--prompt_template", "{question}=", "--answer_format", "raw",
    ]  # fmt: skip


def sampling_options(**overrides) -> list[str]:
    options = {"num_samples": N, "max_new_tokens": 4, "batch_size": 2 * N, "reward_funcs": "test_evaluate:has_seven"}
    options.update(overrides)
    return [item for key, value in options.items() for item in (f"--{key}", str(value))]


@pytest.fixture(scope="module")
def full_run(workdir) -> tuple[dict, Path]:
    """Three models in one call (one of them base + adapter), options from a YAML --config plus the command line."""
    out = workdir / "full"
    config = workdir / "eval.yaml"
    config.write_text(yaml.safe_dump({"labels": ["a", "b", "a_lora"], "greedy": True, "seed": 3}))
    results = parse_and_run(
        [
            str(workdir / "model_a"), str(workdir / "model_b"), str(workdir / "model_a"),
            "--adapters", "none", "none", str(workdir / "adapter_a"), "--config", str(config),
            "--output_dir", str(out), *data_options(workdir), *sampling_options(),
        ]
    )  # fmt: skip
    return results, out


def cache_records(path: Path, kind: str) -> list[dict]:
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["kind"] == kind]


def test_pass_at_k_equals_brute_force_on_the_cached_samples(full_run):
    results, out = full_run
    assert results["settings"]["ks"] == KS
    for label in ("a", "b"):
        samples = cache_records(out / "samples" / f"{label}.jsonl", "samples")
        assert len(samples) == 4 and all(len(r["samples"]) == N for r in samples)
        success = [["7" in text for text in r["samples"]] for r in samples]
        model = results["models"][label]
        assert model["correct"] == [sum(s) for s in success]
        assert model["solved"] == sum(any(s) for s in success)
        for k in KS:
            per_prompt = [brute_force_pass_at_k(s, k) for s in success]
            assert model["pass@k"][str(k)]["mean"] == pytest.approx(statistics.mean(per_prompt), abs=1e-12)
            assert model["pass@k"][str(k)]["se"] == pytest.approx(statistics.stdev(per_prompt) / 2, abs=1e-12)
        greedy = [r["greedy"] for r in samples]
        assert model["greedy"]["solved"] == sum("7" in g for g in greedy)
    # the estimates are not degenerate: some prompt is solved sometimes but not always
    assert any(0 < c < N for label in ("a", "b") for c in results["models"][label]["correct"])


def test_several_models_in_one_call_share_prompts_table_and_plot(full_run, capsys):
    results, out = full_run
    assert list(results["models"]) == ["a", "b", "a_lora"]
    keys = {label: [r["key"] for r in cache_records(out / "samples" / f"{label}.jsonl", "samples")] for label in "ab"}
    assert keys["a"] == keys["b"]  # the same prompts
    a, b = (cache_records(out / "samples" / f"{label}.jsonl", "samples") for label in "ab")
    assert [r["samples"] for r in a] != [r["samples"] for r in b]  # ... answered by different models
    assert results["models"]["a_lora"]["model"]["adapter"] == str(out.parent / "adapter_a")
    saved = json.loads((out / "results.json").read_text())
    assert saved["models"]["b"]["pass@k"] == results["models"]["b"]["pass@k"]
    assert (out / "pass_at_k.png").stat().st_size > 10_000


def test_resume_from_a_half_written_cache_equals_the_uninterrupted_run(full_run, workdir):
    results, out = full_run
    resumed = workdir / "resumed"
    (resumed / "samples").mkdir(parents=True)
    lines = (out / "samples" / "a.jsonl").read_text().splitlines(keepends=True)
    # header, prompts 0-2 (chunks of 2 prompts: the second chunk is half written), prompt 3 cut off mid-write
    (resumed / "samples" / "a.jsonl").write_text("".join(lines[:4]) + lines[4][: len(lines[4]) // 2])
    again = parse_and_run(
        [str(workdir / "model_a"), "--labels", "a", "--greedy", "true", "--seed", "3", "--output_dir", str(resumed),
         *data_options(workdir), *sampling_options()]
    )  # fmt: skip
    model = again["models"]["a"]
    assert model["num_generated"] == 1  # only the prompt not cached: samples are seeded per prompt
    for key in ("pass@k", "correct", "solved", "greedy"):
        assert model[key] == results["models"]["a"][key]
    assert cache_records(resumed / "samples" / "a.jsonl", "samples") == cache_records(
        out / "samples" / "a.jsonl", "samples"
    )


def test_rescoring_with_another_reward_generates_nothing(full_run, workdir):
    _, out = full_run
    shutil.copytree(out, workdir / "rescore")
    again = parse_and_run(
        [str(workdir / "model_a"), "--labels", "a", "--greedy", "true", "--seed", "3",
         "--output_dir", str(workdir / "rescore"), *data_options(workdir),
         *sampling_options(reward_funcs="test_evaluate:has_one")]
    )  # fmt: skip
    model = again["models"]["a"]
    assert model["num_generated"] == 0
    samples = cache_records(workdir / "rescore" / "samples" / "a.jsonl", "samples")
    assert model["correct"] == [sum("1" in text for text in r["samples"]) for r in samples]


def test_a_reward_raising_on_one_completion_scores_it_failed_and_warns_once(full_run, workdir, caplog):
    _, out = full_run
    shutil.copytree(out, workdir / "raising")
    samples = cache_records(out / "samples" / "a.jsonl", "samples")
    marked = samples[1]["samples"][0]
    MARKED.add(marked)
    try:
        with caplog.at_level(logging.WARNING):
            again = parse_and_run(
                [str(workdir / "model_a"), "--labels", "a", "--greedy", "true", "--seed", "3",
                 "--output_dir", str(workdir / "raising"), *data_options(workdir),
                 *sampling_options(reward_funcs="test_evaluate:raises_on_marked")]
            )  # fmt: skip
    finally:
        MARKED.clear()
    model = again["models"]["a"]
    failed = sum(text == marked for r in samples for text in [*r["samples"], r["greedy"]])
    assert model["num_failed"] == sum(text == marked for r in samples for text in r["samples"]) >= 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "raises_on_marked" in r.getMessage()]
    assert len(warnings) == 1 and f"raised on {failed} of" in warnings[0].getMessage()
    expected = [sum("7" in t and t != marked for t in r["samples"]) for r in samples]
    assert model["correct"] == expected


def test_a_model_retrained_into_the_same_directory_does_not_get_the_old_samples(workdir, tmp_path):
    # Issue 29 case 1: the header named the model by its path, so the old numbers came back with num_generated 0.
    model = save_tiny(tmp_path / "model")
    args = [str(model), "--labels", "m", "--output_dir", str(tmp_path / "out"), *data_options(workdir),
            *sampling_options()]  # fmt: skip
    first = parse_and_run(args)["models"]["m"]
    cache = tmp_path / "out" / "samples" / "m.jsonl"
    old_samples = [r["samples"] for r in cache_records(cache, "samples")]
    assert first["num_generated"] == 4
    save_tiny(model, seed=1, initializer_range=0.5)  # "retrained": other weights, same path
    with pytest.raises(CacheError, match=r"holds samples of other weights \(model files changed since: "
                       r"config\.json, model\.safetensors; e\.g\. a model retrained"):  # fmt: skip
        parse_and_run(args)
    again = parse_and_run([*args, "--overwrite_cache", "true"])["models"]["m"]
    assert again["num_generated"] == 4
    assert [r["samples"] for r in cache_records(cache, "samples")] != old_samples


def test_settings_that_do_not_change_the_samples_do_not_block_resuming(full_run, workdir, tmp_path):
    # The same weights at another path, another batch size, no greedy completions: everything comes from the cache.
    results, out = full_run
    shutil.copytree(out / "samples", tmp_path / "samples")
    moved = shutil.copytree(workdir / "model_a", tmp_path / "moved_model")
    again = parse_and_run(
        [str(moved), "--labels", "a", "--seed", "3", "--output_dir", str(tmp_path), *data_options(workdir),
         *sampling_options(batch_size=3)]
    )["models"]["a"]  # fmt: skip
    assert again["num_generated"] == 0
    assert (again["pass@k"], again["correct"]) == (results["models"]["a"]["pass@k"], results["models"]["a"]["correct"])
    with pytest.raises(CacheError, match=r"other settings \(sampling\.max_new_tokens: 4 -> 5\)"):
        parse_and_run([str(moved), "--labels", "a", "--seed", "3", "--output_dir", str(tmp_path),
                       *data_options(workdir), *sampling_options(max_new_tokens=5)])  # fmt: skip


def test_a_cache_has_one_writer_a_second_process_is_refused_naming_cache_and_lock(workdir, tmp_path):
    # Issue 29 case 4: two processes on one cache mixed their samples (one rewrote the header, one appended).
    cache = tmp_path / "samples" / "b.jsonl"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pkpo_trl.evaluation import SampleCache; "
         f"c = SampleCache({str(cache)!r}, {{}}); print('locked', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        args = [str(workdir / "model_a"), str(workdir / "model_b"), "--labels", "a", "b", "--output_dir",
                str(tmp_path), "--overwrite_cache", "true", *data_options(workdir), *sampling_options()]  # fmt: skip
        with pytest.raises(CacheError) as error:
            parse_and_run(args)
        lock = f"{cache}.lock"
        assert str(error.value) == (
            f"The sample cache {cache} is being written by another pkpo-eval (pid {holder.pid} on "
            f"{socket.gethostname()}; lock file {lock}): wait for it to finish, or use another --output_dir."
        )
        assert json.loads(cache.read_text().splitlines()[0]) == {"kind": "header", "version": 3, "info": {}}
    finally:
        holder.kill()
        holder.wait()
    results = parse_and_run(args)  # the holder gone, its lock is too (and a's lock was released on the error)
    assert [results["models"][label]["num_generated"] for label in "ab"] == [4, 4]


# ---------------------------------------------------------------------------------------------------------
# Bad input: refused before any generation (no sample is ever written)
# ---------------------------------------------------------------------------------------------------------


def no_samples_written(out: Path) -> bool:
    caches = list((out / "samples").glob("*.jsonl")) if (out / "samples").exists() else []
    return not any(cache_records(path, "samples") for path in caches)


@pytest.mark.parametrize(
    "case, error, match",
    [
        ("missing_path", EvalInputError, "no such file or directory"),
        ("unknown_hub_id", EvalInputError, "Cannot load the model 'nobody-xyz/no-such-model'"),
        ("adapter_for_another_base", EvalInputError, "does not fit the base model"),
        ("no_answer_column", DatasetError, "answer"),
        ("k_above_n", EvalInputError, "pass@8 but --num_samples is 4"),
        ("no_tokenizer", EvalInputError, "has no tokenizer files .*placeholder tokenizer that is not the model's"),
    ],
)
def test_bad_input_is_refused_before_generation(workdir, tmp_path, case, error, match):
    good = str(workdir / "model_a")
    args = [good, "--output_dir", str(tmp_path), *data_options(workdir), *sampling_options()]
    if case == "missing_path":
        args = [good, "./no/such/model", *args[1:]]
    elif case == "unknown_hub_id":
        args = [good, "nobody-xyz/no-such-model", *args[1:]]
    elif case == "adapter_for_another_base":
        args = [good, good, "--adapters", "none", str(workdir / "adapter_other"), *args[1:]]
    elif case == "no_answer_column":
        args += ["--dataset_name", str(workdir / "no_answer.jsonl")]
    elif case == "k_above_n":
        args += ["--num_samples", "4", "--ks", "1", "8"]
    elif case == "no_tokenizer":  # transformers built a 5-token placeholder: pass@1 0.000 of empty completions
        build_tiny_gemma2(len(build_char_tokenizer())).save_pretrained(tmp_path / "weights_only")
        args = [good, str(tmp_path / "weights_only"), *args[1:]]
    with pytest.raises(error, match=match):
        parse_and_run(args)
    assert no_samples_written(tmp_path)


def test_a_mistyped_local_path_is_reported_as_missing_not_tried_on_the_hub(tmp_path, monkeypatch):
    # `runs/quickstrat` was tried as a hub id "org/name": 5 network retries, then "Cannot load the model".
    (tmp_path / "runs" / "quickstart").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EvalInputError) as error:
        resolve_model("runs/quickstrat")
    assert str(error.value) == "Model 'runs/quickstrat': no such file or directory (did you mean 'runs/quickstart'?)"


def test_a_built_in_task_too_small_for_the_default_number_of_problems_names_num_examples(workdir, tmp_path):
    # "has only about 20 test problems; 200 were asked for" did not name the option that asks for 200.
    args = [str(workdir / "model_a"), "--task_digits", "1", "--output_dir", str(tmp_path), *sampling_options()]
    with pytest.raises(EvalInputError) as error:
        parse_and_run(args)
    assert str(error.value) == (
        "Built-in task 'addition' with 1-digit numbers and 2 operands has only about 20 test problems; 200 were "
        "asked for. Pass --num_examples 10 or fewer (default: 200 for a built-in task), or raise --task_digits or "
        "--task_operands."
    )
    assert no_samples_written(tmp_path)


def test_unreadable_or_foreign_cache_is_refused_before_generation(full_run, workdir, tmp_path):
    _, out = full_run
    (tmp_path / "samples").mkdir()
    lines = (out / "samples" / "a.jsonl").read_text().splitlines(keepends=True)
    cache = tmp_path / "samples" / "a.jsonl"
    args = [str(workdir / "model_a"), "--labels", "a", "--greedy", "true", "--seed", "3", "--output_dir",
            str(tmp_path), *data_options(workdir), *sampling_options()]  # fmt: skip
    cache.write_text(lines[0] + "{not json\n" + "".join(lines[1:3]))
    with pytest.raises(CacheError, match="corrupt .line 2"):
        parse_and_run(args)
    cache.write_text("".join(lines[:3]))
    with pytest.raises(CacheError, match="other settings .*temperature"):
        parse_and_run([*args, "--temperature", "0.5"])
    assert cache.read_text() == "".join(lines[:3])  # untouched


def test_a_pkpo_train_run_directory_supplies_base_model_data_and_sampling(workdir, tmp_path):
    from pkpo_trl.data import DataArguments

    run = tmp_path / "run"
    shutil.copytree(workdir / "adapter_a", run)
    run_config = {
        "script": {"reward_funcs": ["test_evaluate:has_one"], "gguf_file": None},
        "data": {"dataset_name": str(workdir / "data.jsonl"), "prompt_format": "plain",
                 "prompt_template": "{question}=", "answer_format": "raw", "dataset_test_split": "train"},
        "model": {"model_name_or_path": str(workdir / "model_a")},
        "training": {"temperature": 0.7, "max_completion_length": 5, "pkpo_success_threshold": 0.5},
    }  # fmt: skip
    (run / "pkpo_run_config.json").write_text(json.dumps(run_config))
    spec = resolve_model(str(run))
    assert (spec.base, spec.adapter, spec.label) == (str(workdir / "model_a"), str(run), "run")
    args, data_args = (
        EvalArguments(models=[str(workdir / "model_a"), str(run)], num_samples=4, output_dir=str(tmp_path)),
        DataArguments(),
    )
    plan = prepare(args, data_args)
    assert [s.adapter for s in plan.specs] == [None, str(run)]
    assert plan.dataset["prompt"][0] == "1+2=" and len(plan.dataset) == 4
    assert plan.reward_names == ["test_evaluate:has_one"] and plan.ks == [1, 2, 4]
    assert (plan.settings.temperature, plan.settings.max_new_tokens, plan.success_threshold) == (0.7, 5, 0.5)


def test_an_option_the_user_gave_wins_over_the_runs_even_when_it_equals_the_default(workdir, tmp_path):
    # Issue 29 case 3: trained with task_digits 1, `pkpo-eval RUN --task_digits 2` (2 is the default) evaluated 1-digit
    # problems; --task_digits 3 was honoured.
    run = tmp_path / "run"
    shutil.copytree(workdir / "adapter_a", run)
    run_config = {
        "script": {"reward_funcs": ["test_evaluate:has_one"], "gguf_file": None},
        "data": {"dataset_name": "addition", "task_digits": 1, "prompt_format": "plain"},
        "model": {"model_name_or_path": str(workdir / "model_a")},
        "training": {},
    }
    (run / "pkpo_run_config.json").write_text(json.dumps(run_config))
    common = [str(run), "--num_examples", "6", "--num_samples", "4", "--output_dir", str(tmp_path)]
    config = tmp_path / "eval.yaml"
    config.write_text("task_digits: 2\n")
    for extra, digits in [
        ([], 1),
        (["--task_digits", "2"], 2),
        (["--task_digits=2"], 2),
        (["--config", str(config)], 2),
    ]:
        plan = prepare(*parse_args([*common, *extra]))
        assert plan.data_args.task_digits == digits, extra
        answers = [int(answer) for answer in plan.dataset["answer"]]
        assert (max(answers) <= 18) if digits == 1 else (min(answers) >= 20), (extra, answers)
        for cache in plan.caches.values():
            cache.close()


def test_command_line_reports_bad_input_without_a_traceback(tmp_path):
    exe = shutil.which("pkpo-eval", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "pkpo_trl.evaluation"]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [*cmd, "./no/such/model", "--output_dir", str(tmp_path)], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode != 0
    assert "pkpo-eval: error: Model './no/such/model': no such file or directory." in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == "[pkpo-eval] checking models, data and caches\n"  # a line first, not silence


@pytest.mark.parametrize("greedy", [True, False])
def test_prompt_computed_once_per_prompt_gives_the_samples_of_computing_it_per_sample(greedy):
    import torch

    tokenizer = build_char_tokenizer()
    model = build_tiny_gemma2(len(tokenizer), initializer_range=0.2).eval()
    texts = ["12+35=47\n23+58=81\n1+2=", "7+7=", "123+4="]  # different lengths: left padding
    settings = SamplingSettings(num_samples=8, max_new_tokens=8)
    torch.manual_seed(0)
    per_sample = generate_batch(model, tokenizer, texts, True, 8, settings, greedy, share_prefix=False)
    torch.manual_seed(0)
    shared = generate_batch(model, tokenizer, texts, True, 8, settings, greedy, share_prefix=True)
    assert shared == per_sample
    assert len(set(per_sample)) > 1  # not one degenerate string


def test_a_generate_call_reports_each_decoding_step():
    # pkpo-eval showed no progress for minutes while one call sampled a chunk of prompts; the bar now shows the step.
    tokenizer = build_char_tokenizer()
    model = build_tiny_gemma2(len(tokenizer), initializer_range=0.2).eval()
    settings = SamplingSettings(num_samples=4, max_new_tokens=5, seed=1)
    steps: list[int] = []
    texts = generate_batch(model, tokenizer, ["1+2=", "7+7="], True, 4, settings, False, seeds=[1, 2],
                           on_token=steps.append)  # fmt: skip
    assert len(texts) == 8 and steps == list(range(1, len(steps) + 1)) and 1 <= len(steps) <= 5


@pytest.mark.parametrize("top_k, top_p", [(0, 1.0), (5, 0.9)])
def test_a_prompts_samples_do_not_depend_on_the_batch_it_is_sampled_in(top_k, top_p):
    from pkpo_trl.evaluation import sample_completions

    tokenizer = build_char_tokenizer()
    model = build_tiny_gemma2(len(tokenizer), initializer_range=0.2).eval()
    prompts = ["1+2=", "7+7=", "3+4=", "12+5=", "9+9="]

    def sample(batch_size: int, skip=lambda i: False) -> dict:
        settings = SamplingSettings(num_samples=4, max_new_tokens=6, seed=5, batch_size=batch_size, top_k=top_k,
                                    top_p=top_p, temperature=0.8)  # fmt: skip
        return sample_completions(model, tokenizer, prompts, settings, skip=skip, progress=False)

    one_per_call, all_in_one = sample(4), sample(20)
    assert one_per_call == all_in_one
    assert sample(8, skip=lambda i: i != 3) == {3: one_per_call[3]}  # a resumed run: prompt 3 alone
    assert len({text for samples, _ in one_per_call.values() for text in samples}) > 5  # not degenerate


def test_pass_at_k_stats_over_prompts():
    import torch

    from pkpo_trl.evaluation import pass_at_k_stats

    rewards = torch.zeros(3, 16)
    rewards[1] = 1.0
    rewards[2, :8] = 1.0
    rewards[2, 8] = float("nan")  # unscored: failed
    stats = pass_at_k_stats(rewards, [1, 16])
    assert stats["pass@k"]["1"]["mean"] == pytest.approx((0 + 1 + 0.5) / 3)
    assert stats["pass@k"]["16"]["mean"] == pytest.approx(2 / 3)
    assert stats["pass@k"]["1"]["se"] == pytest.approx(statistics.stdev([0, 1, 0.5]) / 3**0.5)
    assert (stats["solved"], stats["num_failed"], stats["correct"]) == (2, 1, [0, 16, 8])


def test_suggest_k_prints_and_stores_the_k_advice(workdir, capsys):
    from pkpo_trl.k_advisor import suggest_k

    out = workdir / "advice"
    results = parse_and_run(
        [str(workdir / "model_a"), "--suggest_k", "true", "--num_generations", "4", "--output_dir", str(out),
         *data_options(workdir), *sampling_options()]
    )  # fmt: skip
    model = results["models"]["model_a"]
    expected = suggest_k(model["correct"], N, 4)
    assert [c["name"] for c in model["k_advice"]["candidates"]] == ["k=1", "k=2", "k=3", "k=4", "harmonic:4"]
    assert [c["frac_signal"] for c in model["k_advice"]["candidates"]] == [a.frac_signal for a in expected]
    printed = capsys.readouterr().out
    assert (
        "k advisor, model_a: training groups of 4, estimator sloo_minus_one" in printed and "| harmonic:4 |" in printed
    )
    saved = json.loads((out / "results.json").read_text())
    assert saved["models"]["model_a"]["k_advice"]["num_generations"] == 4
    with pytest.raises(EvalInputError, match="--num_generations 9 must lie in"):
        parse_and_run([str(workdir / "model_a"), "--suggest_k", "true", "--num_generations", "9",
                       *data_options(workdir), *sampling_options()])  # fmt: skip


def test_a_run_trained_on_one_local_file_is_not_evaluated_on_its_training_prompts_as_test(workdir, tmp_path):
    from pkpo_trl.data import DataArguments

    run = tmp_path / "run"
    shutil.copytree(workdir / "adapter_a", run)
    run_config = {
        "script": {"reward_funcs": ["test_evaluate:has_one"], "gguf_file": None},
        "data": {"dataset_name": str(workdir / "data.jsonl"), "prompt_format": "plain",
                 "prompt_template": "{question}=", "answer_format": "raw", "dataset_test_split": "test"},
        "model": {"model_name_or_path": str(workdir / "model_a")},
        "training": {},
    }  # fmt: skip
    (run / "pkpo_run_config.json").write_text(json.dumps(run_config))
    with pytest.raises(DatasetError, match="one local file: its rows are the training split"):
        prepare(EvalArguments(models=[str(run)], num_samples=4, output_dir=str(tmp_path)), DataArguments())
    held_out = tmp_path / "held_out.jsonl"
    held_out.write_text(json.dumps({"question": "5+2", "answer": "7"}) + "\n")
    args = EvalArguments(models=[str(run)], num_samples=4, output_dir=str(tmp_path), split=str(held_out))
    dataset = prepare(args, DataArguments()).dataset
    assert dataset["prompt"] == ["5+2="] and dataset["answer"] == ["7"]


def test_model_paths_may_follow_options_on_the_command_line(workdir):
    # "Some specified arguments are not used by the HfArgumentParser" for a model path after an option.
    args, data_args = parse_args(["--num_samples", "4", str(workdir / "model_a"), "--seed", "2", "b"])
    assert args.models == [str(workdir / "model_a"), "b"] and (args.num_samples, args.seed) == (4, 2)
    assert parse_args(["a", "--seed", "2"])[0].models == ["a"]
    with pytest.raises(SystemExit):
        parse_args(["a", "--no_such_option", "1"])


def test_a_typo_in_an_option_is_refused_with_the_closest_name(tmp_path, capsys):
    # `--num_sample 4` was taken as an abbreviation of --num_samples; a YAML key typo got TRL's advice for developers.
    for typo in (["--num_sample", "4"], ["--num_sample=4"], ["--temprature", "0.5"]):
        with pytest.raises(SystemExit):
            parse_args(["a", *typo])
        expected = "--num_samples" if "sample" in typo[0] else "--temperature"
        assert f"error: unrecognized arguments: {typo[0]} (did you mean {expected}?)" in capsys.readouterr().err
    config = tmp_path / "eval.yaml"
    config.write_text("num_sample: 4\n")
    with pytest.raises(EvalInputError, match=f"^{re.escape(str(config))}: unknown key num_sample \\(did you mean "
                       "num_samples\\?\\)\\.$"):  # fmt: skip
        parse_args(["a", "--config", str(config)])
    # a --config file that is missing or not YAML: one line naming it, no traceback
    config.write_text("num_samples: [4\n")
    with pytest.raises(
        EvalInputError, match=r"^--config: while parsing a flow sequence in \"[^\n]*, line 2, column 1$"
    ):
        parse_args(["a", "--config", str(config)])
    with pytest.raises(
        EvalInputError, match=rf"^--config: .*No such file or directory: '{re.escape(str(tmp_path))}/nope.yaml'"
    ):
        parse_args(["a", "--config", str(tmp_path / "nope.yaml")])
    with pytest.raises(EvalInputError, match="prompt_format must be 'chat' or 'plain'"):
        parse_args(["a", "--prompt_format", "chatml"])


def test_help_shows_the_positional_models_an_example_config_and_only_evaluation_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: pkpo-eval MODEL [MODEL ...] [--config EVAL.yaml]")
    assert "Example:\n\n  pkpo-eval " in text and "--config EVAL.yaml    YAML file" in text
    assert "`datasets` is provided" not in text  # TRL's help of an option pkpo-eval does not have
    assert "--num-samples" not in text  # one spelling per option: the dashed aliases doubled the help
    for hidden in ("--num_train_examples", "--dataset_train_split", "--dataset_streaming", "--ignore_bias_buffers"):
        assert hidden not in text
    for shown in ("--num_samples", "--ks", "--dataset_name", "--num_eval_examples", "--suggest_k", "--no_plot"):
        assert shown in text
    options = re.split(r"\n  (?=-)", text.split("\noptions:\n", 1)[1])
    assert all(option.count("default") <= 1 for option in options), [o for o in options if o.count("default") > 1]
    no_plot = next(option for option in options if option.startswith("--no_plot"))
    assert "Write" not in no_plot and "not write" in no_plot
    # hidden options still parse (a pkpo-train run's config may name them)
    assert parse_args(["a", "--num_train_examples", "5"])[1].num_train_examples == 5


@pytest.mark.parametrize(
    "kind, change, problem",
    [
        ("samples", {"samples": ["only one"]}, "samples must be a list of 8 entries"),
        ("samples", {"samples": [1] * N}, "completions must be strings"),
        ("samples", {"key": 3}, "key must be a string"),
        ("scores", {"samples": ["1.0"] * N}, "rewards must be numbers or null"),
        ("scores", {"samples": {"a": 1}}, "samples must be a list"),
        ("scores", {"answer": None}, "answer must be a string"),
    ],
)
def test_a_cache_record_of_the_wrong_shape_is_an_error_naming_the_file(
    full_run, workdir, tmp_path, kind, change, problem
):
    _, out = full_run
    (tmp_path / "samples").mkdir()
    lines = (out / "samples" / "a.jsonl").read_text().splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if json.loads(line)["kind"] == kind)
    lines[index] = json.dumps({**json.loads(lines[index]), **change}) + "\n"
    cache = tmp_path / "samples" / "a.jsonl"
    cache.write_text("".join(lines))
    args = [str(workdir / "model_a"), "--labels", "a", "--greedy", "true", "--seed", "3", "--output_dir",
            str(tmp_path), *data_options(workdir), *sampling_options()]  # fmt: skip
    with pytest.raises(CacheError, match=rf"{re.escape(str(cache))} has a malformed record on line {index + 1} "
                       rf"\({problem}"):  # fmt: skip
        parse_and_run(args)


@pytest.mark.parametrize(
    ("reward", "message"), [("nope", "Registered rewards"), ("no_such_module:f", "Cannot import module")]
)
def test_an_unknown_reward_is_a_one_line_error(workdir, reward, message):
    with pytest.raises(EvalInputError, match=f"--reward_funcs: .*{message}"):
        parse_and_run([str(workdir / "model_a"), *data_options(workdir), *sampling_options(reward_funcs=reward)])


def reward_as_text(completions, **kwargs):
    return ["1" for _ in completions]  # a string, not a number: pkpo-eval used to take float("1")


def test_a_reward_that_is_not_a_number_is_refused_as_in_training(workdir):
    with pytest.raises(EvalInputError, match=r"reward function 'reward_as_text' returned '1' \(str\)"):
        parse_and_run(
            [
                str(workdir / "model_a"),
                *data_options(workdir),
                *sampling_options(reward_funcs="test_evaluate:reward_as_text"),
                "--output_dir",  # not the default ./eval_results: a second run found the first one's cache there
                str(workdir / "reward_as_text"),
            ]
        )


def test_the_evaluation_modules_import_one_way_and_the_old_shim_is_gone():
    modules = [f"pkpo_trl.evaluation.{p.stem}" for p in sorted((ROOT / "pkpo_trl" / "evaluation").glob("*.py"))]
    modules = [m for m in modules if not m.endswith(("__init__", "__main__"))]
    graph = {m: {i for i in package_imports(m) if i in modules} for m in modules}
    order = list(graphlib.TopologicalSorter(graph).static_order())  # raises CycleError on a circle
    assert order.index("pkpo_trl.evaluation.plan") < order.index("pkpo_trl.evaluation.runner")
    assert order.index("pkpo_trl.evaluation.runner") < order.index("pkpo_trl.evaluation.cli")
    assert not (ROOT / "pkpo_trl" / "evaluate.py").exists()  # the old import path's re-export shim

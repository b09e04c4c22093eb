"""benchmarks/bench_learning.py: the quick mode's smallest configuration end to end (one seed, two RL steps,
a tiny warm-up) writes a JSON with the expected structure and finite numbers, and the GPU setting only
writes configs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import import_benchmark

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    return import_benchmark("bench_learning")


def _finite(x) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def test_summary_statistics(bench):
    stat = bench.mean_std_se([1.0, 2.0, 3.0])
    assert stat["mean"] == 2.0 and stat["std"] == pytest.approx(1.0) and stat["se"] == pytest.approx(1 / math.sqrt(3))


@pytest.mark.slow
def test_quick_smallest_configuration_writes_complete_json(bench, tmp_path):
    methods = ["grpo", "pkpo_anneal"]
    argv = [
        "--setting", "tiny", "--quick", "--seeds", "0", "--methods", ",".join(methods),
        "--rl-steps", "2", "--warmup-steps", "5", "--train-prompts", "32", "--eval-prompts", "4",
        "--out", str(tmp_path), "--cache-dir", "none", "--no-progress", "--workers", "1",
    ]  # fmt: skip
    bench.main(argv)

    data = json.loads((tmp_path / "learning_tiny_quick.json").read_text())
    assert (tmp_path / "learning_tiny_quick.png").stat().st_size > 0
    assert data["seeds"] == [0]
    assert set(data["methods"]) == set(methods) and set(data["summary"]) == set(methods)
    assert len(data["runs"]) == len(methods)
    batch = data["shared_rl_config"]["per_device_train_batch_size"]
    for key in ("pass@1", "pass@16"):
        assert 0.0 <= data["before_rl"]["hard_eval"][key] <= 1.0

    for run in data["runs"]:
        curve = run["curve"]
        assert curve["completions"] == [i * batch for i in range(3)], "one point per generation batch"
        assert curve["solved"] == sorted(curve["solved"]) and len(curve["frac_solved"]) == 3
        assert run["completions_sampled"] == 2 * batch
        assert _finite(run["seconds_per_step_median"]) and run["seconds_per_step_median"] > 0
        assert all(_finite(v) and 0.0 <= v <= 1.0 for v in run["eval"].values())
    assert "pkpo/k" in data["runs"][1]["pkpo_logged"], "PKPOTrainer's own metrics are kept"

    for name in methods:
        summary = data["summary"][name]
        for stat in (summary["num_prompts_solved"], summary["frac_prompts_solved"], summary["seconds_per_step"]):
            assert set(stat) == {"mean", "std", "se", "n"} and all(_finite(v) for v in stat.values())
        assert set(summary["eval"]) == {"pass@1", "pass@4", "pass@8", "pass@16"}
        assert all(_finite(v) for stat in summary["eval"].values() for v in stat.values())
        assert len(summary["curve"]["completions"]) == len(summary["curve"]["frac_solved_mean"]) == 3
    assert set(data["targets"]) == {"pkpo_anneal"}, "targets are checked for each annealed method run"
    assert {"solved_ratio_vs_grpo", "solved_ratio_met", "pass@1_met"} <= set(data["targets"]["pkpo_anneal"])
    assert data["table_markdown"].count("\n") == 1 + len(methods)


@pytest.mark.slow
def test_parallel_runs_reproduce_serial_runs(bench, tmp_path, monkeypatch):
    """``--workers 2`` runs each (seed, method) in its own process: the numbers must be those of the serial
    run (same seeds, same initial model), only the order of execution differs."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # the worker processes import the script by name
    common = [
        "--setting", "tiny", "--quick", "--seeds", "0", "1", "--methods", "pkpo_k8",
        "--rl-steps", "2", "--warmup-steps", "5", "--train-prompts", "32", "--eval-prompts", "4",
        "--cache-dir", "none", "--no-progress",
    ]  # fmt: skip
    serial = bench.main([*common, "--out", str(tmp_path / "serial")])
    parallel = bench.main([*common, "--out", str(tmp_path / "parallel"), "--workers", "2"])
    assert parallel["machine"]["parallel_runs"] == 2
    for one, two in zip(serial["runs"], parallel["runs"], strict=True):
        assert one["completions_sampled"] == 2 * 512, "both RL steps ran"
        assert (one["method"], one["seed"]) == (two["method"], two["seed"])
        assert one["curve"] == two["curve"]
        assert one["eval"] == two["eval"]
        assert one["train_reward_per_step"] == two["train_reward_per_step"]
    with pytest.raises(SystemExit, match="--workers"):
        bench.main([*common, "--out", str(tmp_path), "--workers", "0"])


def test_training_pool_smaller_than_one_step_is_refused(bench, tmp_path):
    """32 prompts per step (512 completions / n = 16) from a pool of 16 would train for zero steps."""
    with pytest.raises(ValueError, match="at least 32 training prompts"):
        bench.main(["--setting", "tiny", "--quick", "--train-prompts", "16", "--out", str(tmp_path)])


def test_gpu_setting_only_writes_configs(bench, tmp_path, capsys):
    assert bench.main(["--setting", "gemma2-gpu", "--out", str(tmp_path)]) is None
    data = json.loads((tmp_path / "learning_gemma2-gpu_configs.json").read_text())
    assert set(data["methods"]) == set(bench.DEFAULT_METHODS)
    for entry in data["methods"].values():
        config = entry["config"]
        assert config["use_vllm"] is True and config["num_generations"] == 16
        assert config["learning_rate"] == (0.0 if entry["label"].startswith("no update") else 1e-5)
    assert "--execute" in capsys.readouterr().out

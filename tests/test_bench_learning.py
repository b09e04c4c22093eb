"""benchmarks/bench_learning.py: the quick mode's smallest configuration of the mixed-difficulty setting end to
end (one seed, two RL steps, a tiny warm-up) writes a JSON with per-subset numbers that agree with each other,
plots, and a table; runs in parallel reproduce serial runs; ``--report`` redoes the summary from the JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import import_benchmark

ROOT = Path(__file__).resolve().parents[1]
SMALL = [
    "--quick", "--seeds", "0", "--rl-steps", "2", "--warmup-steps", "5", "--train-prompts", "32",
    "--eval-prompts", "4", "--cache-dir", "none", "--no-progress", "--workers", "1",
]  # fmt: skip


@pytest.fixture(scope="module")
def bench():
    return import_benchmark("bench_learning")


@pytest.fixture(scope="module")
def report(bench):
    import learning_report  # importing bench_learning put benchmarks/ on sys.path

    return learning_report


@pytest.fixture(scope="module")
def settings(bench):
    import learning_settings

    return learning_settings


def test_summary_statistics(report):
    stat = report.mean_std_se([1.0, 2.0, 3.0])
    assert stat["mean"] == 2.0 and stat["std"] == pytest.approx(1.0) and stat["se"] == pytest.approx(1 / math.sqrt(3))


def test_targets_compare_with_grpo(report):
    def stat(mean, se=0.0):
        return {"mean": mean, "se": se}

    summary = {
        "grpo": {"metrics": {"solved/hard": stat(10.0), "eval/all/pass@1": stat(0.20, 0.01)}},
        "pkpo_k8": {"metrics": {"solved/hard": stat(12.4), "eval/all/pass@1": stat(0.195)}},
        "pkpo_mixture": {"metrics": {"solved/hard": stat(12.5), "eval/all/pass@1": stat(0.185)}},
    }
    targets = report.check_targets(summary, [("solved/hard", 1.25), ("eval/all/pass@1", "se")])
    assert set(targets) == {"pkpo_k8", "pkpo_mixture"}
    k8, mixture = targets["pkpo_k8"]["checks"], targets["pkpo_mixture"]["checks"]
    assert k8["solved/hard"]["value"] == pytest.approx(1.24) and not k8["solved/hard"]["met"]
    assert k8["eval/all/pass@1"]["met"] and not mixture["eval/all/pass@1"]["met"]
    assert mixture["solved/hard"]["met"] and not targets["pkpo_mixture"]["all_met"]


@pytest.mark.slow
def test_quick_mixed_setting_writes_consistent_results(bench, tmp_path):
    methods = ["grpo", "pkpo_mixture", "pkpo_adaptive"]
    results = bench.main(["--setting", "mixed", *SMALL, "--methods", ",".join(methods), "--out", str(tmp_path)])
    data = json.loads((tmp_path / "learning_mixed_quick.json").read_text())
    assert data["seeds"] == [0] and [r["method"] for r in data["runs"]] == methods
    for name in data["paths"]:
        assert (tmp_path / name).stat().st_size > 0
    assert set(data["paths"]) >= {f"learning_mixed_quick_passk_{s}.png" for s in ("easy", "hard")}
    per_step = data["shared_rl_config"]["per_device_train_batch_size"]
    for run in data["runs"]:
        metrics, curves = run["metrics"], run["curves"]
        assert curves["completions"] == [0, per_step, 2 * per_step], "one point per optimizer step"
        for subset in ("easy", "hard"):
            assert curves[subset] == sorted(curves[subset]) and curves[subset][-1] == metrics[f"solved/{subset}"]
            assert 0 <= metrics[f"solved/{subset}"] <= 32
        # the per-subset counts add up to the trainer's logged count of all prompts solved
        assert metrics["solved/easy"] + metrics["solved/hard"] == run["logged"]["solved/num_prompts"][-1]
        for k in (1, 4, 16):
            easy, hard, every = (metrics[f"eval/{s}/pass@{k}"] for s in ("easy", "hard", "all"))
            assert 0.0 <= hard <= 1.0 and every == pytest.approx((easy + hard) / 2), "4 + 4 held-out prompts"
        assert metrics["seconds_per_step"] > 0
    assert "pkpo/k" in data["runs"][1]["logged"] and "pkpo/k" not in data["runs"][0]["logged"]
    assert set(data["targets"]) == {"pkpo_mixture", "pkpo_adaptive"}
    assert set(data["targets"]["pkpo_mixture"]["checks"]) == {"eval/hard/pass@16", "solved/hard", "eval/all/pass@1"}
    assert data["table_markdown"].count("\n") == 1 + len(methods)

    # --report recomputes the same summary from the saved runs
    again = bench.main(["--report", str(tmp_path / "learning_mixed_quick.json")])
    assert again["summary"] == json.loads(json.dumps(results["summary"]))
    assert again["table_markdown"] == results["table_markdown"]


@pytest.mark.slow
def test_parallel_runs_reproduce_serial_runs(bench, tmp_path, monkeypatch):
    """``--workers 2`` runs each (method, seed) in its own process: the numbers must be those of the serial
    run (same seeds, same initial model), only the order of execution differs."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # the worker processes import the script by name
    common = ["--setting", "tiny", *SMALL, "--seeds", "0", "1", "--methods", "pkpo_k8"]
    serial = bench.main([*common, "--out", str(tmp_path / "serial"), "--workers", "1"])
    parallel = bench.main([*common, "--out", str(tmp_path / "parallel"), "--workers", "2"])
    assert parallel["machine"]["parallel_runs"] == 2
    for one, two in zip(serial["runs"], parallel["runs"], strict=True):
        assert (one["method"], one["seed"]) == (two["method"], two["seed"])
        assert len(one["curves"]["completions"]) == 3, "both RL steps ran"
        assert one["curves"] == two["curves"]
        assert {k: v for k, v in one["metrics"].items() if k != "seconds_per_step"} == {
            k: v for k, v in two["metrics"].items() if k != "seconds_per_step"
        }
        assert one["logged"]["reward"] == two["logged"]["reward"]
    with pytest.raises(SystemExit, match="--workers"):
        bench.main([*common, "--out", str(tmp_path), "--workers", "0"])


def test_training_pool_smaller_than_one_step_is_refused(bench, tmp_path):
    """32 prompts per step (512 completions / n = 16) from a pool of 16 would train for zero steps."""
    with pytest.raises(ValueError, match="at least 32 training prompts"):
        bench.main(["--setting", "tiny", "--quick", "--train-prompts", "16", "--out", str(tmp_path)])


def test_paired_differences_are_taken_seed_by_seed(report):
    def run(method, seed, value):
        return {"method": method, "seed": seed, "metrics": {"m": value}}

    # GRPO's seeds vary a lot; the method is GRPO + 0.1 on every seed: the paired s.e. is 0, an unpaired one is not.
    runs = [run("grpo", s, v) for s, v in enumerate([0.1, 0.5, 0.9])] + [
        run("pkpo", s, v + 0.1) for s, v in enumerate([0.1, 0.5, 0.9])
    ]
    runs.append(run("only_seed_7", 7, 1.0))
    paired = report.paired_differences(runs, ["m"])
    assert paired["pkpo"]["m"]["mean"] == pytest.approx(0.1) and paired["pkpo"]["m"]["se"] == pytest.approx(0.0)
    assert paired["pkpo"]["m"]["seeds"] == [0, 1, 2]
    assert paired["only_seed_7"]["m"]["n"] == 0 and math.isnan(paired["only_seed_7"]["m"]["mean"])
    assert "grpo" not in paired


def test_sort_task_splits_are_disjoint_and_sorted(settings):
    train, test = settings.sort_rows("train", 300, 0, 5), settings.sort_rows("test", 100, 0, 5)
    assert not set(train[0]) & set(test[0]) and len(set(train[0])) == 300
    for prompt, answer in zip(*train, strict=True):
        digits = prompt.removeprefix("sort ").removesuffix("=")
        assert len(digits) == 5 and "0" not in digits and answer == "".join(sorted(digits))
    assert settings.sort_rows("train", 300, 0, 5) == train


@pytest.mark.slow
def test_matrix_is_resumable_run_by_run(bench, tmp_path):
    """--matrix writes each (method, seed) run as it finishes; a rerun reads them back instead of training (the
    same numbers, nothing run), and the report has the paired table and the Pareto plot."""
    common = ["--matrix", "sort", *SMALL, "--seeds", "0", "1", "--methods", "grpo,aa_control", "--out", str(tmp_path)]
    first = bench.main(common)
    store = tmp_path / "learning_sort_quick_runs"
    assert sorted(p.name for p in store.glob("*.json")) == [  # the runs, and the initial policy's evaluation
        "aa_control-seed0.json", "aa_control-seed1.json", "before_rl.json", "grpo-seed0.json", "grpo-seed1.json",
    ]  # fmt: skip
    assert "learning_sort_quick_pareto.png" in first["paths"]
    assert (tmp_path / "learning_sort_quick_pareto.png").stat().st_size > 0
    assert first["paired"]["aa_control"]["eval/hard/pass@1"]["n"] == 2
    assert "A/A control (chance alone) vs GRPO" in first["paired_table_markdown"]
    (store / "grpo-seed1.json").unlink()  # as if the sitting had stopped before this run finished
    second = bench.main(common)
    assert "3 of 4 runs already done; 1 to run" in (store / "progress.log").read_text()
    for a, b in zip(first["runs"], second["runs"], strict=True):  # the rerun of grpo seed 1 gives the same numbers
        assert {k: v for k, v in a["metrics"].items() if k != "seconds_per_step"} == {
            k: v for k, v in b["metrics"].items() if k != "seconds_per_step"
        }
    report = bench.main([*common, "--report-only"])  # reads the store, runs nothing
    assert len(report["runs"]) == 4 and (store / "before_rl.json").is_file()
    record = json.loads((store / "grpo-seed0.json").read_text())
    record["setting_fingerprint"] = "other"
    (store / "grpo-seed0.json").write_text(json.dumps(record))
    with pytest.raises(SystemExit, match="another setting"):
        bench.main(common)


@pytest.mark.slow
def test_gpu_setting_smoke_on_cpu(bench, tmp_path):
    """The H200 setting's code path on a CPU: its 10-50M-parameter from-scratch model, one RL step per method, and
    the shipped defaults recorded as what ``pkpo_default`` resolved to."""
    from pkpo_trl import PKPOConfig
    from pkpo_trl.tiny import build_char_tokenizer, build_tiny_gemma2

    size = bench.SETTINGS["gpu"].model_size
    params = sum(p.numel() for p in build_tiny_gemma2(len(build_char_tokenizer()), **size).parameters())
    assert 10e6 <= params <= 50e6
    options = [*SMALL, "--rl-steps", "1", "--methods", "grpo,maxrl,pkpo_default", "--out", str(tmp_path)]
    results = bench.main(["--setting", "gpu", *options])
    assert [r["method"] for r in results["runs"]] == ["grpo", "maxrl", "pkpo_default"]
    default = PKPOConfig(
        str(tmp_path / "x"), use_cpu=True, report_to="none", num_generations=16, per_device_train_batch_size=16
    )
    recorded = results["runs"][2]["method_config"]
    assert (recorded["pkpo_k"], recorded["pkpo_estimator"], recorded["scale_rewards"]) == (
        default.pkpo_k,
        default.pkpo_estimator,
        default.scale_rewards,
    )


def test_runs_stored_under_the_former_k_options_still_match_their_methods(bench, settings):
    """Run files written before ``pkpo_k`` took one spec record pkpo_k_schedule / pkpo_k_mixture / pkpo_adaptive_k;
    the store reads them in today's spelling, so each still matches its method (and a changed k would not)."""
    import learning_store

    stored = sorted((ROOT / "benchmarks" / "results").glob("learning_*_runs/*-seed0.json"))
    old = [path for path in stored if "pkpo_k_mixture" in json.loads(path.read_text())["run"].get("method_config", {})]
    assert {path.stem for path in old} >= {"harmonic-seed0", "maxrl-seed0", "pkpo_mixture-seed0", "aa_control-seed0"}
    for path in old:
        setting = settings.SETTINGS[path.parent.name.removeprefix("learning_").removesuffix("_runs").split("_")[0]]
        method = path.stem.removesuffix("-seed0")
        expected = learning_store.comparable_method_config(learning_store.resolved_method_config(setting, method))
        recorded = learning_store.comparable_method_config(json.loads(path.read_text())["run"]["method_config"])
        assert recorded == expected, path
    former = {"pkpo_k": 4, "pkpo_estimator": "sloo_minus_one", "scale_rewards": "batch"}
    translate = learning_store.comparable_method_config
    assert translate({**former, "pkpo_k_schedule": "linear:8->1"})["pkpo_k"] == "linear:8->1"
    assert translate({**former, "pkpo_k_mixture": "linear:8->1"})["pkpo_k"] == "linear:8:1->1:1"
    assert translate({**former, "pkpo_k": 8, "pkpo_adaptive_k": "history"})["pkpo_k"] == "adaptive:1..8"
    assert translate({**former, "pkpo_k_mixture": None})["pkpo_k"] == "4"
    assert translate({**former, "pkpo_k": 8}) != translate(former)

"""benchmarks/gpu_check.py on CPU at the tiny shape: the script that a lent GPU runs must not rot between
GPU sessions. It reads a real recipe, builds both trainers and reports finite figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import import_benchmark

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_check():
    return import_benchmark("gpu_check")


def test_word_tokenizer_has_the_model_vocabulary_and_round_trips(gpu_check):
    tokenizer = gpu_check.build_word_tokenizer(512)
    assert len(tokenizer) == 512
    ids = tokenizer("w7 w511 w42", add_special_tokens=False)["input_ids"]
    assert ids == [7, 511, 42]
    assert tokenizer.decode(ids) == "w7 w511 w42"


@pytest.mark.slow
def test_tiny_shape_runs_the_recipe_with_both_trainers(gpu_check, tmp_path):
    out = tmp_path / "gpu_check.json"
    gpu_check.main(
        ["--shape", "tiny", "--steps", "2", "--max_completion_length", "4", "--gradient_accumulation_steps", "1",
         "--recipe", str(ROOT / "recipes" / "gemma2_2b_it_gsm8k_lora_vllm.yaml"), "--out", str(out)]
    )  # fmt: skip
    summary = json.loads(out.read_text())
    assert [r["method"] for r in summary["results"]] == ["pkpo", "grpo"]
    for result in summary["results"]:
        assert len(result["step_times_s"]) == 2 and result["steps_timed"] == 1
        # 16 completions (1 micro-batch of the recipe's 16) of exactly 4 tokens (min_new_tokens)
        assert result["completion_tokens_per_step"] == 16 * 4
        assert math.isfinite(result["step_time_s"]) and result["step_time_s"] > 0
        assert 0 < result["trainable_params"] < result["total_params"]  # LoRA from the recipe
    assert math.isfinite(summary["step_time_ratio_pkpo_over_grpo"])

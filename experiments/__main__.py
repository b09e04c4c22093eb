"""``python -m experiments {all,toy,variance,training} --out DIR [--quick] [--seed N]``.

Regenerates the toy figures (PNG) and the results table (``results.md`` + ``results.json``) in ``DIR``;
see :mod:`experiments.runner` for what each section computes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from .runner import (  # noqa: E402
    SECTIONS,
    ToyConfig,
    TrainingConfig,
    VarianceConfig,
    progress_units,
    run_toy,
    run_training,
    run_variance,
    write_results,
)


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(
        prog="python -m experiments",
        description="Reproduce the PKPO paper's toy results (Figure 1, Figure 4, training with k annealing).",
    )
    parser.add_argument("command", choices=("all", *SECTIONS), help="which experiments to run")
    parser.add_argument("--out", type=Path, default=Path("results"), help="output directory (default: results/)")
    parser.add_argument("--quick", action="store_true", help="small settings for a smoke run (seconds)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--no-progress", action="store_true", help="disable the progress bar")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: the tensors are small, and extra threads on busy cores are "
        "many times slower)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections, write figures and tables, print the path of ``results.md``."""
    args = build_parser().parse_args(argv)
    torch.set_num_threads(max(args.threads, 1))
    sections = list(SECTIONS) if args.command == "all" else [args.command]
    configs = {
        "toy": ToyConfig.make(args.quick, args.seed),
        "variance": VarianceConfig.make(args.quick, args.seed),
        "training": TrainingConfig.make(args.quick, args.seed),
    }
    runners = {"toy": run_toy, "variance": run_variance, "training": run_training}
    args.out.mkdir(parents=True, exist_ok=True)
    total = sum(progress_units(s, configs[s]) for s in sections)
    start = time.perf_counter()
    with tqdm(total=total, desc="pkpo toy experiments", disable=args.no_progress, file=sys.stderr) as bar:
        for s in sections:
            bar.set_postfix_str(s)
            runners[s](configs[s], args.out, progress=bar)
    write_results(args.out, args.quick, args.seed, time.perf_counter() - start)
    print(f"wrote {args.out / 'results.md'} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

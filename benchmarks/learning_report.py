"""The learning benchmark's report (``bench_learning.py``): per-method summaries over seeds, targets against
GRPO, markdown tables, the solved-prompts and pass@k plots, and (issue 20) paired comparisons and Pareto plots.

Every method runs with the same seeds as GRPO, so each method's difference to GRPO is taken seed by seed: the
table reports the mean of the per-seed differences ± the standard error of those differences, which removes
the variation that seeds share (data order, sampling) and is what decides whether a difference is a real one.
The A/A control (PKPO k = 1 with ``scale_rewards="group"``, GRPO's advantage up to the epsilon in its std) gives
the size of a difference that chance alone produces; a difference no larger than it is not called a win.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from learning_efficiency import efficiency_table, paired_efficiency
from learning_settings import METHODS
from learning_sweep import admission

from pkpo_trl.metrics import mean_se
from pkpo_trl.plotting import plot_pass_at_k_curves

BASELINE, CONTROL, PEER = "grpo", "aa_control", "maxrl"


def paired_differences(runs: Sequence[dict[str, Any]], metrics: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per method (GRPO excluded) and metric: ``{"mean", "se", "n", "seeds"}`` of ``method - GRPO`` over the seeds
    both have; ``se`` is the sample std of the differences over ``sqrt(n)`` (NaN for one seed)."""
    by_method: dict[str, dict[int, dict[str, float]]] = {}
    for run in runs:
        by_method.setdefault(run["method"], {})[run["seed"]] = run["metrics"]
    base = by_method.get(BASELINE, {})
    out: dict[str, dict[str, Any]] = {}
    for name, seeds in by_method.items():
        if name == BASELINE:
            continue
        shared = sorted(set(seeds) & set(base))
        out[name] = {}
        for metric in metrics:
            diffs = [seeds[s][metric] - base[s][metric] for s in shared if metric in seeds[s] and metric in base[s]]
            out[name][metric] = {**mean_se(diffs), "n": len(diffs), "seeds": shared}
    return out


def pareto_metrics(setting: dict[str, Any]) -> tuple[str, str]:
    """(x, y) of the Pareto plot: held-out pass@1 over all prompts, and pass@16 (the largest k evaluated) on the
    hard ones (the setting's ``pareto`` field overrides)."""
    if setting.get("pareto"):
        return tuple(setting["pareto"])
    names = [s["name"] for s in setting["subsets"]]
    everything = "all" if len(names) > 1 else names[0]
    hard = "hard" if "hard" in names else names[-1]
    k = max(k for k in setting["eval_ks"] if k <= setting["eval_samples"])
    return f"eval/{everything}/pass@1", f"eval/{hard}/pass@{k}"


def paired_table(summary: dict[str, Any], paired: dict[str, dict[str, Any]], metrics: Sequence[str],
                 before: dict[str, Any] | None = None) -> str:  # fmt: skip
    """Markdown: one row per method, each metric's mean over seeds and its paired difference to GRPO (points); with
    ``before`` (the held-out numbers before RL, ``{subset: {"pass@k": value}}``) a first row for the starting model,
    whose difference to GRPO is ``before - GRPO`` seed by seed (its s.e. is GRPO's over seeds: ``before`` is one
    fixed evaluation)."""
    header = ["method", "seeds"]
    for metric in metrics:
        header += [f"{metric[5:]} (%)", "Δ vs GRPO (points, paired)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    grpo = summary.get(BASELINE, {}).get("metrics", {})
    if before is not None and all(metric in grpo for metric in metrics):
        row = ["before RL (the starting model)", "—"]
        for metric in metrics:
            subset, key = metric.split("/")[1:]
            value, base = before[subset][key], grpo[metric]
            row += [f"{100 * value:.2f}", f"{100 * (value - base['mean']):+.2f} ± {100 * base['se']:.2f}"]
        lines.append("| " + " | ".join(row) + " |")
    for name, entry in summary.items():
        row = [entry["label"], str(len(entry["seeds"]))]
        for metric in metrics:
            stat = entry["metrics"][metric]
            row.append(f"{100 * stat['mean']:.2f} ± {100 * stat['se']:.2f}")
            diff = paired.get(name, {}).get(metric)
            row.append("—" if diff is None else f"{100 * diff['mean']:+.2f} ± {100 * diff['se']:.2f}")
        lines.append("| " + " | ".join(row) + " |")
    control = paired.get(CONTROL)
    if control:
        noise = ", ".join(f"{m[5:]} {100 * control[m]['mean']:+.2f} ± {100 * control[m]['se']:.2f}" for m in metrics)
        lines.append(f"\nA/A control (chance alone) vs GRPO: {noise} points.")
    return "\n".join(lines)


def plot_pareto(summary: dict[str, Any], x_metric: str, y_metric: str, path: Path, title: str) -> Path:
    """One point per method at (mean x, mean y) over seeds with ±1 s.e. error bars; GRPO, the A/A control and
    MaxRL drawn apart so that they are found at a glance."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10.5, 5.2))
    ax = fig.subplots()
    markers = {BASELINE: ("s", "black"), CONTROL: ("D", "grey"), PEER: ("^", "tab:red")}
    # the other methods' colours leave out red and grey, which mark MaxRL and the control
    palette = iter(f"C{i}" for i in itertools.cycle((0, 1, 2, 4, 5, 6, 8, 9)))
    for name, entry in summary.items():
        x, y = entry["metrics"][x_metric], entry["metrics"][y_metric]
        marker, color = markers[name] if name in markers else ("o", next(palette))
        ax.errorbar(100 * x["mean"], 100 * y["mean"], xerr=100 * x["se"], yerr=100 * y["se"], fmt=marker,
                    color=color, markersize=8 if name in markers else 6, capsize=3,
                    label=f"{entry['label']} ({len(entry['seeds'])} seeds)")  # fmt: skip
    ax.set(xlabel=f"held-out {x_metric[5:]} (%)", ylabel=f"held-out {y_metric[5:]} (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes: no point hidden
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def mean_std_se(values: Sequence[float]) -> dict[str, float]:
    """``{"mean", "std", "se", "n"}`` of ``values`` (sample std; the s.e. is :func:`~pkpo_trl.metrics.mean_se`'s;
    std and se are 0 for one value, so that one seed's report compares plain values)."""
    x = torch.tensor([float(v) for v in values], dtype=torch.float64)
    if len(x) == 1:
        return {"mean": x.item(), "std": 0.0, "se": 0.0, "n": 1}
    return {**mean_se(x), "std": x.std().item(), "n": len(x)}


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


def check_targets(summary: dict[str, Any], targets: Sequence[tuple[str, float | str]],
                  paired: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:  # fmt: skip
    """For every method but GRPO and the control: each target's value against GRPO's and whether it is met. An
    ``"se"`` target (issue 20's rule) is met when the method's mean is at most one standard error below GRPO's: the
    paired s.e. of the per-seed differences where ``paired`` has it, else GRPO's own s.e. over seeds."""
    if BASELINE not in summary:
        return {}
    grpo, out = summary[BASELINE]["metrics"], {}
    for name in (n for n in summary if n not in (BASELINE, "no_update")):
        checks = {}
        for metric, factor in targets:
            mine, base = summary[name]["metrics"][metric]["mean"], grpo[metric]
            if factor == "se":
                diff = (paired or {}).get(name, {}).get(metric)
                se, kind = (diff["se"], "paired s.e.") if diff and diff["n"] > 1 else (base["se"], "GRPO's s.e.")
                value, met = mine - base["mean"], mine - base["mean"] >= -se
                text = f"{100 * value:+.2f} points vs GRPO ({kind} {100 * se:.2f})"
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
    grpo = summary.get(BASELINE, {}).get("metrics", {})
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
                    s["label"] + _efficiency_label(results, subset, name): {
                        "pass@k": {str(k): s["metrics"][f"eval/{subset}/pass@{k}"] for k in ks}
                    }
                    for name, s in summary.items()
                },
            },
        }
        title = f"{setting['name']}: held-out pass@k, {subset} prompts ({len(results['seeds'])} seeds)"
        path = stem.parent / f"{stem.name}_passk_{subset}.png"
        paths.append(plot_pass_at_k_curves(curves, path, title=title, ylabel="pass@k (±1 s.e. over seeds)"))
    return paths


def add_efficiency(results: dict[str, Any]) -> None:
    """Issue 27's additions to a results dict: test-time-scaling efficiency per subset with pass@k curves
    (:mod:`learning_efficiency`), issue 20's rule, and whether GRPO beats the starting model (admission)."""
    runs = results["runs"]
    before = {"passk_curves": results.get("before_rl_curves") or {}}
    subsets = list(runs[0].get("passk_curves") or {}) if runs else []
    labels = {name: entry["label"] for name, entry in results["summary"].items()}
    results["efficiency"] = {s: paired_efficiency(runs, s, before=before) for s in subsets}
    results["efficiency_markdown"] = "\n\n".join(
        efficiency_table(effs, labels, subset) for subset, effs in results["efficiency"].items() if effs
    )
    x_metric, y_metric = pareto_metrics(results["setting"])
    results["rule"] = rule_verdict(results["paired"], x_metric, y_metric, labels)
    grpo = [run["metrics"][x_metric] for run in runs if run["method"] == BASELINE]
    subset, key = x_metric.split("/")[1:]
    results["admission"] = admission(results["before_rl"][subset][key], grpo) if grpo else None


def rule_verdict(paired: dict[str, dict[str, Any]], keep: str, gain: str, labels: dict[str, str]) -> dict[str, Any]:
    """Issue 20's rule: a method passes when its ``keep`` metric (held-out pass@1) is at most one paired s.e.
    below GRPO's; among those that pass (the A/A control aside), the highest paired ``gain`` (hard pass@k) wins."""
    passing, lines = {}, []
    for name, diffs in paired.items():
        if keep not in diffs or gain not in diffs or not diffs[keep]["n"]:
            continue
        d, g = diffs[keep], diffs[gain]
        ok = d["n"] > 1 and d["mean"] >= -d["se"]
        if ok and name != CONTROL:
            passing[name] = g["mean"]
        lines.append(f"{labels.get(name, name)}: {keep[5:]} {100 * d['mean']:+.2f} ± {100 * d['se']:.2f}, "
                     f"{gain[5:]} {100 * g['mean']:+.2f} ± {100 * g['se']:.2f} -> "
                     + ("passes" if ok else "fails"))  # fmt: skip
    winner = max(passing, key=passing.get) if passing else None
    # MaxRL is beaten by a winner that passes where it fails, or that gains more where both pass
    beats_peer = winner is not None and winner != PEER and PEER in paired and (
        PEER not in passing or passing[winner] > passing[PEER])  # fmt: skip
    if not lines:
        return {"passing": {}, "winner": None, "beats_maxrl": False, "text": "Rule of issue 20: no method beside GRPO"}
    text = "Rule of issue 20 (pass@1 within one paired s.e. of GRPO; then the highest hard pass@k):\n- " + "\n- ".join(
        lines) + f"\nWinner: {labels.get(winner, winner) if winner else 'none passes'}"  # fmt: skip
    if winner and PEER in paired:
        text += "; beats MaxRL" if beats_peer else ("" if winner == PEER else "; does NOT beat MaxRL")
    return {"passing": passing, "winner": winner, "beats_maxrl": beats_peer, "text": text}


def _efficiency_label(results: dict[str, Any], subset: str, name: str) -> str:
    """`` · 1.52x@16, never@64``: a method's test-time-scaling efficiency for a plot's legend (none for GRPO)."""
    effs = results.get("efficiency", {}).get(subset, {}).get(name)
    if not effs or name == BASELINE:
        return ""
    parts = []
    for k0, entry in sorted(effs.items()):
        value = f"{entry['mean']:.2f}x" if entry["mean"] is not None else ("never" if entry["never"] else ">=")
        parts.append(f"{value}@{k0}" + ("*" if entry["n"] < entry["seeds"] else ""))
    return " · eff. " + ", ".join(parts)


def _path(stem: Path, suffix: str) -> Path:
    return stem.parent / f"{stem.name}{suffix}"  # not with_suffix: a tag like "lr0.0003" holds a dot


def finish(results: dict[str, Any], stem: Path) -> dict[str, Any]:
    """Summary, targets, tables and plots of ``results``; writes ``<stem>.json``."""
    results["summary"] = summarize(results["runs"])
    x_metric, y_metric = pareto_metrics(results["setting"])
    target_metrics = [metric for metric, _ in results["setting"]["targets"]]
    results["paired"] = paired_differences(results["runs"], list(dict.fromkeys([x_metric, y_metric, *target_metrics])))
    results["targets"] = check_targets(results["summary"], results["setting"]["targets"], results["paired"])
    results["table_markdown"] = markdown_table(results["summary"], results["setting"])
    add_efficiency(results)
    # issue 27's settings (those that keep pass@k curves) show the starting model as a row of the paired table
    before = results["before_rl"] if results.get("before_rl_curves") else None
    metrics = [x_metric, y_metric]
    results["paired_table_markdown"] = paired_table(results["summary"], results["paired"], metrics, before)
    stem.parent.mkdir(parents=True, exist_ok=True)
    results["out_dir"] = str(stem.parent)
    title = f"{results['setting']['description']}\n{results['machine']['date']}; mean ± 1 s.e. over seeds"
    pareto = plot_pareto(results["summary"], x_metric, y_metric, _path(stem, "_pareto.png"), title)
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
    if results.get("efficiency_markdown"):
        print("\nTest-time-scaling efficiency (GRPO's k / the k at which the method reaches GRPO's pass@k; paired by "
              "seed, mean ± s.e.):\n\n" + results["efficiency_markdown"])  # fmt: skip
    if results.get("rule"):
        print("\n" + results["rule"]["text"])
    if results.get("admission"):
        print("Admission (issue 27): " + results["admission"]["text"])
    print(f"\nFiles in {results['out_dir']}: " + ", ".join(results["paths"]))

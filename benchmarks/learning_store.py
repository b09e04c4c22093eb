"""The learning benchmark's run store: one JSON file per finished ``(method, seed)`` run, so that a matrix of
runs (issue 20) resumes where it stopped, and the check that a stored run still means what its method means.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

from learning_settings import METHOD_FIELDS, METHODS, Setting, rl_config

ROOT = Path(__file__).resolve().parents[1]


def method_config(args) -> dict[str, Any]:
    """The resolved values of :data:`METHOD_FIELDS` in a trainer's config (what a method is)."""
    return {key: getattr(args, key) for key in METHOD_FIELDS if hasattr(args, key)}


def comparable_method_config(recorded: dict[str, Any]) -> dict[str, Any]:
    """A recorded :func:`method_config` in today's spelling, so that run files stored before ``pkpo_k`` took one
    spec (CHANGELOG.md) still match their method: their ``pkpo_k_schedule`` / ``pkpo_k_mixture`` /
    ``pkpo_adaptive_k`` (+ ``pkpo_adaptive_k_min``) become the ``pkpo_k`` spec they meant, a k is compared as
    text (``8`` is ``"8"``), and an estimator without k (``maxrl``) records none."""
    from pkpo_trl import ESTIMATORS

    config = dict(recorded)
    schedule, mixture = config.pop("pkpo_k_schedule", None), config.pop("pkpo_k_mixture", None)
    adaptive, adaptive_min = config.pop("pkpo_adaptive_k", None), config.pop("pkpo_adaptive_k_min", 1)
    if "pkpo_k" not in config:  # a GRPO run
        return config
    if mixture is not None:  # a blend of two plain ks was "linear:8->1"; today that rounds k: "linear:8:1->1:1"
        head, _, body = mixture.partition(":")
        ends = body.split("->")
        blend = head in ("linear", "cosine") and len(ends) == 2 and all(end.isdigit() for end in ends)
        config["pkpo_k"] = f"{head}:{ends[0]}:1->{ends[1]}:1" if blend else mixture
    elif adaptive is not None:
        config["pkpo_k"] = f"adaptive:{adaptive_min}..{schedule or config['pkpo_k']}"
    elif schedule is not None:
        config["pkpo_k"] = schedule
    config["pkpo_k"] = str(config["pkpo_k"])
    if not ESTIMATORS[config.get("pkpo_estimator", "sloo_minus_one")].uses_k:
        del config["pkpo_k"]
    return config


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
        expected = comparable_method_config(json.loads(json.dumps(resolved_method_config(self.setting, method))))
        if recorded is not None and comparable_method_config(recorded) != expected:
            raise SystemExit(f"{path} was run with another configuration of {method!r} (e.g. older PKPOConfig "
                             f"defaults: {recorded}): move it away or rerun")  # fmt: skip
        return record["run"]

    def save(self, run: dict[str, Any]) -> None:
        path = self._path(run["method"], run["seed"])
        tmp = path.with_name(path.name + ".tmp")
        record = {"setting_fingerprint": self.fingerprint, "commit": _commit(), "run": run}
        tmp.write_text(json.dumps(record))
        tmp.replace(path)  # atomic: a killed run leaves no half-written file

    def before_rl(self) -> tuple[dict[str, Any] | None, dict[str, list[float]] | None]:
        """The initial model's held-out numbers and pass@k curves (None for a store written before curves were
        kept), measured once per setting (seeded: the same every time); ``(None, None)`` if not measured yet."""
        path = self.folder / "before_rl.json"
        if not path.is_file():
            return None, None
        record = json.loads(path.read_text())
        if record.get("setting_fingerprint") != self.fingerprint:
            return None, None
        return record["before_rl"], record.get("passk_curves")

    def save_before_rl(self, before: dict[str, Any], curves: dict[str, list[float]] | None = None) -> None:
        path = self.folder / "before_rl.json"
        record = {"setting_fingerprint": self.fingerprint, "before_rl": before, "passk_curves": curves}
        path.write_text(json.dumps(record))

    def log(self, message: str) -> None:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        with open(self.folder / "progress.log", "a") as handle:
            handle.write(f"{stamp} {message}\n")


def _commit() -> str | None:
    """The checkout's git commit (with ``+dirty`` for uncommitted changes), or None outside a git checkout;
    ``$PKPO_BENCH_COMMIT`` when set (run_queue.sh runs a snapshot of a commit, outside git)."""
    import os
    import subprocess

    if os.environ.get("PKPO_BENCH_COMMIT"):
        return os.environ["PKPO_BENCH_COMMIT"]

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
    for key, default in (("model_size", None), ("fresh_prompts", False)):  # fields added after runs were stored
        if spec.get(key, default) == default:
            spec.pop(key, None)
    spec["rl"] = rl_config(setting)
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]

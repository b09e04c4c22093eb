"""Two processes on CPU (`accelerate launch --multi_gpu --num_processes 2`, torchrun with gloo):
each rank's advantages are its slice of the PKPO transform of the rewards gathered from both."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pkpo_trl import transform_rewards

SCRIPT = Path(__file__).parent / "scripts" / "distributed_pkpo.py"


@pytest.mark.slow
def test_two_processes_train_and_slice_the_gathered_transform(tmp_path):
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    cmd = [
        accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29533",
        str(SCRIPT), str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]

    ranks = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert [r["finished_steps"] for r in ranks] == [3, 3]
    assert ranks[0]["gathered_rewards"] == ranks[1]["gathered_rewards"], "ranks disagree on the gathered rewards"

    for step, gathered in enumerate(ranks[0]["gathered_rewards"]):
        # The group of 6 completions of one prompt sits on both ranks (3 each).
        assert set(ranks[0]["local_prompts"][step]) == set(ranks[1]["local_prompts"][step])
        expected = transform_rewards(torch.tensor(gathered).view(-1, 6), 3).view(-1)
        for rank, record in enumerate(ranks):
            local = torch.tensor(record["local_advantages"][step])
            torch.testing.assert_close(local, expected[rank * 3 : (rank + 1) * 3], rtol=1e-5, atol=1e-6)
            seen = torch.tensor(record["loss_advantages"][step])
            torch.testing.assert_close(seen.sort().values, local.sort().values)
    assert all(torch.isfinite(torch.tensor(r["losses"])).all() for r in ranks)

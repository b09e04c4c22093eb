"""recipes/slurm/pkpo_multinode.sh, run as on a SLURM job from fake SLURM variables: its dry run prints, per node,
the `vllm serve` command TRL builds and one `accelerate launch` per training node, whose ranks, rendezvous and
server address are read back with accelerate's and TRL's own parsers; its real mode hands those same commands to
srun (a stand-in `srun` on PATH records them)."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest
from helpers import ROOT

SCRIPT = ROOT / "recipes" / "slurm" / "pkpo_multinode.sh"
RECIPE = "recipes/gemma2_2b_it_gsm8k_lora_vllm_server.yaml"
SLURM = {"SLURM_JOB_NODELIST": "gpu[07-09],gpu12", "SLURM_GPUS_ON_NODE": "4", "VLLM_PORT": "8123",
         "MAIN_PORT": "29777"}  # fmt: skip


def _run(*args: str, path: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, **SLURM, **env}
    if path is not None:
        environ["PATH"] = f"{path}{os.pathsep}{environ['PATH']}"
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=environ, capture_output=True, text=True)


def _dry_run(**env: str) -> dict[str, list[str]]:
    """``{host: command tokens}`` from the dry run's ``# host: ...`` headers and the command under each."""
    result = _run("--dry-run", "--max_steps", "7", **env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    return {header[2:].split(":")[0]: shlex.split(command) for header, command in zip(lines[::2], lines[1::2])}


def _trainer_config(script_args: list[str]):
    from trl import GRPOConfig, ModelConfig, TrlParser

    from pkpo_trl.data import DataArguments
    from pkpo_trl.train import TrainScriptArguments

    parser = TrlParser((TrainScriptArguments, DataArguments, GRPOConfig, ModelConfig))
    # --use_cpu: TrainingArguments refuses the recipe's bf16 on a machine without a bf16 GPU otherwise.
    return parser.parse_args_and_config(args=[*script_args, "--use_cpu", "true"], fail_with_unknown_args=False)[2]


def test_dry_run_gives_each_training_node_its_rank_and_the_server_address(monkeypatch):
    from accelerate.commands.launch import launch_command_parser

    monkeypatch.chdir(ROOT)
    commands = _dry_run()
    assert list(commands) == ["gpu12", "gpu07", "gpu08", "gpu09"]  # the last node serves, the others train
    for rank, host in enumerate(["gpu07", "gpu08", "gpu09"]):
        tokens = commands[host]
        assert tokens[:2] == ["accelerate", "launch"]
        launch = launch_command_parser().parse_args(tokens[2:])
        assert (launch.machine_rank, launch.num_machines, launch.num_processes) == (rank, 3, 12)  # 3 nodes x 4 GPUs
        assert (launch.main_process_ip, launch.main_process_port) == ("gpu07", 29777)  # rendezvous: rank 0's node
        assert launch.config_file == "recipes/accelerate/multi_gpu.yaml" and launch.training_script == "pkpo_trl.train"
        config = _trainer_config(launch.training_script_args)
        assert (config.use_vllm, config.vllm_mode) == (True, "server")
        assert (config.vllm_server_host, config.vllm_server_port) == ("gpu12", 8123)
        assert config.vllm_server_base_url is None  # it would override host and port
        assert config.max_steps == 7  # extra arguments reach pkpo-train


def test_dry_run_serves_the_recipes_model_with_trls_own_serve_command():
    from trl.scripts.vllm_serve import ScriptArguments, build_command

    tokens = _dry_run()["gpu12"]
    assert tokens[:2] == ["env", "VLLM_SERVER_DEV_MODE=1"]  # TRL sets it: the weight-transfer endpoints need it
    args = ScriptArguments(model="google/gemma-2-2b-it", dtype="bfloat16", port=8123, data_parallel_size=4)
    built = build_command(args)
    expected = ["vllm", *built[built.index("serve") :]]
    # build_command adds --enable-scale-out only when vLLM >= 0.30 is installed; the [vllm] extra installs 0.31.
    assert [t for t in tokens[2:] if t != "--enable-scale-out"] == [t for t in expected if t != "--enable-scale-out"]


def test_settings_choose_nodes_config_and_server_parallelism():
    commands = _dry_run(TRAIN_NODES="2", ACCELERATE_CONFIG="recipes/accelerate/zero3.yaml", VLLM_TP="2")
    assert list(commands) == ["gpu09", "gpu07", "gpu08"]  # gpu12 is left idle
    server = commands["gpu09"]
    assert server[server.index("--tensor-parallel-size") + 1 :][:3] == ["2", "--data-parallel-size", "2"]
    train = commands["gpu08"]
    assert train[train.index("--config_file") + 1] == "recipes/accelerate/zero3.yaml"
    assert train[train.index("--num_processes") + 1] == "8" and train[train.index("--machine_rank") + 1] == "1"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (dict(TRAIN_NODES="4"), "TRAIN_NODES=4 needs 5 nodes (one more serves vLLM); the job has 4"),
        (dict(RECIPE="recipes/missing.yaml"), "RECIPE=recipes/missing.yaml: no such file"),
        (dict(VLLM_TP="3"), "VLLM_TP=3 does not divide GPUS_PER_NODE=4"),
        (dict(SLURM_JOB_NODELIST=""), "SLURM_JOB_NODELIST is not set"),
    ],
)
def test_a_wrong_setting_is_one_line_naming_it(env, message):
    result = _run("--dry-run", **env)
    assert result.returncode == 2 and result.stdout == ""
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_the_job_hands_the_dry_runs_commands_to_srun(tmp_path):
    log = tmp_path / "srun.log"
    srun = tmp_path / "srun"
    srun.write_text(f'#!/usr/bin/env bash\nprintf "%s\\0" "$@" >> {shlex.quote(str(log))}\necho >> {log}\n')
    srun.chmod(0o755)
    result = _run("--max_steps", "7", path=tmp_path)
    assert result.returncode == 0, result.stderr
    calls = [call.split("\0") for call in log.read_text().split("\0\n")[:-1]]
    server, train = sorted(calls, key=lambda call: "bash" in call)  # the server starts first, in the background
    dry = _dry_run()
    assert server[:3] == ["--nodes=1", "--ntasks=1", "--nodelist=gpu12"] and server[3:] == dry["gpu12"]
    assert train[:4] == ["--nodes=3", "--ntasks=3", "--ntasks-per-node=1", "--nodelist=gpu07,gpu08,gpu09"]
    assert train[4:6] == ["bash", "-c"]
    # Each task expands $SLURM_PROCID, its rank in the step, into the dry run's command for that node.
    for rank, host in enumerate(["gpu07", "gpu08", "gpu09"]):
        assert shlex.split(train[6].replace("$SLURM_PROCID", str(rank))) == dry[host]

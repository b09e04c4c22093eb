"""Run under `accelerate launch --multi_gpu --num_processes 2` on a CPU machine (torchrun + gloo), as one machine
or as two (`--num_machines 2 --machine_rank 0/1`).

`distributed_pkpo.py OUT_DIR [--num_generations N] [--per_device_batch B] [--k K] [--lora]`: a few PKPOTrainer
steps; each rank writes the gathered rewards, the advantages that reached its loss and how its model's parameters
are held (FSDP2 shards them as DTensors) to OUT_DIR/rank{i}.json. The defaults (6, 3, 3) put one prompt's group on
both ranks, 3 completions each."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
from datasets import Dataset

from pkpo_trl import PKPOConfig, PKPOTrainer
from pkpo_trl.tiny import build_char_tokenizer, build_tiny_gemma2


class Recording(PKPOTrainer):
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        gathered = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self.record["gathered_rewards"].append(gathered[:, 0].tolist())
        self.record["local_prompts"].append(list(prompts))
        return gathered

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        self.record["local_advantages"].append(output["advantages"].tolist())
        return output

    def _compute_loss(self, model, inputs):
        self.record["loss_advantages"].append(inputs["advantages"].tolist())
        loss = super()._compute_loss(model, inputs)
        self.record["losses"].append(loss.item())
        return loss


def reward(completion_ids, **kwargs):
    return [float(sum(ids) % 5) / 4 for ids in completion_ids]


def _parameter_layout(model: torch.nn.Module) -> dict:
    """How this rank holds the trained model: FSDP2 modules, DTensor parameters, and the trainable parameters'
    local (this rank's shard) and full element counts."""
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor

    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    return {
        "fsdp_modules": sum(isinstance(m, FSDPModule) for m in model.modules()),
        "dtensor": sum(isinstance(p, DTensor) for p in params),
        "total": len(params),
        "trainable": len(trainable),
        "trainable_local_numel": sum((p.to_local() if isinstance(p, DTensor) else p).numel() for p in trainable),
        "trainable_numel": sum(p.numel() for p in trainable),
    }


def main(out_dir: str, num_generations: int, per_device_batch: int, k: int, lora: bool) -> None:
    tokenizer = build_char_tokenizer()
    model = build_tiny_gemma2(len(tokenizer))
    data = Dataset.from_dict({"prompt": [f"{i}*{i}=" for i in range(32)]})
    args = PKPOConfig(
        output_dir=str(Path(out_dir) / "run"),
        per_device_train_batch_size=per_device_batch,
        num_generations=num_generations,
        max_completion_length=5,
        max_steps=3,
        learning_rate=1e-2,
        report_to="none",
        logging_steps=1,
        save_strategy="no",
        use_cpu=True,
        pkpo_k=k,
        pkpo_estimator="sloo_minus_one",
        scale_rewards="none",
        gradient_checkpointing=False,
    )
    peft_config = None
    if lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = Recording(model, reward, args=args, train_dataset=data, processing_class=tokenizer,
                        peft_config=peft_config)  # fmt: skip
    trainer.record = {
        "gathered_rewards": [],
        "local_prompts": [],
        "local_advantages": [],
        "loss_advantages": [],
        "losses": [],
    }
    trainer.train()
    rank = trainer.accelerator.process_index
    record = dict(trainer.record, rank=rank, world_size=trainer.accelerator.num_processes)
    record["finished_steps"] = trainer.state.global_step
    record["params"] = _parameter_layout(trainer.model_wrapped)
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(record))
    assert torch.isfinite(torch.tensor(record["losses"])).all()
    # Both ranks have written their records; skip the interpreter's teardown. On a loaded 2-core machine (CI, and a
    # local full suite beside a benchmark) gloo's threads were torn down unjoined there, after all 3 steps, with
    # or without destroy_process_group(): "terminate called without an active exception", SIGABRT. That is
    # torch's exit, not what this test checks (the records are).
    trainer.accelerator.wait_for_everyone()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--num_generations", type=int, default=6)
    parser.add_argument("--per_device_batch", type=int, default=3)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--lora", action="store_true")
    main(**vars(parser.parse_args()))

"""Run under `accelerate launch --multi_gpu --num_processes 2` on a CPU machine (torchrun + gloo), as one machine
or as two (`--num_machines 2 --machine_rank 0/1`).

`distributed_pkpo.py OUT_DIR [NUM_GENERATIONS PER_DEVICE_BATCH K]`: a few PKPOTrainer steps; each rank writes the
gathered rewards and the advantages that reached its loss to OUT_DIR/rank{i}.json. The defaults (6, 3, 3) put one
prompt's group on both ranks, 3 completions each."""

from __future__ import annotations

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


def main(out_dir: str, num_generations: int = 6, per_device_batch: int = 3, k: int = 3) -> None:
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
    trainer = Recording(model, reward, args=args, train_dataset=data, processing_class=tokenizer)
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
    main(sys.argv[1], *(int(value) for value in sys.argv[2:]))

#!/usr/bin/env bash
# PKPO on several nodes with SLURM, laid out as TRL's docs lay out GRPO: TRAIN_NODES nodes train with
# `accelerate launch` (one accelerate "machine" each, `--machine_rank $SLURM_PROCID`, rendezvous on the first
# training node), one more node runs `vllm serve` and generates for all of them (TRL's vllm_mode="server"; TRL
# >= 1.11 talks to vLLM's own server, `trl vllm-serve` is deprecated). See docs/scaling.md.
#
#   sbatch --nodes=5 --ntasks-per-node=1 --gpus-per-node=8 recipes/slurm/pkpo_multinode.sh    # 4 training + 1 vLLM
#   SLURM_JOB_NODELIST='gpu[01-05]' SLURM_GPUS_ON_NODE=8 recipes/slurm/pkpo_multinode.sh --dry-run
#
# Run from the repository root (sbatch starts the script in the submission directory). Settings, as environment
# variables (sbatch passes the submitting shell's):
#   RECIPE             training recipe (default recipes/gemma2_2b_it_gsm8k_lora_vllm_server.yaml); its
#                      model_name_or_path and dtype are what the server loads
#   ACCELERATE_CONFIG  accelerate config (default recipes/accelerate/multi_gpu.yaml; zero3.yaml or fsdp.yaml shard
#                      a model that does not fit one GPU, see docs/scaling.md)
#   TRAIN_NODES        training nodes (default: every node of the job but the last, which serves vLLM)
#   GPUS_PER_NODE      GPUs per node (default SLURM_GPUS_ON_NODE, else 8); every training GPU runs one process
#   MAIN_PORT          rendezvous port on the first training node (default 29500)
#   VLLM_PORT          the server's HTTP port (default 8000); the trainers get it as --vllm_server_port
#   VLLM_TP            the server's tensor-parallel size (default 1); data-parallel size GPUS_PER_NODE / VLLM_TP
#   DRY_RUN=1 (or --dry-run as first argument): print the command each node would run, start nothing
# Further arguments go to pkpo-train, after the recipe (e.g. --max_steps 10 --report_to wandb).
#SBATCH --job-name=pkpo
#SBATCH --ntasks-per-node=1
#SBATCH --exclusive
set -euo pipefail

if [[ "${1:-}" == "--dry-run" ]]; then
  DRY_RUN=1
  shift
fi
DRY_RUN=${DRY_RUN:-0}
RECIPE=${RECIPE:-recipes/gemma2_2b_it_gsm8k_lora_vllm_server.yaml}
ACCELERATE_CONFIG=${ACCELERATE_CONFIG:-recipes/accelerate/multi_gpu.yaml}
GPUS_PER_NODE=${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-8}}
MAIN_PORT=${MAIN_PORT:-29500}
VLLM_PORT=${VLLM_PORT:-8000}
VLLM_TP=${VLLM_TP:-1}

fail() { echo "pkpo_multinode.sh: $*" >&2; exit 2; }
[[ -n "${SLURM_JOB_NODELIST:-}" ]] || fail "SLURM_JOB_NODELIST is not set: submit with sbatch (or set it for --dry-run)"
[[ -f "$RECIPE" ]] || fail "RECIPE=$RECIPE: no such file (run from the repository root)"
[[ -f "$ACCELERATE_CONFIG" ]] || fail "ACCELERATE_CONFIG=$ACCELERATE_CONFIG: no such file"
(( GPUS_PER_NODE % VLLM_TP == 0 )) || fail "VLLM_TP=$VLLM_TP does not divide GPUS_PER_NODE=$GPUS_PER_NODE"

# The job's hosts, one per line: scontrol where SLURM is, else (a dry run elsewhere) the same expansion of
# "gpu[01-03,07],login1" in Python.
if command -v scontrol >/dev/null; then
  mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
else
  mapfile -t NODES < <(python3 - "$SLURM_JOB_NODELIST" <<'PY'
import re, sys
for prefix, ranges, plain in re.findall(r"([^,\[]+)\[([^\]]+)\]|([^,\[\]]+)", sys.argv[1]):
    if plain:
        print(plain)
        continue
    for part in ranges.split(","):
        low, _, high = part.partition("-")
        for i in range(int(low), int(high or low) + 1):
            print(f"{prefix}{i:0{len(low)}d}")
PY
  )
fi
TRAIN_NODES=${TRAIN_NODES:-$(( ${#NODES[@]} - 1 ))}
(( TRAIN_NODES >= 1 && TRAIN_NODES < ${#NODES[@]} )) ||
  fail "TRAIN_NODES=$TRAIN_NODES needs $(( TRAIN_NODES + 1 )) nodes (one more serves vLLM); the job has ${#NODES[@]}"
TRAIN_HOSTS=("${NODES[@]:0:TRAIN_NODES}")
VLLM_HOST=${NODES[TRAIN_NODES]}

read -r MODEL DTYPE < <(python3 -c '
import sys, yaml
recipe = yaml.safe_load(open(sys.argv[1]))
print(recipe["model_name_or_path"], recipe.get("dtype") or "auto")' "$RECIPE")

# The server: TRL's own command (trl/scripts/vllm_serve.py:build_command, tests/test_slurm.py compares them);
# VLLM_SERVER_DEV_MODE=1 opens the weight-transfer endpoints TRL pushes the trained weights through.
SERVE=(env VLLM_SERVER_DEV_MODE=1 vllm serve "$MODEL" --host 0.0.0.0 --port "$VLLM_PORT"
  --tensor-parallel-size "$VLLM_TP" --data-parallel-size "$(( GPUS_PER_NODE / VLLM_TP ))"
  --gpu-memory-utilization 0.9 --dtype "$DTYPE" --kv-cache-dtype auto --model-impl vllm --uvicorn-log-level info
  --enable-scale-out --weight-transfer-config '{"backend": "nccl"}' --logprobs-mode processed_logprobs
  --max-logprobs -1)

train_command() {  # $1: the machine rank (a number, or the literal $SLURM_PROCID that srun's task expands)
  local launch=(accelerate launch --config_file "$ACCELERATE_CONFIG" --num_machines "$TRAIN_NODES"
    --num_processes "$(( TRAIN_NODES * GPUS_PER_NODE ))" --main_process_ip "${TRAIN_HOSTS[0]}"
    --main_process_port "$MAIN_PORT" -m pkpo_trl.train --config "$RECIPE" --use_vllm true --vllm_mode server
    --vllm_server_host "$VLLM_HOST" --vllm_server_port "$VLLM_PORT" "${@:2}")
  printf '%q ' "${launch[@]:0:6}"
  printf -- '--machine_rank %s ' "$1"
  printf '%q ' "${launch[@]:6}"
  echo
}

if [[ "$DRY_RUN" == 1 ]]; then
  echo "# $VLLM_HOST: vLLM server"
  printf '%q ' "${SERVE[@]}"; echo
  for rank in "${!TRAIN_HOSTS[@]}"; do
    echo "# ${TRAIN_HOSTS[rank]}: training machine $rank of $TRAIN_NODES"
    train_command "$rank" "$@"
  done
  exit 0
fi

srun --nodes=1 --ntasks=1 --nodelist="$VLLM_HOST" "${SERVE[@]}" &
server=$!
# The trainers wait for the server themselves (vllm_server_timeout, 600 s in the server recipe).
status=0
srun --nodes="$TRAIN_NODES" --ntasks="$TRAIN_NODES" --ntasks-per-node=1 --nodelist="$(IFS=,; echo "${TRAIN_HOSTS[*]}")" \
  bash -c "$(train_command '$SLURM_PROCID' "$@")" || status=$?
kill "$server" 2>/dev/null || true  # the server serves until stopped (or has failed, and the trainers with it)
exit "$status"

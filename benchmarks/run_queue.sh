#!/usr/bin/env bash
# Runs the bench_learning.py argument lines of a queue file (one command per line; blank lines and '#' comments
# skipped) one after another, from a snapshot of the committed code (`git archive HEAD` under $TMPDIR), so that
# editing the checkout cannot change a run in progress. Relative paths (--out) are the checkout's. One torch thread.
# Every bench_learning --matrix command is resumable: run the same queue again and finished runs are skipped, so a
# killed queue loses at most the run in progress. The queue file is copied at start (edit it, then restart).
#
#   nohup nice -n 15 benchmarks/run_queue.sh QUEUE_FILE >> LOG 2>&1 &
#
# with the project's virtual environment active (or PYTHON=/path/to/its/python).
set -u
"${PYTHON:-python}" -c "import torch, trl" || { echo "run_queue.sh: no torch/trl in ${PYTHON:-python}: activate the venv"; exit 1; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
QUEUE=$(realpath "$1")
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD)
SNAP=${TMPDIR:-/tmp}/pkpo_queue_$COMMIT
if [ ! -d "$SNAP" ]; then
  rm -rf "$SNAP.part" && mkdir -p "$SNAP.part"
  git -C "$ROOT" archive HEAD benchmarks pkpo_trl | tar -x -C "$SNAP.part" && mv "$SNAP.part" "$SNAP"
fi
cp "$QUEUE" "$SNAP/queue.$$"
export PYTHONPATH=$SNAP OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PKPO_BENCH_COMMIT=$COMMIT
cd "$ROOT"
while IFS= read -r line; do
  case "$line" in '' | '#'*) continue ;; esac
  echo "$(date -u '+%F %T UTC') queue ($COMMIT): $line"
  # shellcheck disable=SC2086  # the line is a list of arguments
  "${PYTHON:-python}" "$SNAP/benchmarks/bench_learning.py" $line || {
    status=$?
    echo "$(date -u '+%F %T UTC') queue: failed with exit $status"
  }
done < "$SNAP/queue.$$"
echo "$(date -u '+%F %T UTC') queue: done"

#!/bin/bash
# Queue the tune array (N workers, default 8) and the train job that waits for it.
#   SEQCLF_STORAGE=... SEQCLF_DATA=... SEQCLF_OUTPUT=... bash examples/slurm/submit.sh [N]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
workers="${1:-8}"
tune_job=$(sbatch --parsable --array="0-$((workers - 1))" "$here/tune-array.sbatch")
train_job=$(sbatch --parsable --dependency="afterany:${tune_job}" "$here/train.sbatch")
echo "tune array ${tune_job} (${workers} workers), then train ${train_job}"

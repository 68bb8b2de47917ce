#!/usr/bin/env bash
# Train on a SLURM GPU cluster: one process per node, each driving all GPUs of its node.
#
#   sbatch --nodes=4 scripts/launch_slurm.sh CONFIG WORKDIR [--config.x=y ...]
#   e.g. sbatch --nodes=2 scripts/launch_slurm.sh configs/opt.py:paper /shared/runs/opt
#
# srun starts the same command on every node; OUTEFFHOP_DISTRIBUTED=1 makes
# scripts/train.py call jax.distributed.initialize(), which reads the coordinator address,
# process count and process id from SLURM's environment. WORKDIR must be on a filesystem
# every node sees. Resubmitting the same job resumes from the newest checkpoint.
#SBATCH --job-name=outeffhop
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=16
#SBATCH --time=48:00:00
#SBATCH --output=slurm-%j.out
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: sbatch $0 CONFIG WORKDIR [--config.x=y ...]" >&2
  exit 2
fi
CONFIG="$1" WORKDIR="$2"
shift 2
cd "${SLURM_SUBMIT_DIR:-.}"
PYTHON="${PYTHON:-.venv/bin/python}"
srun --kill-on-bad-exit=1 env OUTEFFHOP_DISTRIBUTED=1 \
  "$PYTHON" scripts/train.py --config "$CONFIG" --workdir "$WORKDIR" "$@"

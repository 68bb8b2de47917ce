#!/usr/bin/env bash
# Train on a SLURM GPU cluster: one task (JAX process) per GPU.
#
#   sbatch --nodes=4 scripts/launch_slurm.sh CONFIG WORKDIR [--config.x=y ...]
#   e.g. sbatch --nodes=2 scripts/launch_slurm.sh configs/opt.py:paper /shared/runs/opt
#
# srun starts --ntasks-per-node copies of the command on every node; OUTEFFHOP_DISTRIBUTED=1
# makes scripts/train.py call jax.distributed.initialize(), which reads the coordinator
# address, process count and process id from SLURM's environment, with local_device_ids
# from outeffhop.train.sharding.local_device_ids: task SLURM_LOCALID drives GPU
# SLURM_LOCALID (GPU 0 when SLURM binds one GPU per task, all GPUs with one task per node;
# $JAX_LOCAL_DEVICE_IDS overrides). Set --ntasks-per-node to the GPUs per node.
# Each output line is prefixed with its task id (srun --label). WORKDIR must be on a
# filesystem every node sees. Resubmitting the same job resumes from the newest checkpoint.
# Plan first (compiles the step for the mesh, no data, no GPU time):
#   python scripts/train.py --config CONFIG --workdir DIR --config.dry_run=True
#SBATCH --job-name=outeffhop
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=12
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
srun --kill-on-bad-exit=1 --label env OUTEFFHOP_DISTRIBUTED=1 \
  "$PYTHON" scripts/train.py --config "$CONFIG" --workdir "$WORKDIR" "$@"

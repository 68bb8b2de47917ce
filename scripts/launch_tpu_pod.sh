#!/usr/bin/env bash
# Train on every worker of a Cloud TPU pod slice; each worker runs the same command.
#
#   scripts/launch_tpu_pod.sh TPU_NAME ZONE CONFIG WORKDIR [--config.x=y ...]
#   e.g. scripts/launch_tpu_pod.sh my-v4-32 us-central2-b configs/bert.py:paper /mnt/shared/bert
#
# OUTEFFHOP_DISTRIBUTED=1 makes scripts/train.py call jax.distributed.initialize(), which
# finds the pod's coordinator and process ids by itself. WORKDIR must be one directory that
# every worker sees (a Filestore/NFS mount or a gcsfuse-mounted bucket): orbax writes each
# worker's shards there, process 0 writes metrics.jsonl and tb/. Re-running the same command
# after a preemption resumes from the newest checkpoint. The repository and its .venv are
# expected at $REPO (default ~/outeffhop) on every worker, e.g. after
#   gcloud compute tpus tpu-vm ssh NAME --zone ZONE --worker=all --command \
#     "git clone URL ~/outeffhop && cd ~/outeffhop && python3 -m venv .venv && \
#      .venv/bin/pip install -e . 'jax[tpu]'"
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 TPU_NAME ZONE CONFIG WORKDIR [--config.x=y ...]" >&2
  exit 2
fi
TPU="$1" ZONE="$2" CONFIG="$3" WORKDIR="$4"
shift 4
REPO="${REPO:-~/outeffhop}"
EXTRA=""
for a in "$@"; do EXTRA="$EXTRA $(printf '%q' "$a")"; done
gcloud compute tpus tpu-vm ssh "$TPU" --zone "$ZONE" --worker=all --command \
  "cd $REPO && OUTEFFHOP_DISTRIBUTED=1 .venv/bin/python scripts/train.py \
   --config $(printf '%q' "$CONFIG") --workdir $(printf '%q' "$WORKDIR")$EXTRA"

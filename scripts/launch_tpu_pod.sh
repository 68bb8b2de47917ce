#!/usr/bin/env bash
# Train on every worker of a Cloud TPU pod slice; each worker runs the same command and
# writes its own log, LOGDIR/worker-<i>.log on this machine.
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
# One ssh per worker runs in the background; the script waits for all of them and exits 1
# (naming the worker and its log) if any failed. NUM_WORKERS (default: the slice's network
# endpoints from `gcloud ... describe`) and LOGDIR (default logs/TPU_NAME-DATE) override.
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 TPU_NAME ZONE CONFIG WORKDIR [--config.x=y ...]" >&2
  exit 2
fi
TPU="$1" ZONE="$2" CONFIG="$3" WORKDIR="$4"
shift 4
REPO="${REPO:-~/outeffhop}"
LOGDIR="${LOGDIR:-logs/$TPU-$(date +%Y%m%d-%H%M%S)}"
if [ -z "${NUM_WORKERS:-}" ]; then
  ENDPOINTS=$(gcloud compute tpus tpu-vm describe "$TPU" --zone "$ZONE" \
    --format='value(networkEndpoints[].ipAddress)')
  NUM_WORKERS=$(echo "$ENDPOINTS" | tr ';,' '\n\n' | grep -c .)
fi
EXTRA=""
for a in "$@"; do EXTRA="$EXTRA $(printf '%q' "$a")"; done
CMD="cd $REPO && OUTEFFHOP_DISTRIBUTED=1 .venv/bin/python scripts/train.py \
--config $(printf '%q' "$CONFIG") --workdir $(printf '%q' "$WORKDIR")$EXTRA"
mkdir -p "$LOGDIR"
echo "launching $NUM_WORKERS workers of $TPU; logs in $LOGDIR/worker-<i>.log" >&2
pids=()
for ((w = 0; w < NUM_WORKERS; w++)); do
  gcloud compute tpus tpu-vm ssh "$TPU" --zone "$ZONE" --worker="$w" --command "$CMD" \
    >"$LOGDIR/worker-$w.log" 2>&1 &
  pids+=($!)
done
status=0
for w in "${!pids[@]}"; do
  if ! wait "${pids[$w]}"; then
    echo "worker $w failed; see $LOGDIR/worker-$w.log" >&2
    status=1
  fi
done
exit $status

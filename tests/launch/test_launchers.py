"""Launchers: which GPUs each SLURM task drives (simulated environments), and the scripts'
commands run against stand-ins for srun and gcloud."""

import os
import re
import stat
import subprocess

import pytest

from outeffhop.train.sharding import local_device_ids
from tests import ROOT


def slurm_env(nodes, tasks_per_node, localid, nodeid, gpus="0,1,2,3,4,5,6,7", **extra):
    """The variables srun sets for one task (SLURM 23: names as in its documentation)."""
    env = {
        "SLURM_JOB_ID": "4242",
        "SLURM_NTASKS": str(nodes * tasks_per_node),
        "SLURM_NNODES": str(nodes),
        "SLURM_STEP_NUM_NODES": str(nodes),
        "SLURM_STEP_NODELIST": f"gpu[001-{nodes:03d}]",
        "SLURM_NODEID": str(nodeid),
        "SLURM_LOCALID": str(localid),
        "SLURM_PROCID": str(nodeid * tasks_per_node + localid),
        "SLURM_STEP_TASKS_PER_NODE": f"{tasks_per_node}(x{nodes})",
    }
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpus
    env.update(extra)
    return env


def devices_by_node(nodes, tasks_per_node, **kw):
    """{node: [local device ids of each task]} for every task of a job."""
    tasks = range(tasks_per_node)
    return {
        n: [local_device_ids(slurm_env(nodes, tasks_per_node, i, n, **kw)) for i in tasks]
        for n in range(nodes)
    }


def test_one_task_per_gpu_drives_each_gpu_once():
    for node, ids in devices_by_node(2, 8).items():
        assert ids == [[i] for i in range(8)], node


def test_one_task_per_node_drives_all_gpus_not_only_localid():
    # JAX's own SLURM detection would give local_device_ids=[SLURM_LOCALID] = [0] here.
    assert devices_by_node(2, 1) == {0: [list(range(8))], 1: [list(range(8))]}


def test_gpu_bound_tasks_and_even_splits():
    # srun --gpus-per-task=1: SLURM shows each task only its own GPU, which is device 0.
    for localid in range(8):
        assert local_device_ids(slurm_env(1, 8, localid, 0, gpus=str(localid))) == [0]
    assert devices_by_node(1, 2)[0] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    # without CUDA_VISIBLE_DEVICES the count comes from SLURM_GPUS_ON_NODE
    env = slurm_env(1, 4, 3, 0, gpus=None, SLURM_GPUS_ON_NODE="8")
    assert local_device_ids(env) == [6, 7]


def test_uneven_layouts_fail_and_overrides_win():
    with pytest.raises(ValueError, match="3 tasks on a node with 8 visible GPUs"):
        local_device_ids(slurm_env(1, 3, 0, 0))
    assert local_device_ids(slurm_env(1, 8, 5, 0, JAX_LOCAL_DEVICE_IDS="2,3")) == [2, 3]
    assert local_device_ids({"CUDA_VISIBLE_DEVICES": "0,1"}) is None  # not SLURM: all
    assert local_device_ids(slurm_env(1, 8, 0, 0, gpus="")) is None  # CPU job: JAX decides
    env = slurm_env(2, 4, 1, 1)
    del env["SLURM_STEP_TASKS_PER_NODE"]  # falls back to SLURM_NTASKS / nodes
    assert local_device_ids(env) == [2, 3]


def _sbatch_header(path):
    with open(path) as f:
        opts = dict(re.findall(r"^#SBATCH --([\w-]+)=(\S+)", f.read(), re.M))
    return int(opts["nodes"]), int(opts["ntasks-per-node"]), int(opts["gpus-per-node"])


def test_the_slurm_script_layout_uses_every_gpu_once():
    nodes, tasks, gpus = _sbatch_header(os.path.join(ROOT, "scripts", "launch_slurm.sh"))
    visible = ",".join(str(g) for g in range(gpus))
    for ids in devices_by_node(nodes, tasks, gpus=visible).values():
        flat = sorted(d for task in ids for d in task)
        assert flat == list(range(gpus))


def _stub(folder, name, body):
    path = folder / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _run(script, args, tmp_path, **env):
    full = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", **env}
    return subprocess.run(
        ["bash", os.path.join(ROOT, "scripts", script), *args],
        cwd=tmp_path, env=full, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_slurm_script_runs_train_under_srun(tmp_path):
    _stub(tmp_path, "srun", f'printf "%s\\n" "$@" > {tmp_path}/srun_args\n')
    out = _run("launch_slurm.sh", ["configs/opt.py:paper", "/shared/run", "--config.seed=3"],
               tmp_path, SLURM_SUBMIT_DIR=str(tmp_path))  # fmt: skip
    assert out.returncode == 0, out.stderr
    args = (tmp_path / "srun_args").read_text().split("\n")
    assert "OUTEFFHOP_DISTRIBUTED=1" in args and "scripts/train.py" in args
    assert args[args.index("--config") + 1] == "configs/opt.py:paper"
    assert args[args.index("--workdir") + 1] == "/shared/run" and "--config.seed=3" in args


def test_tpu_script_writes_one_log_per_worker_and_reports_failures(tmp_path):
    gcloud = r"""
if [ "$4" = describe ]; then echo "10.0.0.1;10.0.0.2;10.0.0.3;10.0.0.4"; exit 0; fi
for a in "$@"; do case "$a" in --worker=*) w="${a#--worker=}";; esac; done
echo "worker $w ran: ${@: -1}"
[ "$w" != "${FAIL_WORKER:-none}" ]
"""
    _stub(tmp_path, "gcloud", gcloud)
    args = ["pod", "zone-a", "configs/bert.py:paper", "/mnt/run", "--config.seed=1"]
    out = _run("launch_tpu_pod.sh", args, tmp_path, LOGDIR=str(tmp_path / "logs"))
    assert out.returncode == 0, out.stderr
    logs = sorted(os.listdir(tmp_path / "logs"))
    assert logs == [f"worker-{w}.log" for w in range(4)]
    for w in range(4):
        text = (tmp_path / "logs" / f"worker-{w}.log").read_text()
        assert text.startswith(f"worker {w} ran: ")
        assert "OUTEFFHOP_DISTRIBUTED=1" in text and "--config.seed=1" in text
    out = _run("launch_tpu_pod.sh", args, tmp_path, LOGDIR=str(tmp_path / "l2"), FAIL_WORKER="2")
    assert out.returncode == 1 and "worker 2 failed" in out.stderr

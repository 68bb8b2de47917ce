"""Device mesh, parameter shardings (data parallel / FSDP), batches, multi-host start-up.

The mesh is 2-D, ``(data, model)``, over every device of every process (``make_mesh``):
``config.mesh.data`` x ``config.mesh.model`` devices, -1 = the rest. Consecutive devices
form one ``model`` group (the same host when it fits, for tensor parallelism's per-layer
all-reduces). Data parallel replicates the train state over ``data``; FSDP shards each
large array of the state over ``data`` (by the model's logical axis rules, or along its
largest dimension that the axis size divides), so no device holds the full model. The
batch is always sharded along its leading dimension over ``data``.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "data"
MODEL_AXIS = "model"
PARALLELISM = ("dp", "fsdp")
DISTRIBUTED_ENV = "OUTEFFHOP_DISTRIBUTED"


def maybe_initialize_distributed(dist_cfg) -> bool:
    """Call ``jax.distributed.initialize`` when ``dist_cfg.enabled`` or $OUTEFFHOP_DISTRIBUTED=1.

    Empty address / negative ids are left to JAX's auto-detection (TPU pods, SLURM). Must run
    before anything touches a device. Returns whether it initialized.
    """
    enabled = bool(dist_cfg.enabled) or os.environ.get(DISTRIBUTED_ENV, "") == "1"
    if not enabled:
        return False
    if dist_cfg.num_cpu_devices > 0:
        jax.config.update("jax_num_cpu_devices", int(dist_cfg.num_cpu_devices))
    kwargs = {}
    if dist_cfg.coordinator_address:
        kwargs["coordinator_address"] = dist_cfg.coordinator_address
    if dist_cfg.num_processes > 0:
        kwargs["num_processes"] = int(dist_cfg.num_processes)
    if dist_cfg.process_id >= 0:
        kwargs["process_id"] = int(dist_cfg.process_id)
    ids = dist_cfg.get("local_device_ids", "") or None
    ids = [int(i) for i in ids.split(",")] if ids else local_device_ids(os.environ)
    if ids is not None and dist_cfg.num_cpu_devices <= 0:
        kwargs["local_device_ids"] = ids
    jax.distributed.initialize(**kwargs)
    return True


def _tasks_per_node(env) -> int | None:
    """Tasks on this node from SLURM's variables ("8", "8(x2)", "4,3" + SLURM_NODEID)."""
    for name in ("SLURM_NTASKS_PER_NODE", "SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE"):
        if env.get(name):
            counts = []
            for part in env[name].split(","):
                n, _, rep = part.partition("(x")
                counts += [int(n)] * (int(rep.rstrip(")")) if rep else 1)
            return counts[min(int(env.get("SLURM_NODEID", 0)), len(counts) - 1)]
    nodes = env.get("SLURM_STEP_NUM_NODES") or env.get("SLURM_NNODES")
    if env.get("SLURM_NTASKS") and nodes:
        return int(env["SLURM_NTASKS"]) // int(nodes)
    return None


def _visible_gpus(env) -> int:
    """GPUs this process can see: CUDA_VISIBLE_DEVICES, else SLURM_GPUS_ON_NODE, else 0."""
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip()])
    return int(env.get("SLURM_GPUS_ON_NODE", 0) or 0)


def local_device_ids(env) -> list[int] | None:
    """The GPUs (indices among the visible ones) one process drives, or None for JAX's choice.

    $JAX_LOCAL_DEVICE_IDS wins. Outside SLURM (no SLURM_PROCID / SLURM_LOCALID): None (all
    visible devices). Under SLURM with G visible GPUs and N tasks on the node: one task per
    node drives all G (JAX's own detection would give it only GPU SLURM_LOCALID); a task
    that SLURM bound to its own GPU (G = 1, ``--gpus-per-task=1``) drives GPU 0; otherwise
    task SLURM_LOCALID drives its G / N consecutive GPUs. ValueError when N does not divide G.
    """
    if env.get("JAX_LOCAL_DEVICE_IDS"):
        return [int(i) for i in env["JAX_LOCAL_DEVICE_IDS"].split(",")]
    if "SLURM_PROCID" not in env or "SLURM_LOCALID" not in env:
        return None
    gpus, tasks = _visible_gpus(env), _tasks_per_node(env)
    if gpus == 0 or tasks is None:
        return None
    if tasks == 1 or gpus == 1:
        return list(range(gpus))
    if gpus % tasks:
        raise ValueError(
            f"SLURM starts {tasks} tasks on a node with {gpus} visible GPUs; the GPU count "
            "must be a multiple of the tasks per node (use --ntasks-per-node=<GPUs per node>)."
        )
    per = gpus // tasks
    local = int(env["SLURM_LOCALID"])
    return list(range(local * per, (local + 1) * per))


def mesh_shape(num_devices: int, data: int = -1, model: int = 1) -> tuple[int, int]:
    """(data, model) sizes for ``num_devices``; -1 in one of them = the rest of the devices."""
    if data == -1 and model == -1:
        raise ValueError("config.mesh.data and config.mesh.model cannot both be -1.")
    for name, size in (("data", data), ("model", model)):
        if size != -1 and (not isinstance(size, int) or size < 1):
            raise ValueError(f"config.mesh.{name} must be a positive integer or -1; got {size!r}.")
    other = model if data == -1 else data
    if num_devices % other:
        raise ValueError(
            f"config.mesh (data={data}, model={model}) must divide the {num_devices} devices."
        )
    data = num_devices // model if data == -1 else data
    model = num_devices // data if model == -1 else model
    if data * model != num_devices:
        raise ValueError(
            f"config.mesh.data x config.mesh.model must equal the device count {num_devices}; "
            f"got {data} x {model}."
        )
    return data, model


def make_mesh(devices=None, data: int = -1, model: int = 1) -> Mesh:
    """The ``(data, model)`` mesh over ``devices`` (default: all devices of all processes).

    Devices fill the mesh row-major: devices ``[i * model, (i + 1) * model)`` form data row i.
    """
    devices = jax.devices() if devices is None else list(devices)
    shape = mesh_shape(len(devices), data, model)
    return Mesh(np.asarray(devices).reshape(shape), (AXIS, MODEL_AXIS))


def fsdp_spec(shape, axis_size: int, min_size: int) -> P:
    """Shard the largest dimension that ``axis_size`` divides; replicate small arrays."""
    if axis_size == 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
        return P()
    for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
        if shape[dim] % axis_size == 0:
            return P(*([None] * dim + [AXIS]))
    return P()


def _names(path) -> tuple[str, ...]:
    return tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def state_shardings(abstract_state, mesh: Mesh, parallelism: str, min_size: int, param_specs=None):
    """NamedSharding for every leaf of ``abstract_state`` (a tree of ShapeDtypeStructs).

    ``param_specs`` (PartitionSpecs for ``abstract_state['params']``, e.g. from the model's
    logical axis rules) fixes the params' layout; optimizer-state leaves whose path ends
    with a param's path and share its shape (Adam moments, momentum) follow it. Without
    ``param_specs``, ``parallelism`` decides by shape: dp replicates, fsdp uses
    ``fsdp_spec``.
    """
    if parallelism not in PARALLELISM:
        raise ValueError(f"parallelism must be one of dp, fsdp; got {parallelism!r}.")
    size = mesh.shape[AXIS]
    by_path = {}
    if param_specs is not None:
        flat_specs = jax.tree_util.tree_leaves(param_specs, is_leaf=lambda x: isinstance(x, P))
        flat_params = jax.tree_util.tree_flatten_with_path(abstract_state["params"])[0]
        for (path, x), spec in zip(flat_params, flat_specs, strict=True):
            _check_divisible(_names(path), x.shape, spec, mesh)
            by_path[_names(path)] = (x.shape, spec)

    def leaf(path, x):
        names = _names(path)
        for i in range(len(names)):
            hit = by_path.get(names[i:])
            if hit is not None and hit[0] == x.shape:
                return NamedSharding(mesh, hit[1])
        if param_specs is not None or parallelism == "dp":
            return NamedSharding(mesh, P())
        return NamedSharding(mesh, fsdp_spec(x.shape, size, min_size))

    return jax.tree_util.tree_map_with_path(leaf, abstract_state)


def _check_divisible(names, shape, spec, mesh):
    for dim, axis in zip(shape, tuple(spec), strict=False):
        if axis is not None and dim % mesh.shape[axis]:
            raise ValueError(
                f"parallelism shards params/{'/'.join(names)} dimension {dim} over "
                f"{mesh.shape[axis]} devices of mesh axis {axis!r}; the dimension must be "
                "divisible by the device count (change config.model sizes, config.mesh or "
                "use parallelism='dp')."
            )


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (example) axis over ``data``; other axes whole."""
    return NamedSharding(mesh, P(AXIS))


def global_batch(local_batch, mesh: Mesh):
    """Assemble per-process numpy batches into global arrays sharded over ``data``.

    Process p holds rows ``[p * n_local, (p + 1) * n_local)`` of the global batch.
    """
    sharding = batch_sharding(mesh)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch
    )

"""Device mesh, parameter shardings (data parallel / FSDP), batches, multi-host start-up.

One mesh axis, ``data``, spans every device of every process. Data parallel replicates the
train state; FSDP shards each large array of the state along its largest dimension that
the axis size divides (params and optimizer moments alike), so no device ever holds the
full model. The batch is always sharded along its leading dimension.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "data"
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
    jax.distributed.initialize(**kwargs)
    return True


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: all devices of all processes) named ``data``."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (AXIS,))


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
                f"{mesh.shape[axis]} devices; the dimension must be divisible by the device "
                "count (change config.model sizes or use parallelism='dp')."
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

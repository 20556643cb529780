"""The device mesh from the config, multi-host start-up, and feeding each process's share.

Axes are ('data', 'fsdp', 'tensor'). A batch is split over ('data', 'fsdp'): every
device that does not hold a tensor-parallel slice holds its own rows. Errors name the
config key and are raised before anything compiles.
"""

from __future__ import annotations

import os
import re
from typing import Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jax_sft.config import MeshConfig

AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")


class MeshError(ValueError):
  """A mesh or batch size that does not fit the devices; names the config key."""


def maybe_initialize_distributed(cfg: MeshConfig) -> bool:
  """Calls jax.distributed.initialize() on a multi-host slice; True if it did.

  `cfg.distributed` None detects: a TPU pod slice (TPU_WORKER_HOSTNAMES with more
  than one host), SLURM, or an explicit JAX_COORDINATOR_ADDRESS. Where JAX cannot find the
  process count and index itself (CPU processes on one machine, other launchers),
  JAX_NUM_PROCESSES and JAX_PROCESS_ID give them.
  """
  want = cfg.distributed
  if want is None:
    # libtpu may leave a warning sentence in TPU_WORKER_HOSTNAMES: only a list of
    # two or more hostnames means a multi-host slice.
    hosts = [h for h in os.environ.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]
    multi_tpu = len(hosts) > 1 and all(re.fullmatch(r"[\w.:-]+", h) for h in hosts)
    want = (multi_tpu or "JAX_COORDINATOR_ADDRESS" in os.environ
            or int(os.environ.get("SLURM_NTASKS", "1")) > 1)
  if not want or jax.distributed.is_initialized():
    return False
  explicit = {}
  if "JAX_NUM_PROCESSES" in os.environ and "JAX_PROCESS_ID" in os.environ:
    explicit = {"coordinator_address": os.environ.get("JAX_COORDINATOR_ADDRESS"),
                "num_processes": int(os.environ["JAX_NUM_PROCESSES"]),
                "process_id": int(os.environ["JAX_PROCESS_ID"])}
  jax.distributed.initialize(**explicit)
  return True


def axis_sizes(cfg: MeshConfig, num_devices: int) -> dict[str, int]:
  """Resolves -1 ("the rest") and checks the product equals `num_devices`."""
  sizes = {a: getattr(cfg, a) for a in AXES}
  rest = [a for a, s in sizes.items() if s == -1]
  for a, s in sizes.items():
    if s == 0 or s < -1:
      raise MeshError(f"mesh.{a}={s}: an axis size must be positive or -1 (the rest)")
  if len(rest) > 1:
    raise MeshError(f"mesh.{rest[1]}=-1: only one axis may be -1 (mesh.{rest[0]} is too)")
  fixed = int(np.prod([s for s in sizes.values() if s != -1]))
  if rest:
    if num_devices % fixed:
      raise MeshError(
          f"mesh.{rest[0]}=-1: the other axes ({fixed} devices) do not divide"
          f" the {num_devices} devices")
    sizes[rest[0]] = num_devices // fixed
  elif fixed != num_devices:
    raise MeshError(
        f"mesh: data*fsdp*tensor = {sizes['data']}*{sizes['fsdp']}*{sizes['tensor']}"
        f" = {fixed}, but there are {num_devices} devices")
  return sizes


def make_mesh(cfg: MeshConfig, devices=None) -> Mesh:
  """A Mesh over `devices` (default: all) with axes data, fsdp, tensor."""
  devices = jax.devices() if devices is None else list(devices)
  sizes = axis_sizes(cfg, len(devices))
  shape = tuple(sizes[a] for a in AXES)
  try:
    arr = jax.experimental.mesh_utils.create_device_mesh(shape, devices)
  except Exception:  # non-TPU or odd shapes: a plain reshape keeps process-local order
    arr = np.asarray(devices).reshape(shape)
  return Mesh(arr, AXES)


def batch_parallelism(mesh: Mesh) -> int:
  """How many ways a batch is split (data * fsdp)."""
  return int(np.prod([mesh.shape[a] for a in BATCH_AXES]))


def check_batch(mesh: Mesh, batch_size: int, grad_accum: int = 1) -> None:
  """Raises naming train.batch_size / train.grad_accum when they do not divide."""
  if batch_size % grad_accum:
    raise MeshError(f"train.batch_size={batch_size} is not divisible by"
                    f" train.grad_accum={grad_accum}")
  micro = batch_size // grad_accum
  ways = batch_parallelism(mesh)
  if micro % ways:
    raise MeshError(
        f"train.batch_size={batch_size} (micro-batch {micro} with grad_accum="
        f"{grad_accum}) is not divisible by the data axes mesh.data*mesh.fsdp ="
        f" {mesh.shape['data']}*{mesh.shape['fsdp']} = {ways}")
  if batch_size % jax.process_count():
    raise MeshError(f"train.batch_size={batch_size} is not divisible by the"
                    f" {jax.process_count()} processes")


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Rows over the data axes, positions replicated."""
  return NamedSharding(mesh, P(BATCH_AXES, None))


def process_rows(batch_size: int) -> slice:
  """The rows of a global batch this process feeds."""
  n = batch_size // jax.process_count()
  i = jax.process_index()
  return slice(i * n, (i + 1) * n)


def to_global(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """A global batch from this process's rows (make_array_from_process_local_data)."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in batch.items()}

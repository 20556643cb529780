"""Sharding as data: logical axis names per parameter, one table of rules to mesh axes.

Logical names come from the weight table (params.py), so the model code never mentions
devices. `RULES` maps them onto the mesh axes ('data', 'fsdp', 'tensor');
a dim that the mesh axis does not divide (kv_heads=1 on a 2-way tensor axis) is
replicated rather than failing. Activation constraints in the model
(nn.with_logical_constraint) use the same table through `flax_rules`.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jax_sft.config import ModelConfig
from jax_sft.model import lora as lora_lib
from jax_sft.model import params as params_lib

# Default: FSDP over ('fsdp'), model dims over 'tensor', batch over both data axes.
RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("mlp", "tensor"),
    ("lora_rank", None),
    ("stack", None),  # the leading 2 of kv_einsum and gating_einsum
)

# Parameters: the wide output dims (vocab, heads, mlp) go over tensor and fsdp together when
# they divide, else `embed` goes over fsdp. Sharding `embed` first (the contracted dim of most
# einsums) made XLA keep every layer's gathered weights live into the backward: Gemma 2 2B full
# SFT at seq 2048 on v5e-8 needed 16.6 GiB of temporaries per chip (does not fit); with these
# rules it needs 9.7 GiB (14.1 GiB in all, fits at global batch 16; `jax-sft plan`).
PARAM_RULES: tuple[tuple[str, Any], ...] = tuple(
    (name, ("tensor", "fsdp") if name in ("vocab", "heads", "mlp") else axes)
    for name, axes in RULES if name != "batch")


# LoRA adapters: not split over the batch axes. Their weight gradients are then a local matmul
# and an all-reduce of a few MB. Sharded like their weights (over fsdp), every adapter's
# gradient was a reduce-scatter that libtpu ran as a windowed einsum over per-row slices of
# the layer's activations, scheduled late: each layer's [B, T, F] MLP activations and their
# cotangents stayed live to the end of the backward pass (Gemma 3 270M at 4 rows per chip:
# 2.5 GiB of the step's peak; docs/tpu.md). Tensor parallelism still splits them.
ADAPTER_RULES: tuple[tuple[str, Any], ...] = tuple(
    (name, None if name == "embed" else axes) for name, axes in RULES if name != "batch")


def logical_axes(tree: dict, cfg: ModelConfig) -> dict:
  """The same tree with each leaf replaced by its tuple of logical axis names.

  Accepts a param tree, a LoRA tree, or either's shapes (jax.ShapeDtypeStruct leaves); the
  names are the weight table's (params.py), so nothing is guessed from names or shapes.
  """
  table = params_lib.by_path(cfg)

  def axes(path: str, leaf) -> tuple[str, ...]:
    if path in table:
      found = table[path].axes
    else:
      try:
        found = lora_lib.axes_of(cfg, path)
      except KeyError:
        raise ValueError(f"no logical axes known for parameter {path}") from None
    if len(found) != len(np.shape(leaf)):
      raise ValueError(f"parameter {path} has shape {np.shape(leaf)}, expected axes {found}")
    return found

  def walk(node, prefix):
    if isinstance(node, dict):
      return {k: walk(v, f"{prefix}{k}/") for k, v in node.items()}
    return axes(prefix[:-1], node)
  return walk(tree, "")


def spec_for(axes: Sequence[Optional[str]], shape: Sequence[int], mesh: Mesh,
             rules=RULES) -> PartitionSpec:
  """PartitionSpec for one array: each logical axis to its mesh axis (or axes) when it divides."""
  table = dict(rules)
  used: set[str] = set()
  out = []
  for name, dim in zip(axes, shape):
    mesh_axes = table.get(name) if name is not None else None
    if isinstance(mesh_axes, str):
      mesh_axes = (mesh_axes,)
    mesh_axes = tuple(a for a in (mesh_axes or ()) if a in mesh.shape and a not in used)
    size = int(np.prod([mesh.shape[a] for a in mesh_axes])) if mesh_axes else 1
    if not mesh_axes or size == 1 or dim % size:
      out.append(None)  # replicate: not mapped, or the mesh does not divide this dim
      continue
    used.update(mesh_axes)
    out.append(mesh_axes[0] if len(mesh_axes) == 1 else mesh_axes)
  return PartitionSpec(*out)


def named_shardings(tree: dict, mesh: Mesh, cfg: ModelConfig, rules=PARAM_RULES,
                    adapter_rules=ADAPTER_RULES) -> dict:
  """A NamedSharding per leaf of a param/LoRA tree (arrays or shapes): weights from `rules`,
  LoRA adapters (paths outside the weight table) from `adapter_rules`."""
  axes = logical_axes(tree, cfg)
  table = params_lib.by_path(cfg)

  def walk(node, ax, prefix):
    if isinstance(node, dict):
      return {k: walk(v, ax[k], f"{prefix}{k}/") for k, v in node.items()}
    chosen = rules if prefix[:-1] in table else adapter_rules
    return NamedSharding(mesh, spec_for(ax, np.shape(node), mesh, chosen))
  return walk(tree, axes, "")


def batch_sharding(mesh: Mesh, rules=RULES) -> NamedSharding:
  """Sharding of a [B, L] batch array: B over the rules' 'batch' mesh axes."""
  mesh_axes = tuple(a for a in (dict(rules)["batch"] or ()) if a in mesh.shape)
  return NamedSharding(mesh, PartitionSpec(mesh_axes or None, None))


def flax_rules(rules=RULES) -> tuple[tuple[str, Any], ...]:
  """The rules for `flax.linen.logical_axis_rules(...)` (activation constraints)."""
  return tuple(rules)

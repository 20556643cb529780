"""Sharding as data: logical axis names per parameter, one table of rules to mesh axes.

Logical names come from the parameter's path (its checkpoint name), so the model code
never mentions devices. `RULES` maps them onto the mesh axes ('data', 'fsdp', 'tensor');
a dim that the mesh axis does not divide (kv_heads=1 on a 2-way tensor axis) is
replicated rather than failing. Activation constraints in the model
(nn.with_logical_constraint) use the same table through `flax_rules`.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

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

_WEIGHT_AXES = {
    "q_einsum": ("heads", "embed", "head_dim"),
    "kv_einsum": ("stack", "kv_heads", "embed", "head_dim"),
    "attn_vec_einsum": ("heads", "head_dim", "embed"),
    "linear": ("mlp", "embed"),
    "_query_norm": ("head_dim",),
    "_key_norm": ("head_dim",),
}
# LoRA factors, as derived in lora.py: A holds the input dims, B the output dims.
_LORA_AXES = {
    "q_einsum": {"a": ("embed", "lora_rank"), "b": ("lora_rank", "heads", "head_dim")},
    "kv_einsum": {"a": ("embed", "lora_rank"), "b": ("lora_rank", "stack", "kv_heads", "head_dim")},
    "attn_vec_einsum": {"a": ("heads", "head_dim", "lora_rank"), "b": ("lora_rank", "embed")},
    "gating_einsum": {"gate_a": ("embed", "lora_rank"), "gate_b": ("lora_rank", "mlp"),
                      "up_a": ("embed", "lora_rank"), "up_b": ("lora_rank", "mlp")},
    "linear": {"a": ("mlp", "lora_rank"), "b": ("lora_rank", "embed")},
}


def _axes_for(path: tuple[str, ...], leaf, siblings: dict) -> tuple[Optional[str], ...]:
  name, parent = path[-1], path[-2] if len(path) > 1 else ""
  ndim = len(np.shape(leaf))
  if name == "input_embedding":
    axes = ("vocab", "embed")
  elif name == "scale":
    axes = _WEIGHT_AXES.get(parent, ("embed",))
  elif name == "w" and parent == "gating_einsum":
    # (2, D, F) in Gemma 1/2, (2, F, D) in Gemma 3: the sibling `linear` (F, D) tells which.
    mlp_dim = np.shape(siblings["linear"]["w"])[0] if "linear" in siblings else None
    axes = ("stack", "mlp", "embed") if np.shape(leaf)[1] == mlp_dim else ("stack", "embed", "mlp")
  elif name == "w" and parent in _WEIGHT_AXES:
    axes = _WEIGHT_AXES[parent]
  elif parent in _LORA_AXES and name in _LORA_AXES[parent]:
    axes = _LORA_AXES[parent][name]
  else:
    raise ValueError(f"no logical axes known for parameter {'/'.join(path)}")
  if len(axes) != ndim:
    raise ValueError(f"parameter {'/'.join(path)} has shape {np.shape(leaf)}, expected {axes}")
  return axes


def logical_axes(tree: dict) -> dict:
  """The same tree with each leaf replaced by its tuple of logical axis names.

  Accepts a param tree, a LoRA tree, or either's shapes (jax.ShapeDtypeStruct leaves).
  """
  def walk(node, path, ancestors):
    if isinstance(node, dict):
      return {k: walk(v, path + (k,), ancestors + (node,)) for k, v in node.items()}
    # the dict holding the leaf's module: for gating_einsum/w, the `mlp` dict
    return _axes_for(path, node, ancestors[-2] if len(ancestors) >= 2 else {})
  return walk(tree, (), ())


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


def named_shardings(tree: dict, mesh: Mesh, rules=PARAM_RULES) -> dict:
  """A NamedSharding per leaf of a param/LoRA tree (arrays or shapes), from `rules`."""
  axes = logical_axes(tree)
  return jax.tree.map(lambda a, x: NamedSharding(mesh, spec_for(a, np.shape(x), mesh, rules)),
                      axes, tree, is_leaf=lambda x: isinstance(x, tuple))


def batch_sharding(mesh: Mesh, rules=RULES) -> NamedSharding:
  """Sharding of a [B, L] batch array: B over the rules' 'batch' mesh axes."""
  mesh_axes = tuple(a for a in (dict(rules)["batch"] or ()) if a in mesh.shape)
  return NamedSharding(mesh, PartitionSpec(mesh_axes or None, None))


def flax_rules(rules=RULES) -> tuple[tuple[str, Any], ...]:
  """The rules for `flax.linen.logical_axis_rules(...)` (activation constraints)."""
  return tuple(rules)

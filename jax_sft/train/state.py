"""The train state and where each of its arrays lives on the mesh.

Full fine-tuning trains `params`; under LoRA `params` holds only the adapters and the
base weights travel beside the state as a frozen, never-donated input.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jax_sft.config import ModelConfig
from jax_sft.model import sharding as model_sharding

PyTree = Any


@flax.struct.dataclass
class TrainState:
  """Everything that changes from step to step."""

  step: jax.Array  # int32 scalar: optimizer updates done
  params: PyTree  # trainable weights: the full model, or the LoRA adapters
  opt_state: PyTree
  rng: jax.Array  # uint32[2] raw PRNG key, split every step


def create(params: PyTree, tx: optax.GradientTransformation, seed: int) -> TrainState:
  """A fresh state at step 0 over `params`."""
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=tx.init(params), rng=jax.random.PRNGKey(seed))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def param_shardings(params: PyTree, mesh: Mesh, model_cfg: ModelConfig) -> PyTree:
  """NamedShardings for a param (or LoRA) tree from the model's logical-axis rules."""
  return model_sharding.named_shardings(params, mesh, model_cfg)


def state_shardings(abstract: TrainState, tx: optax.GradientTransformation,
                    mesh: Mesh, model_cfg: ModelConfig) -> TrainState:
  """Shardings for every leaf of `abstract` (from jax.eval_shape).

  Optimizer moments take their param's sharding (optax.tree_map_params finds them);
  counters and the RNG are replicated.
  """
  rep = replicated(mesh)
  p_sh = param_shardings(abstract.params, mesh, model_cfg)
  opt_sh = optax.tree_map_params(
      tx, lambda _, sh: sh, abstract.opt_state, p_sh,
      transform_non_params=lambda _: rep,
      is_leaf=lambda x: isinstance(x, jax.ShapeDtypeStruct))
  return TrainState(step=rep, params=p_sh, opt_state=opt_sh, rng=rep)


def count_params(tree: PyTree) -> int:
  """Total number of elements in a tree of arrays."""
  return int(sum(x.size for x in jax.tree.leaves(tree)))

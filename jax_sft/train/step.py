"""The pure train and eval steps, jitted once with explicit shardings.

`train_step(state, frozen, batch) -> (state, metrics)`: `frozen` is the base model
under LoRA (never donated, never differentiated) and an empty dict in full fine-tuning.
The loss is the sum of cross-entropy over loss-masked tokens divided by their count,
summed over micro-batches first, so accumulation and packing equal one big batch.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from jax_sft.config import ModelConfig
from jax_sft.model import sharding as model_sharding
from jax_sft.model.loss import chunked_cross_entropy
from jax_sft.train import mesh as mesh_lib
from jax_sft.train import precision
from jax_sft.train.state import TrainState, replicated

PyTree = Any
Batch = Mapping[str, jax.Array]


def loss_terms(model, model_cfg: ModelConfig, params: PyTree, lora: PyTree | None,
               batch: Batch, ways: int = 1) -> tuple[jax.Array, jax.Array]:
  """(sum of token CE over loss_mask, number of loss tokens) for one batch split `ways` ways
  over the devices (which sets the loss chunk under model.loss_chunk_tokens)."""
  compute = jnp.dtype(model_cfg.compute_dtype)
  if compute != jnp.dtype(model_cfg.param_dtype):
    # Cast the (sharded) master weights once, before FSDP gathers them: the gathers, and
    # whatever XLA keeps of them between forward and backward, are then in the compute
    # dtype (half the bytes in bfloat16). Gradients still flow back in the master dtype.
    params = jax.tree.map(
        lambda x: x.astype(compute) if jnp.issubdtype(x.dtype, jnp.floating) else x, params)
  variables = {"params": params}
  if lora is not None:
    variables["lora"] = lora
  hidden_BTD = model.apply(variables, batch["inputs"], batch["positions"],
                           batch["segment_ids"], return_hidden=True)
  return chunked_cross_entropy(
      hidden_BTD, params["embedder"]["input_embedding"], batch["targets"],
      batch["loss_mask"], final_softcap=model_cfg.final_softcap,
      chunk=model_cfg.loss_chunk_positions(batch["inputs"].shape[0] // ways))


def _grad_dtype(x) -> jnp.dtype:
  """Gradients of 16-bit weights are summed and applied in float32."""
  return jnp.float32 if precision.is_low(x) else x.dtype


def _split_micro(batch: Batch, grad_accum: int) -> Batch:
  """[B, L] -> [A, B/A, L] taking every A-th row, so each micro-batch keeps the
  batch's sharding over the data axes (device d's rows stay on device d)."""
  def split(x):
    b = x.shape[0]
    return jnp.swapaxes(x.reshape(b // grad_accum, grad_accum, *x.shape[1:]), 0, 1)
  return {k: split(v) for k, v in batch.items()}


def compiler_options(xla_opt_level: int) -> dict | None:
  """jit compiler_options for train.xla_opt_level (None = XLA's defaults)."""
  if xla_opt_level < 0:
    return None
  return {"xla_backend_optimization_level": int(xla_opt_level)}


def make_train_step(model, model_cfg: ModelConfig, tx: optax.GradientTransformation,
                    schedule: optax.Schedule, *, lora: bool, grad_accum: int = 1,
                    stochastic_rounding: bool = True, ways: int = 1
                    ) -> Callable[[TrainState, PyTree, Batch], tuple[TrainState, dict]]:
  """The un-jitted step; `jit_train_step` compiles it with shardings. `ways`: how many ways
  the batch is split over devices (mesh.batch_parallelism).

  Gradients are accumulated and applied in float32 whatever the stored dtype; a 16-bit
  state is written back with stochastic rounding (precision.py).
  """

  def micro_loss(trainable, frozen, micro):
    params, adapters = (frozen, trainable) if lora else (trainable, None)
    loss_sum, count = loss_terms(model, model_cfg, params, adapters, micro, ways)
    return loss_sum, count

  grad_fn = jax.value_and_grad(micro_loss, has_aux=True)

  def train_step(state: TrainState, frozen: PyTree, batch: Batch):
    if grad_accum == 1:
      (loss_sum, count), grads = grad_fn(state.params, frozen, batch)
    else:
      def body(carry, micro):
        g_acc, l_acc, c_acc = carry
        (l, c), g = grad_fn(state.params, frozen, micro)
        g = jax.tree.map(lambda a, x: x.astype(a.dtype), g_acc, g)
        return (jax.tree.map(jnp.add, g_acc, g), l_acc + l, c_acc + c), None
      zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, _grad_dtype(p)), state.params)
      init = (zeros, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32))
      (grads, loss_sum, count), _ = jax.lax.scan(body, init, _split_micro(batch, grad_accum))
    denom = jnp.maximum(count, 1.0)
    grads = jax.tree.map(lambda g: (g.astype(_grad_dtype(g)) / denom).astype(_grad_dtype(g)),
                         grads)
    rng, _ = jax.random.split(state.rng)
    params, opt_state = precision.apply_update(
        tx, grads, state.params, state.opt_state, jax.random.fold_in(state.rng, 1),
        stochastic_rounding)
    metrics = {"loss": loss_sum / denom, "loss_tokens": count,
               "grad_norm": optax.global_norm(grads), "lr": schedule(state.step)}
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state, rng=rng)
    return new_state, metrics

  return train_step


def in_mesh(fn, mesh: Mesh):
  """`fn` traced inside the mesh and the model's logical-axis rules, so the model's
  activation constraints (nn.with_logical_constraint) resolve to mesh axes."""

  def wrapped(*args):
    with mesh, nn.logical_axis_rules(model_sharding.flax_rules()):
      return fn(*args)
  return wrapped


def jit_train_step(step_fn, mesh: Mesh, state_sh: TrainState, frozen_sh: PyTree,
                   xla_opt_level: int = -1):
  """jit with explicit in/out shardings; the state is donated, `frozen` is not."""
  batch_sh = mesh_lib.batch_sharding(mesh)
  return jax.jit(in_mesh(step_fn, mesh), in_shardings=(state_sh, frozen_sh, batch_sh),
                 out_shardings=(state_sh, replicated(mesh)), donate_argnums=(0,),
                 compiler_options=compiler_options(xla_opt_level))


def make_eval_step(model, model_cfg: ModelConfig, mesh: Mesh, params_sh: PyTree,
                   frozen_sh: PyTree, *, lora: bool, xla_opt_level: int = -1):
  """Jitted `eval_step(params, frozen, batch) -> (loss_sum, count)`."""

  def eval_step(trainable, frozen, batch):
    params, adapters = (frozen, trainable) if lora else (trainable, None)
    return loss_terms(model, model_cfg, params, adapters, batch,
                      mesh_lib.batch_parallelism(mesh))

  return jax.jit(in_mesh(eval_step, mesh), in_shardings=(params_sh, frozen_sh, mesh_lib.batch_sharding(mesh)),
                 out_shardings=replicated(mesh), compiler_options=compiler_options(xla_opt_level))

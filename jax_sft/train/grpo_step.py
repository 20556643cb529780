"""One GRPO step as the training loop runs it: sample, score, normalize, update.

The jitted pieces (sampler, update, old log-probs) are compiled with the trainer's
shardings (`jit_pieces`, called by the one trainer builder); `GrpoStep` is the host side
that strings them together for one batch of prompts and returns the step's metrics.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jax_sft import config as config_lib
from jax_sft.data.tokenizer import Tokenizer
from jax_sft.train import grpo
from jax_sft.train import mesh as mesh_lib
from jax_sft.train import step as step_lib
from jax_sft.train.grpo_loss import group_advantages
from jax_sft.train.state import replicated

PyTree = Any
UPDATE_KEYS = ("inputs", "targets", "positions", "segment_ids", "completion_mask")


@dataclasses.dataclass
class Pieces:
  """The GRPO step's jitted functions, with the trainer's shardings."""

  sample: Callable  # (trainable, frozen, tokens, positions, segments, rng) -> (new, counts)
  update: Callable  # (state, frozen, reference, batch) -> (state, metrics); state donated
  old_logprobs: Callable  # (trainable, frozen, batch) -> [n, T]


def rows_sharding(mesh: Mesh) -> NamedSharding:
  return mesh_lib.batch_sharding(mesh)


def jit_pieces(cfg: config_lib.Config, mesh: Mesh, tx, schedule, state_sh, frozen_sh,
               reference_sh) -> Pieces:
  """Compiles nothing yet: the three functions jitted with explicit shardings."""
  lora = cfg.lora.enabled
  tok = Tokenizer(cfg.data.tokenizer)
  rows, vec = rows_sharding(mesh), NamedSharding(mesh, P(mesh_lib.BATCH_AXES))
  rep = replicated(mesh)
  copts = step_lib.compiler_options(cfg.train.xla_opt_level)
  sample = jax.jit(step_lib.in_mesh(grpo.make_sampler(cfg, tok, lora=lora), mesh),
                   in_shardings=(state_sh.params, frozen_sh, rows, rows, rows, rep),
                   out_shardings=(rows, vec), compiler_options=copts)
  batch_sh = dict({k: rows for k in UPDATE_KEYS}, advantages=vec, old_logp=rows)
  update = jax.jit(step_lib.in_mesh(grpo.make_update(cfg, tx, schedule, lora=lora), mesh),
                   in_shardings=(state_sh, frozen_sh, reference_sh, batch_sh),
                   out_shardings=(state_sh, rep), donate_argnums=(0,), compiler_options=copts)
  old = jax.jit(step_lib.in_mesh(grpo.make_old_logprobs(cfg, lora=lora), mesh),
                in_shardings=(state_sh.params, frozen_sh, {k: rows for k in UPDATE_KEYS}),
                out_shardings=rows, compiler_options=copts)
  return Pieces(sample, update, old)


def abstract_batch(cfg: config_lib.Config, mesh: Mesh) -> tuple[dict, dict]:
  """ShapeDtypeStructs of the sampler's prompts and of the update's batch, for `jax-sft plan`."""
  g = cfg.grpo
  n = g.prompts_per_step * g.num_generations
  L = g.max_prompt_tokens + g.max_new_tokens - 1
  rows, vec = rows_sharding(mesh), NamedSharding(mesh, P(mesh_lib.BATCH_AXES))
  i32 = lambda shape: jax.ShapeDtypeStruct(shape, np.int32, sharding=rows)
  prompts = {"tokens": i32((n, g.max_prompt_tokens)), "positions": i32((n, g.max_prompt_tokens)),
             "segments": i32((n, g.max_prompt_tokens))}
  batch = {k: i32((n, L)) for k in ("inputs", "targets", "positions", "segment_ids")}
  batch["completion_mask"] = jax.ShapeDtypeStruct((n, L), np.float32, sharding=rows)
  batch["old_logp"] = jax.ShapeDtypeStruct((n, L), np.float32, sharding=rows)
  batch["advantages"] = jax.ShapeDtypeStruct((n,), np.float32, sharding=vec)
  return prompts, batch


def _global(mesh: Mesh, array: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """This process's rows of a global host array, as one global array."""
  rows = mesh_lib.process_rows(array.shape[0])
  return jax.make_array_from_process_local_data(sharding, np.asarray(array)[rows])


class GrpoStep:
  """(state, frozen, prompt rows) -> (state, metrics): one GRPO step, for the training loop."""

  def __init__(self, cfg: config_lib.Config, mesh: Mesh, pieces: Pieces, reward_fn,
               references: list[str], reference_params: PyTree):
    self.cfg, self.mesh, self.pieces, self.reward_fn = cfg, mesh, pieces, reward_fn
    self.references, self.reference_params = references, reference_params
    self.tok = Tokenizer(cfg.data.tokenizer)
    self.stops = {self.tok.end_of_turn_id, self.tok.eos_id}
    mesh_lib.check_batch(mesh, cfg.grpo.prompts_per_step * cfg.grpo.num_generations)

  def __call__(self, state, frozen, rows: list[dict]) -> tuple[Any, dict]:
    g, mesh, pad = self.cfg.grpo, self.mesh, self.tok.pad_id
    prompts = [r["prompt"] for r in rows for _ in range(g.num_generations)]
    refs = [self.references[int(r["index"])] for r in rows for _ in range(g.num_generations)]
    tokens, pos, seg = grpo.left_padded(prompts, g.max_prompt_tokens, pad)
    sh = rows_sharding(mesh)
    key = jax.random.fold_in(state.rng, 2)  # the sampling stream, part of the saved state
    new, counts = self.pieces.sample(state.params, frozen, _global(mesh, tokens, sh),
                                     _global(mesh, pos, sh), _global(mesh, seg, sh), key)
    new, counts = (np.asarray(x) for x in multihost_utils.process_allgather((new, counts),
                                                                             tiled=True))
    texts, hit = [], []
    for row, k in zip(new, counts):
      ids = [int(t) for t in row[:k]]
      stopped = bool(ids) and ids[-1] in self.stops
      texts.append(self.tok.decode(ids[:-1] if stopped else ids))
      hit.append(not stopped and k >= g.max_new_tokens)
    rewards, parts = self.reward_fn(texts, hit, refs)
    batch = grpo.update_batch(prompts, new, counts, g.max_prompt_tokens, pad)
    batch["advantages"] = group_advantages(rewards, g.num_generations)
    dev = {k: _global(mesh, v, sh) for k, v in batch.items() if k != "advantages"}
    dev["advantages"] = _global(mesh, batch["advantages"],
                                NamedSharding(mesh, P(mesh_lib.BATCH_AXES)))
    dev["old_logp"] = (self.pieces.old_logprobs(state.params, frozen,
                                                {k: dev[k] for k in UPDATE_KEYS})
                       if g.num_iterations > 1 else jax.numpy.zeros_like(dev["completion_mask"]))
    updates = []
    for _ in range(g.num_iterations):
      state, m = self.pieces.update(state, frozen, self.reference_params, dev)
      updates.append(jax.device_get(m))
    sampled = int(np.sum(counts))
    metrics = {k: float(np.mean([u[k] for u in updates])) for k in updates[0]}
    metrics.update(reward=float(np.mean(rewards)), completion_len=float(np.mean(counts)),
                   hit_budget=float(np.mean(hit)), tokens=float(sampled), real_tokens=float(sampled))
    if "format" in parts:  # the format reward is the eval's checker: its mean is compliance
      metrics["compliance"] = float(np.mean(parts["format"]))
    metrics.update({f"reward_{k}": float(np.nanmean(v)) if np.any(~np.isnan(v)) else float("nan")
                    for k, v in parts.items()})
    return state, metrics

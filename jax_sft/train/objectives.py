"""What one step of the loop does, per train.objective: SFT's next-token step, or a GRPO step.

The loop (loop.py) is the same for both: it draws the next element of `train_iterator`,
calls the runner `(state, frozen, element) -> (state, metrics)` and logs, evaluates,
checkpoints and stops as it always does. Counters in the metrics (tokens, real_tokens,
examples, turn_tokens) are summed over a log window; everything else is averaged.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Optional

import jax
import numpy as np

from jax_sft import config as config_lib
from jax_sft.config import Objective
from jax_sft.train import builder, data_feed, grpo, grpo_step, weights

COUNTERS = ("tokens", "real_tokens", "examples", "turn_tokens")


class SftStep:
  """A packed batch through the compiled SFT step; its counters from the host batch."""

  def __init__(self, compiled, mesh, batch_size: int):
    self.compiled, self.mesh, self.batch_size = compiled, mesh, batch_size

  def __call__(self, state, frozen, host_batch: dict):
    state, m = self.compiled(state, frozen,
                             data_feed.to_device(host_batch, self.mesh, self.batch_size))
    m = {k: float(v) for k, v in jax.device_get(m).items()}  # one sync: honest step times
    seg = host_batch["segment_ids"]
    # The packer numbers a row's examples 1..k, so a row's largest id is its count.
    m.update(tokens=float(host_batch["inputs"].size), real_tokens=float(np.count_nonzero(seg)),
             examples=float(seg.max(axis=1).sum()), turn_tokens=float(host_batch["loss_mask"].sum()))
    return state, m


def train_iterator(cfg: config_lib.Config, total_steps: int):
  """SFT: packed batches of the training split; GRPO: batches of its prompts. Both Grain
  iterators, saved with each checkpoint."""
  if cfg.train.objective == Objective.grpo:
    return grpo.prompt_iterator(cfg)
  return data_feed.train_iterator(cfg, total_steps)


def total_steps(cfg: config_lib.Config, manifest: dict) -> int:
  """SFT: from the packed data (data_feed); GRPO: train.max_steps, or the epochs of prompts."""
  if cfg.train.objective != Objective.grpo:
    return data_feed.total_steps(cfg, manifest)
  if cfg.train.max_steps > 0:
    return cfg.train.max_steps
  prompts = manifest["splits"]["train"]["examples"]
  return max(1, math.ceil(prompts * cfg.train.epochs / cfg.grpo.prompts_per_step))


def runner(trainer: builder.Trainer, compiled, start, init_from: Optional[str],
           reward_fn: Optional[Callable]) -> Callable:
  """The loop's step function for trainer.cfg.train.objective."""
  cfg = trainer.cfg
  if trainer.grpo is None:
    return SftStep(compiled, trainer.mesh, cfg.train.batch_size)
  if reward_fn is None:
    raise config_lib.ConfigError("train.objective=grpo needs rewards: run it with `jax-sft grpo`")
  reference: Any = {}
  if not trainer.lora:  # a frozen copy of the policy GRPO starts from (the SFT model)
    source = start.base_weights or init_from or weights.base_reference(cfg)
    reference = weights.load_base(cfg, source, shardings=trainer.base_sh)
  sample, update = compiled  # the ahead-of-time programs, as SFT uses its compiled step
  pieces = dataclasses.replace(trainer.grpo, sample=sample, update=update)
  return grpo_step.GrpoStep(cfg, trainer.mesh, pieces, reward_fn, grpo.references(cfg), reference)

"""AdamW with warmup then cosine/linear/constant decay, and global-norm clipping.

Gradient accumulation is not here: the train step scans over micro-batches and sums
loss and gradients before one optimizer update, which keeps the token-weighted loss
exact (optax.MultiSteps averages per-micro-batch means, which is not).
"""

from __future__ import annotations

import optax

from jax_sft.config import TrainConfig


def make_schedule(cfg: TrainConfig, total_steps: int) -> optax.Schedule:
  """Learning rate per step: linear warmup over warmup_ratio, then the decay."""
  total_steps = max(int(total_steps), 1)
  warmup = int(round(cfg.warmup_ratio * total_steps))
  peak, end = cfg.learning_rate, cfg.learning_rate * cfg.end_lr_ratio
  decay_steps = max(total_steps - warmup, 1)
  if cfg.schedule == "cosine":
    decay = optax.cosine_decay_schedule(peak, decay_steps, alpha=cfg.end_lr_ratio)
  elif cfg.schedule == "linear":
    decay = optax.linear_schedule(peak, end, decay_steps)
  elif cfg.schedule == "constant":
    decay = optax.constant_schedule(peak)
  else:
    raise ValueError(f"train.schedule={cfg.schedule!r} is not one of cosine, linear, constant")
  if warmup == 0:
    return decay
  # Warmup starts above zero so step 0 already learns something.
  ramp = optax.linear_schedule(peak / (warmup + 1), peak, warmup)
  return optax.join_schedules([ramp, decay], [warmup])


def make_optimizer(cfg: TrainConfig, total_steps: int) -> optax.GradientTransformation:
  """clip_by_global_norm (if grad_clip > 0) then AdamW on the schedule."""
  schedule = make_schedule(cfg, total_steps)
  parts = []
  if cfg.grad_clip > 0:
    parts.append(optax.clip_by_global_norm(cfg.grad_clip))
  parts.append(optax.adamw(schedule, b1=cfg.adam_b1, b2=cfg.adam_b2, eps=cfg.adam_eps,
                           weight_decay=cfg.weight_decay))
  return optax.chain(*parts)

"""Training, mesh and checkpoint configs."""

from __future__ import annotations

import dataclasses
from typing import Optional

from jax_sft.config.choices import CurriculumEpochs, Objective, Schedule


@dataclasses.dataclass
class MeshConfig:
  """Device mesh: axis sizes, -1 meaning "the rest of the devices"."""

  data: int = 1
  fsdp: int = -1
  tensor: int = 1
  # Multi-host: None = detect (TPU pod slice / cluster env vars), True = always
  # call jax.distributed.initialize(), False = never.
  distributed: Optional[bool] = None


@dataclasses.dataclass
class TrainConfig:
  """Optimizer, schedule and loop settings (defaults from the users' research notes)."""

  objective: Objective = Objective.sft  # grpo: `jax-sft grpo` (config.grpo)
  batch_size: int = 8  # global batch, in packed rows
  epochs: float = 1.0
  max_steps: int = 0  # 0 = derived from epochs and the prepared data's size
  learning_rate: float = 2e-5
  weight_decay: float = 0.01
  warmup_ratio: float = 0.1
  schedule: Schedule = Schedule.cosine
  end_lr_ratio: float = 0.0  # the schedule decays to learning_rate * end_lr_ratio
  grad_clip: float = 1.0  # 0 = no clipping
  grad_accum: int = 1  # micro-batches per step; batch_size must divide by it
  adam_b1: float = 0.9
  adam_b2: float = 0.999
  adam_eps: float = 1e-8
  # With 16-bit master weights (model.param_dtype: bfloat16): round the weights and Adam
  # moments stochastically after each float32 update (train/precision.py), or to nearest.
  stochastic_rounding: bool = True
  # The trainer's loader shuffle, over data.shuffle_loader; None = follow data.order (a
  # curriculum is read in its order; true with a curriculum is a config error).
  shuffle: Optional[bool] = None
  # With a curriculum order, the epochs after the first: easy -> hard again (restart) or
  # a seeded global shuffle (then_shuffle). Ignored with data.order: shuffle.
  curriculum_epochs: CurriculumEpochs = CurriculumEpochs.restart
  log_every: int = 10
  eval_every: int = 0  # steps; 0 = only at the end
  eval_batches: int = 4
  eval_batch_size: int = 0  # rows; 0 = one per data-parallel device
  time_budget: Optional[str] = None  # e.g. "8h30m"
  # Warm start: another run's checkpoint (read-only is fine); new schedule and data.
  init_from: Optional[str] = None
  init_optimizer: bool = False  # also take the optimizer state from init_from
  # XLA backend optimization level for the trainer's jits; -1 = XLA's default. 0 or 1
  # compile several times faster on CPU, which dominates tiny runs (tests, smoke).
  xla_opt_level: int = -1
  generations_at_end: int = 3  # sample this many eval prompts after training
  generation_max_new_tokens: int = 48


@dataclasses.dataclass
class CheckpointConfig:
  """Orbax checkpointing: cadence, retention, and the compile cache."""

  directory: Optional[str] = None  # None = {run_dir}/checkpoints
  every_steps: int = 500
  every_minutes: float = 30.0
  keep: int = 3
  async_save: bool = True
  save_at_end: bool = True
  # Orbax's OCDBT layout (a few large files per step, the default); false writes one Zarr
  # array per parameter, for storage that cannot check a write's precondition.
  ocdbt: bool = True
  compilation_cache_dir: Optional[str] = None

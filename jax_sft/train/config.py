"""Training, mesh and checkpoint configs."""

from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass
class MeshConfig:
  """Device mesh: axis sizes, -1 meaning "the rest of the devices"."""

  data: int = 1
  fsdp: int = -1
  tensor: int = 1


@dataclasses.dataclass
class TrainConfig:
  """Optimizer, schedule and loop settings (defaults from the users' research notes)."""

  batch_size: int = 8  # global batch, in packed rows
  epochs: float = 1.0
  max_steps: int = 0  # 0 = derived from epochs and the prepared data's size
  learning_rate: float = 2e-5
  weight_decay: float = 0.01
  warmup_ratio: float = 0.1
  schedule: str = "cosine"  # cosine | linear | constant
  grad_clip: float = 1.0
  grad_accum: int = 1
  log_every: int = 10
  eval_every: int = 0
  eval_batches: int = 4
  time_budget: Optional[str] = None  # e.g. "8h30m"


@dataclasses.dataclass
class CheckpointConfig:
  """Orbax checkpointing: cadence, retention, and the compile cache."""

  every_steps: int = 500
  every_minutes: float = 30.0
  keep: int = 3
  async_save: bool = True
  compilation_cache_dir: Optional[str] = None

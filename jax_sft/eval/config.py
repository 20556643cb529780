"""Evaluation config."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class EvalConfig:
  """Generation-based evaluation of format compliance, lengths and answers."""

  max_new_tokens: int = 768
  num_prompts: int = 64
  batch_size: int = 8
  temperature: float = 0.0
  top_k: int = 1
  samples_in_report: int = 5
  during_training_every: int = 0  # steps; 0 = off
  during_training_prompts: int = 4

"""Evaluation config."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class EvalConfig:
  """Generation-based evaluation of format compliance, lengths and answers."""

  max_new_tokens: int = 768
  num_prompts: int = 64  # the first N records of the prepared 'eval' split
  batch_size: int = 8
  temperature: float = 0.0  # 0 = greedy, as the users' graders decode
  top_k: int = 1
  samples_in_report: int = 5
  short_answer_max_words: int = 16  # references up to this long get exact match / F1
  loss_batches: int = 8  # packed eval batches for held-out loss; 0 = skip
  at_end: bool = False  # `jax-sft train` ends with a full `jax-sft eval` of its last checkpoint
  during_training_every: int = 0  # steps; 0 = off
  during_training_prompts: int = 4

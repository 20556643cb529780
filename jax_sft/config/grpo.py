"""GRPO config: sampling, rewards and the policy update of the polish after SFT."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class RewardWeights:
  """Weight of each reward in the combined one (0 turns a reward off; each is still logged)."""

  format: float = 1.0  # 1 when the eval's checker passes the output, else 0
  answer: float = 0.5  # agreement with the dataset's answer, in [0, 1] (where one is short)
  budget: float = 0.5  # -1 when the completion hit max_new_tokens without a stop, else 0
  repetition: float = 0.5  # minus the eval's looping score of the reasoning, in [-1, 0]


@dataclasses.dataclass
class GrpoConfig:
  """Group Relative Policy Optimization (Shao et al. 2024, DeepSeekMath), as a polish after SFT.

  Each step draws `prompts_per_step` training questions, samples `num_generations`
  completions of each with the KV-cache sampler, scores them, normalizes the rewards within
  each question's group, and takes `num_iterations` optimizer steps on the clipped
  policy-ratio objective with a KL penalty (`beta`) to the reference policy.
  """

  prompts_per_step: int = 8
  num_generations: int = 4  # G, completions per prompt
  max_prompt_tokens: int = 256  # longer prompts are skipped (counted in the log)
  max_new_tokens: int = 256
  temperature: float = 1.0
  top_p: float = 1.0
  top_k: int = 0
  num_iterations: int = 1  # optimizer updates per batch of samples (mu)
  epsilon: float = 0.2  # the policy ratio is clipped to [1 - epsilon, 1 + epsilon]
  beta: float = 0.04  # weight of the KL penalty to the reference policy
  short_answer_max_words: int = 16  # references up to this long get exact match / token F1
  rewards: RewardWeights = dataclasses.field(default_factory=RewardWeights)

"""GRPO's rewards: small pure functions on one decoded completion, built from the eval's checks.

    format_reward("<reasoning>r</reasoning>\\n<answer>4</answer>", hit_budget=False) == 1.0
    answer_reward("The total is 1,234.", "1234", max_words=16) == 1.0   # numeric match
    budget_reward(hit_budget=True) == -1.0

A completion is the model turn as decoded, up to its first stop marker (`<end_of_turn>`);
`hit_budget` says it ran to max_new_tokens without one. `score` combines the rewards of a
batch with the config's weights and returns each one too, for the log.
"""

from __future__ import annotations

import re
from typing import Optional, Sequence

import numpy as np

from jax_sft.config import RewardWeights
from jax_sft.eval import compliance, metrics

NAMES = ("format", "answer", "budget", "repetition")
_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?|[-+]?\.\d+")


def format_reward(text: str, hit_budget: bool) -> float:
  """1 when the eval's strict checker passes: one closed <reasoning>, then one closed
  <answer>, nothing around them; 0 for every failure kind (cut_off included)."""
  return 1.0 if compliance.check(text, hit_budget=hit_budget).ok else 0.0


def _last_number(text: str) -> Optional[float]:
  found = _NUMBER.findall(text)
  if not found:
    return None
  try:
    return float(found[-1].replace(",", ""))
  except ValueError:
    return None


def answer_reward(text: str, reference: str, max_words: int) -> Optional[float]:
  """Agreement of the completion's <answer> with a short reference, in [0, 1]: 1 for the
  same number (when the reference is one), else the better of exact match and token F1.
  None when the reference is long or missing (free-text answers are not graded here)."""
  if not reference or not metrics.is_short_reference(reference, max_words):
    return None
  answer = compliance.check(text).answer
  if answer is None:
    return 0.0
  ref_number = _last_number(reference) if _NUMBER.fullmatch(reference.strip()) else None
  if ref_number is not None:
    got = _last_number(answer)
    return 1.0 if got is not None and np.isclose(got, ref_number, rtol=1e-6, atol=0) else 0.0
  return max(metrics.exact_match(answer, reference), metrics.token_f1(answer, reference))


def budget_reward(hit_budget: bool) -> float:
  """-1 when the completion ran out of tokens before its stop marker (a lost answer)."""
  return -1.0 if hit_budget else 0.0


def repetition_reward(text: str) -> float:
  """Minus the eval's looping score (share of repeated 8-word sequences) of the reasoning."""
  reasoning = compliance.check(text).reasoning
  return -metrics.repetition_score(reasoning if reasoning is not None else text)


def score(texts: Sequence[str], hit_budgets: Sequence[bool], references: Sequence[str],
          weights: RewardWeights, max_words: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """(combined rewards [n], {name: rewards [n]}) for a batch of completions.

  An answer reward that does not apply (no short reference) is NaN in its component and
  adds nothing to the combined reward.
  """
  parts = {
      "format": np.array([format_reward(t, h) for t, h in zip(texts, hit_budgets)]),
      "answer": np.array([np.nan if (r := answer_reward(t, ref, max_words)) is None else r
                          for t, ref in zip(texts, references)]),
      "budget": np.array([budget_reward(h) for h in hit_budgets]),
      "repetition": np.array([repetition_reward(t) for t in texts]),
  }
  combined = sum(getattr(weights, name) * np.nan_to_num(parts[name], nan=0.0) for name in NAMES)
  return np.asarray(combined, np.float64), parts

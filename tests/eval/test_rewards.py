"""GRPO's rewards on hand-written completions, every failure kind the eval knows included."""

import math

import numpy as np
import pytest

from jax_sft.config import RewardWeights
from jax_sft.eval import compliance, rewards

GOOD = "<reasoning>France's capital is Paris.</reasoning>\n<answer>Paris</answer>"
# One completion per failure kind of the eval's checker (compliance.FAILURE_KINDS).
FAILING = {
    "cut_off": ("<reasoning>Let me think. Let me", True),
    "duplicated": (GOOD + "\n" + GOOD, False),
    "missing_reasoning": ("The answer is Paris.", False),
    "unclosed_reasoning": ("<reasoning>Let me think.", False),
    "missing_answer": ("<reasoning>Paris.</reasoning>", False),
    "unclosed_answer": ("<reasoning>done</reasoning>\n<answer>Par", False),
    "wrong_order": ("<answer>Paris</answer>\n<reasoning>Because.</reasoning>", False),
    "text_before": ("Sure! " + GOOD, False),
    "text_between": ("<reasoning>a</reasoning>\nSo:\n<answer>b</answer>", False),
    "text_after": (GOOD + "\nHope this helps!", False),
    "empty_reasoning": ("<reasoning>  </reasoning><answer>b</answer>", False),
    "empty_answer": ("<reasoning>a</reasoning><answer> </answer>", False),
}


def test_every_failure_kind_has_a_case():
  assert set(FAILING) == set(compliance.FAILURE_KINDS)


@pytest.mark.parametrize("kind", sorted(FAILING))
def test_format_reward_is_zero_for_every_failure_kind(kind):
  text, hit = FAILING[kind]
  assert compliance.check(text, hit_budget=hit).kind == kind  # the case is what it says
  assert rewards.format_reward(text, hit) == 0.0


def test_format_reward_is_one_for_the_format_and_ignores_what_follows_the_stop():
  assert rewards.format_reward(GOOD, False) == 1.0
  assert rewards.format_reward(GOOD + "<end_of_turn>junk", False) == 1.0


@pytest.mark.parametrize("answer, reference, want", [
    ("1,234", "1234", 1.0),            # numbers compare as numbers
    ("The total is 12.50 dollars", "12.5", 1.0),
    ("12.51", "12.5", 0.0),
    ("Paris", "Paris", 1.0),           # exact match
    ("the Eiffel tower", "Eiffel Tower", 1.0),  # normalized: case, articles
    ("Paris, France", "Paris", 2 / 3),  # token F1: precision 1/2, recall 1
    ("London", "Paris", 0.0),
])
def test_answer_reward(answer, reference, want):
  text = f"<reasoning>r</reasoning><answer>{answer}</answer>"
  assert rewards.answer_reward(text, reference, max_words=16) == pytest.approx(want)


def test_answer_reward_does_not_apply_to_long_or_missing_references():
  long_ref = " ".join(["word"] * 40)
  assert rewards.answer_reward(GOOD, long_ref, max_words=16) is None
  assert rewards.answer_reward(GOOD, "", max_words=16) is None
  assert rewards.answer_reward("no tags at all", "Paris", max_words=16) == 0.0


def test_budget_and_repetition_rewards():
  assert rewards.budget_reward(True) == -1.0 and rewards.budget_reward(False) == 0.0
  loop = "<reasoning>" + "I will check the map again now. " * 30 + "</reasoning><answer>x</answer>"
  assert rewards.repetition_reward(loop) < -0.5
  assert rewards.repetition_reward(GOOD) == 0.0


def test_score_combines_with_weights_and_reports_each_part():
  texts = [GOOD, FAILING["cut_off"][0], "<reasoning>r</reasoning><answer>London</answer>"]
  hit = [False, True, False]
  refs = ["Paris", "Paris", " ".join(["long"] * 40)]
  weights = RewardWeights(format=2.0, answer=1.0, budget=0.5, repetition=0.0)
  combined, parts = rewards.score(texts, hit, refs, weights, max_words=16)
  np.testing.assert_array_equal(parts["format"], [1.0, 0.0, 1.0])
  assert parts["answer"][0] == 1.0 and parts["answer"][1] == 0.0 and math.isnan(parts["answer"][2])
  np.testing.assert_array_equal(parts["budget"], [0.0, -1.0, 0.0])
  # 2*format + 1*answer (NaN adds nothing) + 0.5*budget
  np.testing.assert_allclose(combined, [3.0, -0.5, 2.0])

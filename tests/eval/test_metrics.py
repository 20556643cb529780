"""Metrics: repetition calibration, SQuAD-style agreement, lengths, perplexity."""

import csv
import math
import os

import pytest

from jax_sft.data import sources
from jax_sft.eval import metrics

PROSE = (
    "The question asks why the sky looks blue during the day. Sunlight contains every visible"
    " wavelength, and as it passes through the atmosphere it scatters off nitrogen and oxygen"
    " molecules. Rayleigh scattering is much stronger for short wavelengths, roughly with the"
    " inverse fourth power, so blue light is scattered across the whole sky far more than red."
    " Violet scatters even more, but the sun emits less of it and our eyes are less sensitive"
    " to it, so the sky reads as blue. At sunset the light crosses more air, the blue is"
    " scattered away before it reaches us, and the remaining light looks orange and red."
    " Let me check the claim about the fourth power: intensity goes as one over lambda to the"
    " fourth, so light at 450 nm scatters about 4.4 times more than light at 650 nm. That fits.")

LOOP_SENTENCE = "Wait, but if removing one grain never turns a heap into a non-heap, then it stays a heap."


def test_repetition_low_on_normal_prose():
  assert metrics.repetition_score(PROSE) < 0.05


def test_repetition_high_on_a_sentence_repeated_many_times():
  looping = PROSE + " " + " ".join([LOOP_SENTENCE] * 30)
  assert metrics.repetition_score(looping) > 0.7
  assert metrics.repetition_score(looping) >= metrics.LOOP_THRESHOLD


def test_repetition_flags_a_trace_that_loops_for_its_second_half():
  n_words = len(PROSE.split())
  repeats = n_words // len(LOOP_SENTENCE.split())
  half_loop = PROSE + " " + " ".join([LOOP_SENTENCE] * repeats)
  assert metrics.LOOP_THRESHOLD <= metrics.repetition_score(half_loop) < 0.6


def test_repetition_is_case_and_punctuation_blind():
  a = metrics.repetition_score("Let me check again. " * 20)
  b = metrics.repetition_score("let me CHECK again! " * 20)
  assert a == b > 0.5


def test_repetition_short_text_scores_zero():
  assert metrics.repetition_score("yes") == 0.0


# The bundled samples carry the shared stand-ins' edge cases at the same rows.
RAIDEN = os.path.join(os.path.dirname(sources.resolve_samples("samples:raiden/x")),
                      "Raiden_DSR1_Part1.csv")


def test_repetition_threshold_separates_raidens_loop_row_from_the_rest():
  # The dataset notes: Part1 row 9 is a thinking loop (one sentence x44); others are prose.
  csv.field_size_limit(1 << 30)
  with open(RAIDEN, encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  flagged = [i for i, r in enumerate(rows)
             if metrics.repetition_score(r["response"]) >= metrics.LOOP_THRESHOLD]
  assert flagged == [9]


@pytest.mark.parametrize("pred,ref,em,f1", [
    ("Paris", "paris", 1.0, 1.0),
    ("The Paris.", "paris", 1.0, 1.0),  # articles and punctuation do not count
    ("Paris, France", "Paris", 0.0, 2 * (0.5 * 1.0) / 1.5),
    ("London", "Paris", 0.0, 0.0),
    ("", "Paris", 0.0, 0.0),
    ("the", "a", 1.0, 1.0),  # both normalize to empty: SQuAD counts that as agreement
])
def test_exact_match_and_f1(pred, ref, em, f1):
  assert metrics.exact_match(pred, ref) == em
  assert metrics.token_f1(pred, ref) == pytest.approx(f1)


def test_f1_counts_repeated_tokens_once_each():
  # SQuAD's F1 uses a multiset intersection: "a a b" vs "a b": 2 common of 3 predicted.
  assert metrics.token_f1("x x y", "x y") == pytest.approx(2 * (2 / 3) / (2 / 3 + 1))


def test_answer_agreement_per_source_skips_long_references():
  rows = [
      ("cot", "yes", "Yes"),
      ("cot", None, "no"),  # no answer block: scores 0
      ("cot", "blue sky", "blue"),
      ("raiden", "a story", "Once upon a time " * 20),  # long reference: not scored
  ]
  agree = metrics.answer_agreement(rows, max_words=8)
  assert set(agree) == {"cot", "all"}
  assert agree["cot"]["n"] == 3
  assert agree["cot"]["exact_match"] == pytest.approx(1 / 3)
  assert agree["cot"]["f1"] == pytest.approx((1 + 0 + 2 / 3) / 3)
  assert agree["all"] == agree["cot"]


def test_length_stats():
  s = metrics.length_stats(list(range(1, 11)))
  assert s["median"] == 5.5 and s["p90"] == pytest.approx(9.1) and s["max"] == 10
  assert metrics.length_stats([])["median"] is None


def test_perplexity():
  assert metrics.perplexity(math.log(7.0)) == pytest.approx(7.0)
  assert metrics.perplexity(None) is None
  assert metrics.perplexity(1e6) == math.inf

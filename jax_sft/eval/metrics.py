"""Numbers over a set of generations: lengths, budget hits, looping, answer agreement, loss.

Pure functions on strings and lists of numbers; the tokenizer and the model stay with
the caller (evaluate.py).
"""

from __future__ import annotations

import collections
import math
import re
import string
from typing import Iterable, Optional, Sequence

import numpy as np

from jax_sft.eval.compliance import KINDS

# A trace whose repetition score reaches this is counted as looping. Calibrated on the
# sample rows of the five sources (../shared/datasets): ordinary traces score under 0.1,
# one that copies a whole draft into its answer 0.19, Raiden's "thinking loop" row (one
# sentence 44 times) 0.64. A trace that loops for the second half of its length scores ~0.5.
LOOP_THRESHOLD = 0.3
REPETITION_NGRAM = 8


def length_stats(lengths: Sequence[int]) -> dict[str, Optional[float]]:
  """{'median', 'p90', 'mean', 'max'} of token lengths; None values for an empty list."""
  if not len(lengths):
    return {"median": None, "p90": None, "mean": None, "max": None}
  a = np.asarray(lengths, dtype=np.float64)
  return {"median": float(np.median(a)), "p90": float(np.percentile(a, 90)),
          "mean": float(a.mean()), "max": float(a.max())}


def _words(text: str) -> list[str]:
  return re.findall(r"\w+", text.lower())


def repetition_score(text: str, n: int = REPETITION_NGRAM) -> float:
  """Share of word n-grams that already occurred earlier in the text, in [0, 1).

  A loop ("Wait, let me check again." x 20) makes almost every n-gram a repeat;
  ordinary prose almost never repeats 8 words in a row. Texts shorter than n words
  score 0.

  >>> repetition_score("one two three four five six seven eight nine ten")
  0.0
  >>> round(repetition_score("a b c d e f g h " * 10), 2)
  0.89
  """
  words = _words(text)
  total = len(words) - n + 1
  if total <= 0:
    return 0.0
  seen = set()
  repeats = 0
  for i in range(total):
    gram = tuple(words[i:i + n])
    if gram in seen:
      repeats += 1
    else:
      seen.add(gram)
  return repeats / total


# --- answer agreement (SQuAD v1.1 evaluation script's normalization) ---------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
  """Lowercase, drop punctuation and English articles, collapse whitespace.

  >>> normalize_answer("The  Eiffel-Tower!")
  'eiffeltower'
  """
  s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
  return " ".join(_ARTICLES.sub(" ", s).split())


def exact_match(prediction: str, reference: str) -> float:
  """1.0 when the normalized strings are equal, else 0.0."""
  return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
  """Harmonic mean of token precision and recall after normalization (SQuAD's F1)."""
  pred = normalize_answer(prediction).split()
  ref = normalize_answer(reference).split()
  if not pred or not ref:
    return float(pred == ref)
  common = collections.Counter(pred) & collections.Counter(ref)
  same = sum(common.values())
  if same == 0:
    return 0.0
  precision, recall = same / len(pred), same / len(ref)
  return 2 * precision * recall / (precision + recall)


def is_short_reference(reference: str, max_words: int) -> bool:
  """A reference short enough for exact match / F1 to mean something."""
  return 0 < len(reference.split()) <= max_words


def answer_agreement(rows: Iterable[tuple[str, Optional[str], str]],
                     max_words: int) -> dict[str, dict[str, float]]:
  """Per-source {'n', 'exact_match', 'f1'} over (source, predicted, reference) rows.

  Only rows whose reference is short count; a missing prediction (no answer block)
  scores 0. An 'all' entry pools the sources.
  """
  scores: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
  for source, predicted, reference in rows:
    if not is_short_reference(reference, max_words):
      continue
    pair = (0.0, 0.0) if predicted is None else (
        exact_match(predicted, reference), token_f1(predicted, reference))
    scores[source].append(pair)
    scores["all"].append(pair)
  return {src: {"n": len(v), "exact_match": float(np.mean([p[0] for p in v])),
                "f1": float(np.mean([p[1] for p in v]))}
          for src, v in sorted(scores.items())}


def perplexity(loss: Optional[float]) -> Optional[float]:
  """exp(mean token cross-entropy), or None without a loss; inf past float range."""
  if loss is None:
    return None
  try:
    return math.exp(loss)
  except OverflowError:
    return math.inf


# --- one summary over all samples -----------------------------------------------------


def _rate(flags: Sequence[bool]) -> Optional[float]:
  return float(np.mean(flags)) if len(flags) else None


def _group_summary(samples: Sequence[dict]) -> dict:
  """Compliance, budget, looping and length figures over a list of sample dicts."""
  reps = [s["repetition"] for s in samples]
  return {
      "n": len(samples),
      "compliance_rate": _rate([s["ok"] for s in samples]),
      "hit_budget_rate": _rate([s["hit_budget"] for s in samples]),
      "looping_rate": _rate([r >= LOOP_THRESHOLD for r in reps]),
      "repetition_mean": float(np.mean(reps)) if reps else None,
      "generated_tokens": length_stats([s["generated_tokens"] for s in samples]),
      "reasoning_tokens": length_stats(
          [s["reasoning_tokens"] for s in samples if s["reasoning_tokens"] is not None]),
      "answer_tokens": length_stats(
          [s["answer_tokens"] for s in samples if s["answer_tokens"] is not None]),
  }


def summarize(samples: Sequence[dict], *, short_answer_max_words: int,
              heldout_loss: Optional[float] = None,
              heldout_tokens: Optional[int] = None) -> dict:
  """The report's numbers from per-sample dicts (see evaluate.score_sample for the keys).

  Returns the overall figures, the count of every compliance kind, answer agreement
  per source, the same figures per source, and held-out loss and perplexity.
  """
  kinds = collections.Counter(s["kind"] for s in samples)
  by_source: dict[str, list[dict]] = collections.defaultdict(list)
  for s in samples:
    by_source[s["source"]].append(s)
  out = _group_summary(samples)
  out["kinds"] = {k: kinds.get(k, 0) for k in KINDS}
  out["answer_agreement"] = answer_agreement(
      ((s["source"], s["answer"], s["reference_answer"]) for s in samples),
      short_answer_max_words)
  out["per_source"] = {src: _group_summary(group) for src, group in sorted(by_source.items())}
  out["heldout_loss"] = heldout_loss
  out["heldout_perplexity"] = perplexity(heldout_loss)
  out["heldout_tokens"] = heldout_tokens
  return out

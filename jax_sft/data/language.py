"""Is a text English? A language identifier that ships its own model: py3langid.

py3langid (a maintained fork of langid.py: naive Bayes over byte n-grams, 97 languages,
the model stored as numpy arrays, never pickled) was measured against
lingua-language-detector on texts with the rows' length distribution (docs/data.md,
`python bench/bench_data.py --langid`): as accurate on questions and answers at the
threshold used here, and several times faster, which is what keeps a 100K-row `prepare`
within its time. The model loads once per process, on first use (~0.7 s).

    english_probability("Why is the sky blue at noon and red at dusk?") > 0.9
    english_probability("¿Por qué el cielo es azul al mediodía y rojo al atardecer?") < 0.1
"""

from __future__ import annotations

import re

import numpy as np
from py3langid import langid

_IDENTIFIER: list[langid.LanguageIdentifier] = []
_LETTER = re.compile(r"[^\W\d_]")
_NOT_WORDS = re.compile(r"[^\w\s']+|[\d_]+")  # digits, punctuation, markup: not language


def _identifier() -> langid.LanguageIdentifier:
  if not _IDENTIFIER:
    ident = langid.LanguageIdentifier.from_model_file(langid.MODEL_FILE, norm_probs=True)
    # The model stores its feature table in float16, and every call gathers rows of it and
    # converts them for a float32 matmul; converting the table once (57 MB) gives the same
    # scores bit for bit at ~60% less time per call in that step.
    ident.nb_ptc = ident.nb_ptc.astype(np.float32)
    _IDENTIFIER.append(ident)
  return _IDENTIFIER[0]


def english_probability(text: str) -> float:
  """The identifier's probability that `text` is English (0..1)."""
  return dict(_identifier().rank(text)).get("en", 0.0)


def letters(text: str) -> int:
  """Number of letters in `text` (any script)."""
  return len(_LETTER.findall(text))


def judged_text(text: str, max_chars: int) -> str:
  """The words of `text`, up to `max_chars` characters: what the identifier reads. Digits,
  punctuation and markup are left out, so a markdown table of figures is judged by its
  words, not by its pipes and numbers.

      judged_text("| 1980 | 12,400 |\n## What the numbers show", 100) == "What the numbers show"
  """
  return " ".join(_NOT_WORDS.sub(" ", text[:4 * max_chars]).split())[:max_chars]


def is_english(text: str, min_prob: float, max_chars: int, min_letters: int) -> bool:
  """True when the words of `text` (`judged_text`) are English with probability >= min_prob
  (>= 0.5, so English must also be the top language: one `classify`, not a ranking of all
  97), or hold fewer than `min_letters` letters (too short to judge)."""
  text = judged_text(text, max_chars)
  if letters(text) < min_letters:
    return True
  lang, prob = _identifier().classify(text)
  return lang == "en" and prob >= min_prob

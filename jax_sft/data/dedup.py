"""Exact and near-duplicate removal across sources; the first occurrence wins.

Exact: the normalized question (lowercase, punctuation and extra spaces removed).
Near: datasketch MinHash LSH over word 3-grams of the normalized question.

    normalize_question("  What IS  this?! ") == "what is this"
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Iterator

from datasketch import MinHash, MinHashLSH

from jax_sft.data.config import DedupConfig

_NON_WORD = re.compile(r"[^\w\s]+")


def normalize_question(text: str) -> str:
  """Lowercase, punctuation dropped, whitespace collapsed."""
  return " ".join(_NON_WORD.sub(" ", text.lower()).split())


def shingles(norm: str, n: int = 3) -> list[bytes]:
  """Word n-grams of a normalized question (the whole question when shorter than n words)."""
  words = norm.split()
  if len(words) <= n:
    return [norm.encode()]
  return [" ".join(words[i:i + n]).encode() for i in range(len(words) - n + 1)]


def dedup(records: Iterable[dict[str, Any]], cfg: DedupConfig
          ) -> Iterator[tuple[dict[str, Any], str]]:
  """Yields (record, "") for kept records and (record, reason) for duplicates, in order."""
  seen: dict[str, str] = {}
  lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm) if cfg.near else None
  # Generating the permutations is most of a MinHash's cost: make them once.
  perms = MinHash(num_perm=cfg.num_perm, seed=1).permutations
  for rec in records:
    norm = normalize_question(rec["question"])
    if cfg.exact:
      if norm in seen:
        yield rec, "exact_duplicate"
        continue
      seen[norm] = rec["id"]
    if lsh is not None:
      mh = MinHash(num_perm=cfg.num_perm, seed=1, permutations=perms)
      mh.update_batch(shingles(norm))
      if lsh.query(mh):
        yield rec, "near_duplicate"
        continue
      key = rec["id"]
      while key in lsh:  # identical ids from identical rows: keep keys unique
        key += "'"
      lsh.insert(key, mh)
    yield rec, ""

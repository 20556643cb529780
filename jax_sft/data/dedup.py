"""Exact and near-duplicate removal across sources; the first occurrence wins.

Exact: the normalized question (lowercase, punctuation and extra spaces removed).
Near: datasketch MinHash LSH over word 3-grams of the normalized question.

    normalize_question("  What IS  this?! ") == "what is this"
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Iterator

from datasketch import MinHash, MinHashLSH

from jax_sft.config import DedupConfig

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


class Deduper:
  """Exact and near-duplicate checks in arrival order; `signature` is pure (runs in workers)."""

  def __init__(self, cfg: DedupConfig):
    self.cfg = cfg
    self.seen: set[str] = set()
    self.lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm) if cfg.near else None
    # Generating the permutations is most of a MinHash's cost: make them once.
    self.perms = MinHash(num_perm=cfg.num_perm, seed=1).permutations if cfg.near else None

  def signature(self, question: str) -> tuple[str, Any]:
    """(normalized question, MinHash hash values or None): everything `check` needs."""
    norm = normalize_question(question)
    if self.lsh is None:
      return norm, None
    mh = MinHash(num_perm=self.cfg.num_perm, seed=1, permutations=self.perms)
    mh.update_batch(shingles(norm))
    return norm, mh.hashvalues

  def check(self, rid: str, norm: str, hashvalues: Any) -> str:
    """"exact_duplicate", "near_duplicate" or "" (then remembered as seen)."""
    if self.cfg.exact:
      if norm in self.seen:
        return "exact_duplicate"
      self.seen.add(norm)
    if self.lsh is not None:
      mh = MinHash(num_perm=self.cfg.num_perm, seed=1, hashvalues=hashvalues, permutations=self.perms)
      if self.lsh.query(mh):
        return "near_duplicate"
      key = rid
      while key in self.lsh:  # identical ids from identical rows: keep keys unique
        key += "'"
      self.lsh.insert(key, mh)
    return ""


def dedup(records: Iterable[dict[str, Any]], cfg: DedupConfig
          ) -> Iterator[tuple[dict[str, Any], str]]:
  """Yields (record, "") for kept records and (record, reason) for duplicates, in order."""
  d = Deduper(cfg)
  for rec in records:
    yield rec, d.check(rec["id"], *d.signature(rec["question"]))

"""Mix, split and order: deterministic given the seed.

draw: a seeded sample of `count` rows per source (all when count is 0), with an
under-yield note in plain words. split: eval membership by id hash, so an id's split
never changes as the mix grows. order: shuffle by seed, or a curriculum easy -> hard.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np


def _seed_for(seed: int, name: str) -> int:
  return int.from_bytes(hashlib.blake2b(f"{seed}:{name}".encode(), digest_size=8).digest(), "little")


def draw(kept: list[dict[str, Any]], name: str, count: int, seed: int) -> tuple[list[dict], str]:
  """(chosen rows in their original order, note). Note is "" unless the source under-yields."""
  if not kept:
    raise ValueError(f"source {name!r} yielded no rows after filtering; see the drop counts "
                     f"in the log (or lower the filters / fix the path)")
  if count <= 0 or count >= len(kept):
    note = "" if count <= 0 or count == len(kept) else (
        f"{name}: asked for {count} rows but only {len(kept)} passed the filters; using all {len(kept)}")
    return kept, note
  rng = np.random.default_rng(_seed_for(seed, name))
  idx = np.sort(rng.choice(len(kept), size=count, replace=False))
  return [kept[i] for i in idx], ""


def id_fraction(rid: str) -> float:
  """A stable number in [0, 1) from an id."""
  return int.from_bytes(hashlib.blake2b(rid.encode(), digest_size=8).digest(), "little") / 2.0**64


def is_eval(rid: str, eval_fraction: float) -> bool:
  """True for ids held out for evaluation."""
  return id_fraction(rid) < eval_fraction


def order(rows: list[dict[str, Any]], how: str, seed: int) -> list[dict[str, Any]]:
  """Rows shuffled by `seed`, or sorted easy -> hard (model-turn tokens or the source's difficulty)."""
  if how == "shuffle":
    perm = np.random.default_rng(seed).permutation(len(rows))
    return [rows[i] for i in perm]
  if how == "curriculum_length":
    key = lambda r: (r["target_len"], id_fraction(r["id"]))
  elif how == "curriculum_difficulty":
    # The source's own difficulty (1-5) when it has one, else the middle; ties by length.
    key = lambda r: (r["metadata"].get("difficulty") or 3, r["target_len"], id_fraction(r["id"]))
  else:
    raise ValueError(f"data.order: {how!r} is not one of shuffle, curriculum_length, curriculum_difficulty")
  return sorted(rows, key=key)

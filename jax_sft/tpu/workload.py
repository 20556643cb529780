"""How many tokens one epoch of the configured mix is: measured when prepared, else estimated.

Measured: the trainer's packed-row count (`packed_rows.json` in the prepared data dir) or
the manifest's token total. Estimated: each source's row count times a typical example
length for its kind, the target capped at `data.max_target_tokens`. The typical lengths
are the datasets' median characters (the project's REFERENCE notes) at ~4 characters per
Gemma token, so the estimate is good to tens of percent, not better.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

# (question tokens, reasoning + answer tokens), medians.
TYPICAL_TOKENS = {
    "raiden": (120, 2450),
    "glaive": (150, 1750),
    "openo1": (120, 1025),
    "general_inquiry": (60, 900),
    "cot_collection": (150, 70),
}
TEMPLATE_TOKENS = 20  # turn markers, <reasoning>/<answer> tags, newlines
PACKING_EFFICIENCY = 0.95  # share of a packed row that is real tokens (first-fit bins)


@dataclasses.dataclass
class Epoch:
  """One epoch of the training split."""

  examples: int
  tokens: int  # real (non-padding) tokens
  rows: int  # packed rows of max_seq_len
  source: str  # how it was obtained: "packed_rows.json", "manifest" or "estimate"


def _example_tokens(kind: str, max_target: int, max_seq: int) -> int:
  question, target = TYPICAL_TOKENS.get(kind, (100, 1000))
  if max_target > 0:
    target = min(target, max_target)
  return min(question + target + TEMPLATE_TOKENS, max_seq)


def _find(d, *names):
  """First of `names` found as a number at any depth of the manifest dict."""
  if isinstance(d, dict):
    for n in names:
      if isinstance(d.get(n), (int, float)):
        return d[n]
    for v in d.values():
      found = _find(v, *names)
      if found is not None:
        return found
  return None


def _measured(data_cfg) -> Epoch | None:
  out = data_cfg.output_dir
  manifest_path = os.path.join(out, "manifest.json")
  if not os.path.exists(manifest_path):
    return None
  with open(manifest_path, encoding="utf-8") as f:
    manifest = json.load(f)
  train = (manifest.get("splits") or {}).get("train", manifest)
  examples = _find(train, "examples", "rows", "num_examples", "count")
  tokens = _find(train, "tokens", "total_tokens", "num_tokens")
  rows_path = os.path.join(out, "packed_rows.json")
  if os.path.exists(rows_path):
    with open(rows_path, encoding="utf-8") as f:
      known = json.load(f)
    rows = [v for k, v in known.items() if k.endswith(f"-{data_cfg.max_seq_len}")]
    if rows:
      tokens = tokens or int(rows[0] * data_cfg.max_seq_len * PACKING_EFFICIENCY)
      return Epoch(int(examples or 0), int(tokens), int(rows[0]), "packed_rows.json")
  if tokens:
    rows = math.ceil(tokens / (data_cfg.max_seq_len * PACKING_EFFICIENCY))
    return Epoch(int(examples or 0), int(tokens), rows, "manifest")
  return None


def epoch(data_cfg) -> Epoch:
  """The epoch of `data_cfg` (a DataConfig): measured if prepared, else estimated."""
  found = _measured(data_cfg)
  if found is not None:
    return found
  examples = tokens = 0
  for src in data_cfg.sources.values():
    n = int(src.count)
    examples += n
    tokens += n * _example_tokens(src.kind, getattr(data_cfg, "max_target_tokens", 0),
                                     data_cfg.max_seq_len)
  rows = math.ceil(tokens / (data_cfg.max_seq_len * PACKING_EFFICIENCY)) if tokens else 0
  return Epoch(examples, tokens, rows, "estimate")

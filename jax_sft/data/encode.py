"""Record -> token ids with the prompt length, under the length limits.

tokens = [BOS] + encode(render_prompt(q)) + encode(render_target(r, a) + "<end_of_turn>").
The loss covers tokens[prompt_len:], i.e. the model turn and its closing <end_of_turn>.
With long_policy "truncate", a too-long trace is cut at a sentence end so the whole
<answer> still fits, and the record says so (metadata["truncated_trace"]).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from jax_sft.data import template
from jax_sft.data.config import DataConfig
from jax_sft.data.tokenizer import Tokenizer

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\n+")
MIN_TRACE_TOKENS = 16  # a shorter kept trace is no longer a reasoning example


def _limits(cfg: DataConfig, prompt_len: int) -> int:
  budget = cfg.max_seq_len - prompt_len
  if cfg.max_target_tokens:
    budget = min(budget, cfg.max_target_tokens)
  return budget


def _target_ids(tok: Tokenizer, reasoning: str, answer: str) -> list[int]:
  return tok.encode(template.render_target(reasoning, answer) + template.END_OF_TURN)


def encode_record(rec: dict[str, Any], tok: Tokenizer, cfg: DataConfig
                  ) -> tuple[np.ndarray | None, int, str]:
  """(tokens int32, prompt_len, "") or (None, 0, drop_reason). May shorten rec["reasoning"]."""
  prompt = [tok.bos_id] + tok.encode(template.render_prompt(rec["question"], cfg.system_prompt))
  target = _target_ids(tok, rec["reasoning"], rec["answer"])
  budget = _limits(cfg, len(prompt))
  if len(target) > budget:
    if cfg.long_policy != "truncate":
      return None, 0, ("too_long_model_turn" if cfg.max_target_tokens and len(target) > cfg.max_target_tokens
                       and len(prompt) + len(target) <= cfg.max_seq_len else "too_long_example")
    if budget - len(_target_ids(tok, "", rec["answer"])) < MIN_TRACE_TOKENS:
      return None, 0, "answer_too_long_to_truncate"
    target = _truncate(rec, tok, budget)
    if target is None:
      return None, 0, "no_sentence_end_to_truncate"
  return np.asarray(prompt + target, np.int32), len(prompt), ""


def _truncate(rec: dict[str, Any], tok: Tokenizer, budget: int) -> list[int] | None:
  """Keeps the longest run of leading sentences whose target fits `budget` (binary search)."""
  pieces = _SENTENCE_END.split(rec["reasoning"])
  ends, pos = [], 0
  for p in pieces:  # character offsets where each leading prefix of sentences ends
    pos = rec["reasoning"].index(p, pos) + len(p)
    ends.append(pos)
  lo, hi, best = 1, len(ends) - 1, None
  while lo <= hi:
    mid = (lo + hi) // 2
    trace = rec["reasoning"][:ends[mid - 1]].strip()
    ids = _target_ids(tok, trace, rec["answer"])
    if len(ids) <= budget:
      best, lo = (trace, ids), mid + 1
    else:
      hi = mid - 1
  if best is None:
    return None
  rec["reasoning"] = best[0]
  rec["metadata"]["truncated_trace"] = True
  return best[1]

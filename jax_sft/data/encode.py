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


# No piece is this long in practice, so a longer text surely exceeds the budget; it is
# then truncated from a prefix instead of being tokenized whole (Raiden traces run 2-10x
# past a 768-token budget, and tokenizing them in full dominated prepare's time).
_MAX_CHARS_PER_TOKEN = 12


def encode_record(rec: dict[str, Any], tok: Tokenizer, cfg: DataConfig
                  ) -> tuple[np.ndarray | None, int, str]:
  """(tokens int32, prompt_len, "") or (None, 0, drop_reason). May shorten rec["reasoning"]."""
  prompt = [tok.bos_id] + tok.encode(template.render_prompt(rec["question"], cfg.system_prompt))
  budget = _limits(cfg, len(prompt))
  by_turn_cap = bool(cfg.max_target_tokens) and budget == cfg.max_target_tokens
  target = None
  if len(rec["reasoning"]) + len(rec["answer"]) <= _MAX_CHARS_PER_TOKEN * max(budget, 0):
    target = _target_ids(tok, rec["reasoning"], rec["answer"])
    if len(target) <= budget:
      return np.asarray(prompt + target, np.int32), len(prompt), ""
  if cfg.long_policy != "truncate":
    return None, 0, "too_long_model_turn" if by_turn_cap else "too_long_example"
  answer_len = len(_target_ids(tok, "", rec["answer"]))
  if budget - answer_len < MIN_TRACE_TOKENS:
    return None, 0, "answer_too_long_to_truncate"
  target = _truncate(rec, tok, budget, budget - answer_len)
  if target is None:
    return None, 0, "no_sentence_end_to_truncate"
  return np.asarray(prompt + target, np.int32), len(prompt), ""


def _truncate(rec: dict[str, Any], tok: Tokenizer, budget: int, trace_budget: int) -> list[int] | None:
  """Keeps the most leading sentences whose target fits `budget`.

  Sentence token counts come from one batched call on a prefix of the trace; their sum
  estimates the prefix's length, then the chosen prefix is encoded exactly and stepped
  back a sentence at a time while it still does not fit.
  """
  text = rec["reasoning"][:_MAX_CHARS_PER_TOKEN * trace_budget]
  ends = [m.start() for m in _SENTENCE_END.finditer(text)]
  if not ends:
    return None
  starts = [0] + ends
  pieces = [text[a:b] for a, b in zip(starts, ends)]
  cum = np.cumsum([len(ids) for ids in tok.sp.EncodeAsIds(pieces)])
  k = int(np.searchsorted(cum, trace_budget, side="right"))  # sentences that fit by estimate
  while k >= 1:
    trace = text[:ends[k - 1]].strip()
    ids = _target_ids(tok, trace, rec["answer"])
    if len(ids) <= budget:
      rec["reasoning"] = trace
      rec["metadata"]["truncated_trace"] = True
      return ids
    k -= 1
  return None

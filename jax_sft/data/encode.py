"""Record -> token ids with the prompt length, under the length limits.

tokens = [BOS] + encode_parts(prompt_parts(q)) + encode_parts(target_parts(r, a)): only the
template's markers become control ids; the question, trace and answer are data text
(`Tokenizer.encode_text`). The loss covers tokens[prompt_len:], i.e. the model turn and its
closing <end_of_turn>. With long_policy "truncate", a too-long trace is cut at a sentence
end so the whole <answer> still fits, and the record says so (metadata["truncated_trace"]).
A row that cannot fit says which part is to blame: `prompt_too_long` (the prompt leaves no
room for a model turn), `answer_too_long` (the answer alone leaves no room for a trace).
"""

from __future__ import annotations

import bisect
import re
from typing import Any

import numpy as np

from jax_sft.data import template
from jax_sft.config import DataConfig
from jax_sft.data.tokenizer import Tokenizer

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\n+")
MIN_TRACE_TOKENS = 16  # a shorter kept trace is no longer a reasoning example


def _limits(cfg: DataConfig, prompt_len: int) -> int:
  budget = cfg.max_seq_len - prompt_len
  if cfg.max_target_tokens:
    budget = min(budget, cfg.max_target_tokens)
  return budget


def prompt_ids(tok: Tokenizer, question: str, system_prompt: str = "") -> list[int]:
  """[BOS] + the user turn and model header, the question encoded as data text."""
  return [tok.bos_id] + tok.encode_parts(template.prompt_parts(question, system_prompt))


class _Target:
  """Builds the model turn's ids for one record, encoding the answer once.

  When the tokenizer has the four tags as single ids (the sample model), the trace is a
  part of its own in `encode_parts`, so the ids of target_parts(trace, answer) are exactly
  head + encode_text(trace) + rest: the trace is encoded on its own and the rest is
  reused. Otherwise (Gemma, whose vocab lacks the tags) the whole model turn is encoded.
  """

  _parts: dict[str, Any] = {}

  def __init__(self, tok: Tokenizer, answer: str):
    self.tok, self.answer = tok, answer
    if tok.path not in self._parts:  # per tokenizer: are the tags single ids, and their ids
      separable = all(tok.is_special(t) for t in template.TAGS + (template.END_OF_TURN,))
      self._parts[tok.path] = separable
    self.separable = self._parts[tok.path]
    if self.separable:
      self.head = tok.encode_parts(template.target_parts("", answer)[:1])
      self.rest = tok.encode_parts(template.target_parts("", answer)[2:])

  def ids(self, trace: str, trace_ids: list[int] | None = None) -> list[int]:
    """Target ids for `trace` (trace_ids: its encoding, when already known)."""
    if self.separable:
      return self.head + (self.tok.encode_text(trace) if trace_ids is None else trace_ids) + self.rest
    return self.tok.encode_parts(template.target_parts(trace, self.answer))

  def overhead(self) -> int:
    """Target length with an empty trace."""
    return len(self.head) + len(self.rest) if self.separable else len(self.ids(""))


# Characters of trace encoded first when looking for the cut: enough for the budget at
# ~5 characters per token (Gemma on English prose is ~4, the sample tokenizer ~2.2), so
# a 10K-character Raiden trace is encoded once over ~4K characters, not in full.
_WINDOW_CHARS_PER_TOKEN = 5


def encode_record(rec: dict[str, Any], tok: Tokenizer, cfg: DataConfig
                  ) -> tuple[np.ndarray | None, int, str]:
  """(tokens int32, prompt_len, "") or (None, 0, drop_reason). May shorten rec["reasoning"]."""
  prompt = prompt_ids(tok, rec["question"], cfg.system_prompt)
  budget = _limits(cfg, len(prompt))
  by_turn_cap = bool(cfg.max_target_tokens) and budget == cfg.max_target_tokens
  tgt = _Target(tok, rec["answer"])
  trace_budget = budget - tgt.overhead()
  trace = rec["reasoning"]
  window = len(trace) if trace_budget <= 0 else _WINDOW_CHARS_PER_TOKEN * trace_budget + 256
  while True:  # encode a prefix of the trace, growing it until it holds more than the budget
    text = trace[:window]
    trace_ids = tok.encode_text(text)
    if len(trace_ids) > trace_budget or len(text) == len(trace):
      break
    window *= 2
  if len(text) == len(trace) and len(trace_ids) <= trace_budget:
    target = tgt.ids(trace, trace_ids)
    if len(target) <= budget:
      return np.asarray(prompt + target, np.int32), len(prompt), ""
  if cfg.long_policy != "truncate":
    return None, 0, "too_long_model_turn" if by_turn_cap else "too_long_example"
  if trace_budget < MIN_TRACE_TOKENS:
    return None, 0, _too_long_to_truncate(cfg, len(prompt), tgt)
  target = _truncate(rec, tok, tgt, budget, text, trace_ids[:trace_budget])
  if target is None:
    return None, 0, "no_sentence_end_to_truncate"
  return np.asarray(prompt + target, np.int32), len(prompt), ""


def _too_long_to_truncate(cfg: DataConfig, prompt_len: int, tgt: _Target) -> str:
  """Which part leaves no room for a trace of MIN_TRACE_TOKENS: the prompt, or the answer."""
  empty_answer_turn = len(_Target(tgt.tok, "").ids(""))
  if cfg.max_seq_len - prompt_len < empty_answer_turn + MIN_TRACE_TOKENS:
    return "prompt_too_long"  # even an empty answer would not fit after this prompt
  return "answer_too_long"


def _truncate(rec: dict[str, Any], tok: Tokenizer, tgt: _Target, budget: int, text: str,
              fitting_ids: list[int]) -> list[int] | None:
  """Keeps the most leading sentences of `text` whose target fits `budget`.

  `fitting_ids` are the first trace tokens that fit; the characters they cover bound the
  cut, which goes at the last sentence end inside them. That prefix is encoded exactly
  (a prefix can tokenize differently at its end) and, while it does not fit, cut again
  inside the tokens that do.
  """
  ends = [m.start() for m in _SENTENCE_END.finditer(text)]
  limit = len(tok.decode(fitting_ids))  # characters covered by the fitting tokens
  while True:
    k = bisect.bisect_right(ends, limit)
    if k == 0:
      return None
    trace = text[:ends[k - 1]].strip()
    ids = tgt.ids(trace)
    if len(ids) <= budget:
      rec["reasoning"] = trace
      rec["metadata"]["truncated_trace"] = True
      return ids
    ends = ends[:k - 1]
    limit = min(limit, ends[-1] if ends else 0)

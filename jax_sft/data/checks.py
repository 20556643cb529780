"""The last check of `prepare`, over every example that can be kept: text and token ids.

Each failure names what is wrong; every case also has a filter of its own upstream, so a
failure here means a filter missed a case: the example is dropped with `check_<name>` and
the manifest counts what was checked and what failed (`final_check`).

  empty_trace / empty_answer   nothing but whitespace
  carriage_return              a CR left in a field
  control_string               `<start_of_turn>`, `<end_of_turn>`, `<bos>`, `<eos>`, `<pad>` in a field
  own_tag                      `<reasoning>`, `</answer>`... in the trace or the answer
  tag_block_in_answer          an unquoted think / Thought / Output block in the answer
  control_ids                  the example's control (and tag) ids are not exactly the
                               template's, in its order: BOS, the turn markers, the tags

    text_problem({"question": "Q", "reasoning": "R", "answer": "A\\r\\n"}) == "carriage_return"
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from jax_sft.data import clean, split, template
from jax_sft.data.tokenizer import Tokenizer

NAMES = ("empty_trace", "empty_answer", "carriage_return", "control_string", "own_tag",
         "tag_block_in_answer", "control_ids")


def text_problem(rec: dict[str, Any]) -> str:
  """The first text check `rec` fails (see the module doc), or ""."""
  fields = (rec["question"], rec["reasoning"], rec["answer"])
  if not rec["reasoning"].strip():
    return "empty_trace"
  if not rec["answer"].strip():
    return "empty_answer"
  if any("\r" in t for t in fields):
    return "carriage_return"
  if any(clean.control_string(t) for t in fields):
    return "control_string"
  if clean.own_tag(rec["reasoning"]) or clean.own_tag(rec["answer"]):
    return "own_tag"
  if split.has_tag_block(rec["answer"], clean.SOURCE_TAG_NAMES):
    return "tag_block_in_answer"
  return ""


def expected_control_ids(tok: Tokenizer, system_prompt: str = "") -> tuple[np.ndarray, tuple[int, ...]]:
  """(the ids that only the template may place, the sequence of them one example holds)."""
  ids = [tok.bos_id, tok.eos_id, tok.pad_id]
  ids += [tok.encode(s)[0] for s in (template.START_OF_TURN, template.END_OF_TURN) + template.TAGS
          if tok.is_special(s)]
  parts = template.prompt_parts("q", system_prompt) + template.target_parts("r", "a")
  want = [tok.bos_id] + tok.encode_parts(parts)
  guarded = np.unique(np.asarray(ids, np.int64))
  return guarded, tuple(int(i) for i in want if i in set(ids))


def control_id_failures(tokens: Sequence[np.ndarray], tok: Tokenizer, system_prompt: str = "") -> list[bool]:
  """Per example: True when its control/tag ids differ from the template's sequence.

  One vectorized pass over all examples' tokens (a 100K-row set holds ~10^8 tokens).
  """
  if not tokens:
    return []
  guarded, want = expected_control_ids(tok, system_prompt)
  flat = np.concatenate(tokens)
  ends = np.cumsum([len(t) for t in tokens])
  where = np.flatnonzero(np.isin(flat, guarded))
  owner = np.searchsorted(ends, where, side="right")
  found = np.split(flat[where], np.searchsorted(owner, np.arange(1, len(tokens))))
  return [tuple(f.tolist()) != want for f in found]


def run(recs: list[dict[str, Any]], tok: Tokenizer, system_prompt: str = "") -> list[str]:
  """Per record (with "tokens"): "" or the name of the first check it fails."""
  bad_ids = control_id_failures([r["tokens"] for r in recs], tok, system_prompt)
  return [text_problem(r) or ("control_ids" if bad else "") for r, bad in zip(recs, bad_ids)]

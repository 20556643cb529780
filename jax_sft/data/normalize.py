"""Raw rows of each source -> one record shape, or a drop with a reason.

A record: {id, source, question, reasoning, answer, metadata}. Line endings become LF in
every field; the split between reasoning and answer is `split.py`'s (structural tags,
several blocks, a missing opening tag, text outside the tags); CoT-Collection's literal
backslash-n sequences become newlines. The reasoning is never copied into the answer nor
an answer invented. A record holding a control string, one of our tags, or a tag block in
its answer is dropped (`clean.field_problem`). What was recovered is listed in
metadata["repairs"] and counted per source.

    normalize(RawRow("f:0", {"prompt": "Why?", "response": "A</think>B"}), "r", "raiden")
    -> ({..., "reasoning": "A", "answer": "B", "metadata": {"where": "f:0",
         "repairs": ["missing_open_tag"]}}, "")
"""

from __future__ import annotations

import hashlib
from typing import Any

from jax_sft.data import clean, split
from jax_sft.data.sources import RawRow


def stable_id(source: str, question: str, raw: str) -> str:
  """`source:hash` of the row's content, stable across runs and machines."""
  digest = hashlib.blake2b(f"{question}\x00{raw}".encode("utf-8"), digest_size=8).hexdigest()
  return f"{source}:{digest}"


def _str(row: dict[str, Any], key: str) -> str:
  v = row.get(key)
  return clean.fix_line_endings(v) if isinstance(v, str) else ""


def _same(a: str, b: str) -> bool:
  return " ".join(a.split()) == " ".join(b.split())


def _general_inquiry(row: dict[str, Any], metadata: dict[str, Any]) -> tuple[str, str, str, list[str]]:
  """(reasoning, answer, drop reason, repairs): the trace is metadata.reasoning (with or
  without <think> tags); a think block the answer carries is taken out of it, and kept in
  the trace when it adds to it."""
  meta = row.get("metadata") if isinstance(row.get("metadata"), dict) else {}
  for key in ("difficulty", "topic"):
    if meta.get(key) is not None:
      metadata[key] = meta[key]
  reasoning, answer, repairs = _str(meta, "reasoning"), _str(row, "answer"), []
  if split.find_tags(reasoning, ("think",)):
    s = split.split_think(reasoning)
    if s.why:
      return "", "", s.why, []
    reasoning, repairs = s.reasoning, list(s.repairs)
    if s.answer:  # the field is all reasoning: text after its </think> stays in it
      reasoning = f"{reasoning}\n\n{s.answer}"
      repairs.append("text_after_reasoning")
  reasoning = reasoning.strip()
  if split.find_tags(answer, ("think",)):
    s = split.split_think(answer)
    if s.why:
      return "", "", f"{s.why}_in_answer", []
    answer = s.answer
    if _same(s.reasoning, reasoning):
      repairs.append("answer_think_removed")
    elif not reasoning:
      reasoning = s.reasoning
      repairs.append("answer_think_moved")
    else:
      reasoning = f"{reasoning}\n\n{s.reasoning}"
      repairs.append("answer_think_merged")
  return reasoning, answer.strip(), "", repairs


def normalize(raw: RawRow, source: str, kind: str) -> tuple[dict[str, Any] | None, str]:
  """(record, "") or (None, drop_reason) for one raw row of a source of `kind`."""
  if raw.row is None:
    return None, raw.reason or "unreadable_row"
  row = raw.row
  metadata: dict[str, Any] = {"where": raw.where}
  repairs: list[str] = []
  if kind in ("raiden", "glaive"):
    question, response = _str(row, "prompt"), _str(row, "response")
    s = split.split_think(response)
    reasoning, answer, why, repairs = s.reasoning, s.answer, s.why, list(s.repairs)
    raw_text = response
  elif kind == "openo1":
    question, output = _str(row, "instruction"), _str(row, "output")
    s = split.split_openo1(output)
    reasoning, answer, why, repairs = s.reasoning, s.answer, s.why, list(s.repairs)
    raw_text = output
  elif kind == "general_inquiry":
    question = _str(row, "question")
    reasoning, answer, why, repairs = _general_inquiry(row, metadata)
    raw_text = _str(row, "answer") + "\x00" + _str(row.get("metadata") or {}, "reasoning")
  elif kind == "cot_collection":
    fields = [_str(row, k) for k in ("source", "rationale", "target")]
    unescaped = [clean.unescape_newlines(f) for f in fields]
    if unescaped != fields:
      repairs.append("escaped_newlines")
    question, reasoning, answer = unescaped[0], unescaped[1].strip(), unescaped[2].strip()
    why = ""
    for key in ("task", "type"):
      if row.get(key):
        metadata[key] = row[key]
    raw_text = fields[1] + "\x00" + fields[2]
  else:
    raise ValueError(f"unknown source kind {kind!r}")
  question = question.strip()
  if why:
    return None, why
  for name, text in (("question", question), ("reasoning", reasoning), ("answer", answer)):
    if not text:
      return None, f"empty_{name}"
  why = clean.field_problem(question, reasoning, answer)
  if why:
    return None, why
  if repairs:
    metadata["repairs"] = repairs
  rid = f"{source}:{raw.own_id}" if raw.own_id else stable_id(source, question, raw_text)
  return {"id": rid, "source": source, "question": question, "reasoning": reasoning,
          "answer": answer, "metadata": metadata}, ""

"""Raw rows of each source -> one record shape, or a drop with a reason.

A record: {id, source, question, reasoning, answer, metadata}. Tags are matched
case-insensitively and whitespace is trimmed. The reasoning is never copied into the
answer nor an answer invented: a trace without its closing tag, or a row without an
answer, is dropped.

    parse_tagged("<THINK> a </think>\\n\\n b", "think") == ("a", "b", "")
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from jax_sft.data.sources import RawRow

_TAG_RES: dict[str, tuple[re.Pattern, re.Pattern]] = {}


def _tag_res(tag: str) -> tuple[re.Pattern, re.Pattern]:
  if tag not in _TAG_RES:
    _TAG_RES[tag] = (re.compile(rf"<\s*{tag}\s*>", re.I), re.compile(rf"<\s*/\s*{tag}\s*>", re.I))
  return _TAG_RES[tag]


def parse_tagged(text: str, tag: str) -> tuple[str, str, str]:
  """Splits `<tag>reasoning</tag> rest` into (reasoning, rest, drop_reason).

  drop_reason is "no_reasoning_tag" or "unclosed_reasoning" ("" when fine).
  """
  open_re, close_re = _tag_res(tag)
  m_open = open_re.search(text)
  if not m_open:
    return "", "", "no_reasoning_tag"
  m_close = close_re.search(text, m_open.end())
  if not m_close:
    return "", "", "unclosed_reasoning"
  return text[m_open.end():m_close.start()].strip(), text[m_close.end():].strip(), ""


def strip_optional_tag(text: str, tag: str) -> tuple[str, str]:
  """Text inside `<tag>…</tag>` if present, else the text itself; drop reason if unclosed."""
  open_re, close_re = _tag_res(tag)
  m_open = open_re.search(text)
  if not m_open:
    return text.strip(), ""
  m_close = close_re.search(text, m_open.end())
  if not m_close:
    return "", "unclosed_reasoning"
  return text[m_open.end():m_close.start()].strip(), ""


def stable_id(source: str, question: str, raw: str) -> str:
  """`source:hash` of the row's content, stable across runs and machines."""
  digest = hashlib.blake2b(f"{question}\x00{raw}".encode("utf-8"), digest_size=8).hexdigest()
  return f"{source}:{digest}"


def _str(row: dict[str, Any], key: str) -> str:
  v = row.get(key)
  return v if isinstance(v, str) else ""


def normalize(raw: RawRow, source: str, kind: str) -> tuple[dict[str, Any] | None, str]:
  """(record, "") or (None, drop_reason) for one raw row of a source of `kind`."""
  if raw.row is None:
    return None, "unreadable_row"
  row = raw.row
  metadata: dict[str, Any] = {"where": raw.where}
  if kind in ("raiden", "glaive"):
    question, response = _str(row, "prompt"), _str(row, "response")
    reasoning, answer, why = parse_tagged(response, "think")
    raw_text = response
  elif kind == "openo1":
    question, output = _str(row, "instruction"), _str(row, "output")
    reasoning, rest, why = parse_tagged(output, "Thought")
    answer = ""
    if not why:
      answer, tail, answer_why = parse_tagged(rest, "Output")
      if answer_why == "no_reasoning_tag":
        why = "missing_answer"
      elif answer_why:
        why = "unclosed_answer"
    raw_text = output
  elif kind == "general_inquiry":
    question, answer = _str(row, "question"), _str(row, "answer").strip()
    meta = row.get("metadata") if isinstance(row.get("metadata"), dict) else {}
    reasoning, why = strip_optional_tag(_str(meta, "reasoning"), "think")
    for key in ("difficulty", "topic"):
      if meta.get(key) is not None:
        metadata[key] = meta[key]
    raw_text = answer + "\x00" + _str(meta, "reasoning")
  elif kind == "cot_collection":
    question = _str(row, "source")
    reasoning, answer, why = _str(row, "rationale").strip(), _str(row, "target").strip(), ""
    for key in ("task", "type"):
      if row.get(key):
        metadata[key] = row[key]
    raw_text = reasoning + "\x00" + answer
  else:
    raise ValueError(f"unknown source kind {kind!r}")
  question = question.strip()
  if why:
    return None, why
  if not question:
    return None, "empty_question"
  if not reasoning:
    return None, "missing_reasoning"
  if not answer:
    return None, "missing_answer"
  rid = f"{source}:{raw.own_id}" if raw.own_id else stable_id(source, question, raw_text)
  return {"id": rid, "source": source, "question": question, "reasoning": reasoning,
          "answer": answer, "metadata": metadata}, ""

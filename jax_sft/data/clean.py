"""Text-level cleaning of a record's fields, and what no kept field may hold.

    fix_line_endings("a\\r\\nb\\rc") == "a\\nb\\nc"
    unescape_newlines("Yes.\\\\nSo B.") == "Yes.\\nSo B."     # CoT-Collection only
    field_problem("q", "r", "<answer>x") == "own_tag_in_answer"
"""

from __future__ import annotations

import re

from jax_sft.data import split, template

_CR = re.compile(r"\r\n?")
# A backslash-n that is not itself escaped (`\\n`) and does not start a LaTeX command
# (`\neq`, `\nabla`, `\newline`, `\not`, `\nu`, ...), which math rationales do hold.
_ESCAPED_NEWLINE = re.compile(
    r"(?<!\\)\\n(?!(?:e|eq|abla|ewline|ewcommand|ot|otin|i|u|eg|mid|leq|geq|exists|atural"
    r"|earrow|warrow|subseteq|supseteq|parallel|oindent|onumber|olimits)(?![A-Za-z]))")
# Tags of the source formats: a block of them inside an answer is reasoning that leaked in.
SOURCE_TAG_NAMES = ("think", "thought", "output")
FIELDS = ("question", "reasoning", "answer")


def fix_line_endings(text: str) -> str:
  """CRLF and lone CR -> LF."""
  return _CR.sub("\n", text) if "\r" in text else text


def unescape_newlines(text: str) -> str:
  """CoT-Collection's literal backslash-n sequences -> newlines (see docs/data.md).

      unescape_newlines("A.\\\\nB") == "A.\\nB"
      unescape_newlines("x \\\\neq y") == "x \\\\neq y"        # LaTeX stays
      unescape_newlines("a\\\\\\\\nb") == "a\\\\\\\\nb"          # an escaped backslash stays
  """
  return _ESCAPED_NEWLINE.sub("\n", text) if "\\n" in text else text


def control_string(text: str) -> str:
  """The first Gemma control string in `text` (`<end_of_turn>`, `<bos>`, ...), or ""."""
  if "<" not in text:
    return ""
  for s in template.CONTROL_STRINGS:
    if s in text:
      return s
  return ""


def own_tag(text: str) -> str:
  """The first of our four tags (exactly as the evaluation's checker matches them), or ""."""
  if "<" not in text:
    return ""
  for s in template.TAGS:
    if s in text:
      return s
  return ""


def field_problem(question: str, reasoning: str, answer: str) -> str:
  """Why a record's fields cannot be trained on as they are, or "" when they can.

  A control string in any field; one of our tags in the trace or the answer (a question
  may quote them: the model never writes the question); a tag block of the source
  formats inside the answer, unless quoted as code.
  """
  for name, text in zip(FIELDS, (question, reasoning, answer)):
    if control_string(text):
      return f"control_string_in_{name}"
  for name, text in (("reasoning", reasoning), ("answer", answer)):
    if own_tag(text):
      return f"own_tag_in_{name}"
  if "<" in answer and split.has_tag_block(answer, SOURCE_TAG_NAMES):
    return "tag_block_in_answer"
  return ""

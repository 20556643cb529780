"""The format checker: exactly one closed <reasoning> block, then one closed <answer> block.

What counts as the model's output: the decoded model turn up to (not including) the
first `<end_of_turn>` or `<eos>`; anything after a stop marker is never shown to a
reader or a grader, so it is ignored. Whitespace is free: before, between and after the
blocks. Tags are matched exactly (lowercase, no attributes); `<Answer>` is text, not a tag.

An output that fails is given one kind, the first that applies in this order:

  cut_off             generation hit max_new_tokens without a stop and </answer> never came
  duplicated          some tag occurs more than once
  missing_reasoning   no <reasoning> (detail says whether </reasoning> stands alone)
  unclosed_reasoning  <reasoning> without </reasoning>
  missing_answer      no <answer> (likewise)
  unclosed_answer     <answer> without </answer>
  wrong_order         the four tags are there once each, but not in the order r, /r, a, /a
  text_before         non-whitespace before <reasoning>
  text_between        non-whitespace between </reasoning> and <answer>
  text_after          non-whitespace after </answer>
  empty_reasoning     the reasoning block holds only whitespace
  empty_answer        the answer block holds only whitespace

An output that closed its answer right at the budget is judged on its text like any
other: the grader would see a complete answer.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Optional

R_OPEN, R_CLOSE, A_OPEN, A_CLOSE = "<reasoning>", "</reasoning>", "<answer>", "</answer>"
STOP_MARKERS = ("<end_of_turn>", "<eos>")

FAILURE_KINDS = (
    "cut_off", "duplicated", "missing_reasoning", "unclosed_reasoning",
    "missing_answer", "unclosed_answer", "wrong_order",
    "text_before", "text_between", "text_after", "empty_reasoning", "empty_answer",
)
KINDS = ("ok",) + FAILURE_KINDS

_STOP_RE = re.compile("|".join(re.escape(m) for m in STOP_MARKERS))


@dataclasses.dataclass(frozen=True)
class Compliance:
  """The verdict on one output.

  `reasoning` / `answer` hold the text inside the first block of each kind (stripped),
  or what follows an unclosed opening tag, or None when the opening tag is absent; they
  are filled on failures too, so lengths can still be measured.
  """

  ok: bool
  kind: str
  reasoning: Optional[str]
  answer: Optional[str]
  detail: str = ""


def visible_text(text: str) -> str:
  """The output as a reader sees it: cut at the first stop marker.

  >>> visible_text("<answer>4</answer><end_of_turn>\\n<start_of_turn>user")
  '<answer>4</answer>'
  """
  m = _STOP_RE.search(text)
  return text[:m.start()] if m else text


def _block(text: str, open_tag: str, close_tag: str) -> Optional[str]:
  """Content of the first `open_tag` block, up to its close (or the end if unclosed)."""
  start = text.find(open_tag)
  if start < 0:
    return None
  start += len(open_tag)
  end = text.find(close_tag, start)
  return (text[start:] if end < 0 else text[start:end]).strip()


def check(text: str, hit_budget: bool = False) -> Compliance:
  """Classifies one decoded model turn. `hit_budget`: generation stopped at max_new_tokens.

  >>> check("<reasoning>2+2 is 4.</reasoning>\\n<answer>4</answer>").kind
  'ok'
  >>> check("<reasoning>2+2 is", hit_budget=True).kind
  'cut_off'
  """
  text = visible_text(text)
  reasoning = _block(text, R_OPEN, R_CLOSE)
  answer = _block(text, A_OPEN, A_CLOSE)

  def verdict(kind: str, detail: str = "") -> Compliance:
    return Compliance(kind == "ok", kind, reasoning, answer, detail)

  counts = {tag: text.count(tag) for tag in (R_OPEN, R_CLOSE, A_OPEN, A_CLOSE)}
  if hit_budget and counts[A_CLOSE] == 0:
    return verdict("cut_off", "max_new_tokens reached before </answer>")
  repeated = [tag for tag, n in counts.items() if n > 1]
  if repeated:
    return verdict("duplicated", ", ".join(f"{t} x{counts[t]}" for t in repeated))
  for name, open_tag, close_tag in (("reasoning", R_OPEN, R_CLOSE), ("answer", A_OPEN, A_CLOSE)):
    if not counts[open_tag]:
      detail = f"{close_tag} without {open_tag}" if counts[close_tag] else f"no {open_tag} block"
      return verdict(f"missing_{name}", detail)
    if not counts[close_tag]:
      return verdict(f"unclosed_{name}", f"{open_tag} without {close_tag}")

  r0, r1, a0, a1 = (text.find(t) for t in (R_OPEN, R_CLOSE, A_OPEN, A_CLOSE))
  if not r0 < r1 < a0 < a1:
    order = sorted(((r0, R_OPEN), (r1, R_CLOSE), (a0, A_OPEN), (a1, A_CLOSE)))
    return verdict("wrong_order", " ".join(tag for _, tag in order))
  for kind, gap in (("text_before", text[:r0]),
                    ("text_between", text[r1 + len(R_CLOSE):a0]),
                    ("text_after", text[a1 + len(A_CLOSE):])):
    if gap.strip():
      return verdict(kind, _excerpt(gap.strip()))
  if not reasoning:
    return verdict("empty_reasoning")
  if not answer:
    return verdict("empty_answer")
  return verdict("ok")


def _excerpt(s: str, limit: int = 60) -> str:
  s = " ".join(s.split())
  return s if len(s) <= limit else s[:limit - 3] + "..."

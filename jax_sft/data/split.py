"""Where the reasoning ends and the answer starts, in a response written with tags.

The split goes at the structural tags, not at the first literal one. A tag is *quoted*,
and so only text, when it sits in a code fence or an inline code span, when an opening tag
follows a quote mark, or when a closing tag is followed by one (`print("</Thought>")`). Of
the unquoted tags, those at a line edge (nothing but whitespace before or after them on
their line, as R1 and OpenO1 write them) are the structural ones when a closing tag is
among them; otherwise (compact rows such as `<think>a</think>b`) all unquoted tags are.

`<think>` responses (Raiden, glaive, General_Inquiry): the trace is all the thinking, up to
the last structural `</think>`, the tags taken out and the blocks (and any draft between
them) joined by blank lines; the answer is what follows it.

    split_think("<think>A</think>draft<think>B</think>Final")
    == Split("A\\n\\ndraft\\n\\nB", "Final", "", ("several_blocks",))
    split_think("A</think>B") == Split("A", "B", "", ("missing_open_tag",))

OpenO1: the boundary is the last structural `</Thought>` followed (after whitespace only)
by `<Output>`, or else the last `</Thought>` with an `<Output>` after it (the text between
is kept at the end of the trace); the answer ends at the last structural `</Output>`.

Text outside the tags, by rule: before the first opening tag -> kept at the start of the
trace (`text_before_reasoning`); between the thinking and `<Output>` -> kept at the end of
the trace (`text_between_reasoning_and_answer`); after `</Output>` -> the row is dropped
(`text_after_answer`: the answer could be cut short, or junk would be kept).
"""

from __future__ import annotations

import dataclasses
import functools
import re

QUOTES = "\"'`“”‘’«»"
_FENCE = re.compile(r"^[ \t]*(```|~~~).*?(?:^[ \t]*\1|\Z)", re.M | re.S)
_INLINE = re.compile(r"`[^`\n]+`")


@dataclasses.dataclass(frozen=True)
class Split:
  """A response split into trace and answer; `why` is a drop reason ("" when fine) and
  `repairs` names what was recovered or moved (counted per source in the manifest)."""

  reasoning: str
  answer: str
  why: str = ""
  repairs: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class _Tag:
  start: int
  end: int
  name: str  # lowercase tag name
  closing: bool


@functools.cache
def _tag_re(names: tuple[str, ...]) -> re.Pattern:
  return re.compile(r"<\s*(/?)\s*(" + "|".join(names) + r")\s*>", re.I)


def quoted_spans(text: str) -> list[tuple[int, int]]:
  """(start, end) of code fences and inline code spans: tags inside them are text.

      quoted_spans("a `<think>` b") == [(2, 11)]
  """
  if "`" not in text and "~~~" not in text:
    return []
  spans = [m.span() for m in _FENCE.finditer(text)]
  outside = _FENCE.sub(lambda m: " " * len(m.group()), text)
  return spans + [m.span() for m in _INLINE.finditer(outside)]


def _at_line_edge(text: str, start: int, end: int, by_newline: bool = False) -> bool:
  """Only whitespace between the tag and the start or the end of its line; with
  `by_newline`, that line edge must be a newline (not the start or end of the text)."""
  nl_before = text.rfind("\n", 0, start)
  nl_after = text.find("\n", end)
  before_ok = not text[nl_before + 1:start].strip() and (nl_before >= 0 or not by_newline)
  after_ok = (not text[end:nl_after if nl_after >= 0 else len(text)].strip()
              and (nl_after >= 0 or not by_newline))
  return before_ok or after_ok


def find_tags(text: str, names: tuple[str, ...]) -> list[_Tag]:
  """The unquoted tags of `names` in `text` (case and inner whitespace free), in order.

      [t.name for t in find_tags('<THINK>a "<think>" `</think>` </think>b', ("think",))]
      == ["think", "think"]
  """
  if "<" not in text:
    return []
  spans = quoted_spans(text)
  tags = []
  for m in _tag_re(names).finditer(text):
    closing = bool(m.group(1))
    if any(a <= m.start() < b for a, b in spans):
      continue
    if not closing and m.start() > 0 and text[m.start() - 1] in QUOTES:
      continue
    if closing and m.end() < len(text) and text[m.end()] in QUOTES:
      continue
    tags.append(_Tag(m.start(), m.end(), m.group(2).lower(), closing))
  return tags


def structural_tags(text: str, names: tuple[str, ...]) -> list[_Tag]:
  """The tags that delimit blocks: the unquoted ones; and when some closing tag stands at a
  line edge next to a newline (the layout R1 and OpenO1 write), only the unquoted tags at
  a line edge.

      [t.start for t in structural_tags("a\\n</think>\\nsay </think> b", ("think",))] == [2]
  """
  tags = find_tags(text, names)
  if not any(t.closing and _at_line_edge(text, t.start, t.end, by_newline=True) for t in tags):
    return tags  # a compact row: no closing tag on a line of its own
  return [t for t in tags if _at_line_edge(text, t.start, t.end)]


def _join_blocks(text: str, tags: list[_Tag]) -> str:
  """`text` without the given tags, the pieces between them joined by blank lines."""
  pieces, pos = [], 0
  for t in tags:
    pieces.append(text[pos:t.start].strip())
    pos = t.end
  pieces.append(text[pos:].strip())
  return "\n\n".join(p for p in pieces if p)


def _region_repairs(text: str, tags: list[_Tag], name: str) -> list[str]:
  """What the thinking region [0, last close) needed: no opening tag, several blocks,
  text before the first opening tag."""
  repairs = []
  own = [t for t in tags if t.name == name]
  if own and own[0].closing:
    repairs.append("missing_open_tag")
  elif own and text[:own[0].start].strip():
    repairs.append("text_before_reasoning")
  if sum(t.closing for t in own) > 1:
    repairs.append("several_blocks")
  return repairs


def split_think(text: str, name: str = "think") -> Split:
  """Trace and answer of a `<think>…</think> answer` response (see the module doc).

      split_think("<think>a</think>b") == Split("a", "b")
      split_think("<think>a").why == "unclosed_reasoning"
  """
  tags = structural_tags(text, (name,))
  closes = [t for t in tags if t.closing]
  if not closes:
    return Split("", "", "unclosed_reasoning" if tags else "no_reasoning_tag")
  last = closes[-1]
  if any(not t.closing and t.start > last.start for t in tags):
    return Split("", "", "unclosed_reasoning")  # a new block opened after the last close
  region = [t for t in tags if t.end <= last.end]
  reasoning = _join_blocks(text[:last.end], region)
  return Split(reasoning, text[last.end:].strip(), "", tuple(_region_repairs(text, region, name)))


def split_openo1(text: str) -> Split:
  """Trace and answer of a `<Thought>…</Thought> <Output>…</Output>` response.

      split_openo1("<Thought>a</Thought>\\n<Output>b</Output>") == Split("a", "b")
      split_openo1("<Thought>a</Thought>").why == "no_answer_tag"
  """
  tags = structural_tags(text, ("thought", "output"))
  t_closes = [t for t in tags if t.name == "thought" and t.closing]
  if not t_closes:
    return Split("", "", "unclosed_reasoning" if any(t.name == "thought" for t in tags)
                 else "no_reasoning_tag")
  o_opens = [t for t in tags if t.name == "output" and not t.closing]
  pairs = []  # (</Thought>, the first <Output> after it)
  for c in t_closes:
    after = [o for o in o_opens if o.start >= c.end]
    if after:
      pairs.append((c, after[0]))
  if not pairs:
    return Split("", "", "no_answer_tag")
  adjacent = [(c, o) for c, o in pairs if not text[c.end:o.start].strip()]
  close, open_ = (adjacent or pairs)[-1]
  o_closes = [t for t in tags if t.name == "output" and t.closing and t.start >= open_.end]
  if not o_closes:
    return Split("", "", "unclosed_answer")
  end = o_closes[-1]
  repairs = []
  if text[end.end:].strip():
    return Split("", "", "text_after_answer")
  region = [t for t in tags if t.end <= close.end]
  reasoning = _join_blocks(text[:close.end], region)
  between = text[close.end:open_.start].strip()
  if between:
    reasoning = f"{reasoning}\n\n{between}" if reasoning else between
    repairs.append("text_between_reasoning_and_answer")
  repairs = _region_repairs(text, region, "thought") + repairs
  return Split(reasoning, text[open_.end:end.start].strip(), "", tuple(repairs))


def has_tag_block(text: str, names: tuple[str, ...]) -> bool:
  """True when `text` holds an unquoted opening tag of one of `names` with its closing tag
  after it (a block, not a mention of one tag).

      has_tag_block("x <think>y</think> z", ("think",)) is True
      has_tag_block("the `<think>y</think>` pair", ("think",)) is False
  """
  opened = set()
  for t in find_tags(text, names):
    if not t.closing:
      opened.add(t.name)
    elif t.name in opened:
      return True
  return False

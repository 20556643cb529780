"""The Gemma chat template with the reasoning/answer format, as plain strings.

    render_prompt("Why?") + render_target("Because.", "B")
    == "<start_of_turn>user\nWhy?<end_of_turn>\n<start_of_turn>model\n"
       "<reasoning>Because.</reasoning>\n<answer>B</answer>"
The tokenizer adds BOS in front of the prompt; the trainer appends `END_OF_TURN` to the target.

Only the template inserts markers: `prompt_parts` / `target_parts` give the same text as
a list in which the template's own markers are `Marker`s and everything else (the data)
is plain `str`, so the tokenizer can turn markers into control ids and encode data text
as text (`Tokenizer.encode_parts`), whatever strings the data holds.
"""

from __future__ import annotations


class Marker(str):
  """A turn marker or tag placed by the template (never by data text)."""


START_OF_TURN = Marker("<start_of_turn>")
END_OF_TURN = Marker("<end_of_turn>")
REASONING_OPEN, REASONING_CLOSE = Marker("<reasoning>"), Marker("</reasoning>")
ANSWER_OPEN, ANSWER_CLOSE = Marker("<answer>"), Marker("</answer>")
TAGS = (REASONING_OPEN, REASONING_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)
# Gemma's control strings: in data text they must stay text (they are pieces of their own
# in Gemma's vocabulary, and a literal one would teach a fake end of turn or a fake user turn).
CONTROL_STRINGS = (START_OF_TURN, END_OF_TURN, "<bos>", "<eos>", "<pad>")


def prompt_parts(question: str, system_prompt: str = "") -> list[str]:
  """`render_prompt` as parts: Markers where the template puts markers, str for text.

      prompt_parts("Why?") == [START_OF_TURN, "user\nWhy?", END_OF_TURN, "\n",
                               START_OF_TURN, "model\n"]
  """
  if system_prompt:
    question = f"{system_prompt}\n\n{question}"
  return [START_OF_TURN, f"user\n{question}", END_OF_TURN, "\n", START_OF_TURN, "model\n"]


def target_parts(reasoning: str, answer: str) -> list[str]:
  """`render_target` + `END_OF_TURN` as parts (the whole model turn the loss covers).

      target_parts("R", "A") == [REASONING_OPEN, "R", REASONING_CLOSE, "\n", ANSWER_OPEN, "A",
                                 ANSWER_CLOSE, END_OF_TURN]
  """
  return [REASONING_OPEN, reasoning, REASONING_CLOSE, "\n", ANSWER_OPEN, answer, ANSWER_CLOSE,
          END_OF_TURN]


def render_prompt(question: str, system_prompt: str = "") -> str:
  """The user turn plus the model header; a system prompt (Gemma has no system role) goes first."""
  return "".join(prompt_parts(question, system_prompt))


def render_target(reasoning: str, answer: str) -> str:
  """The model turn's content, without the closing `<end_of_turn>`."""
  return "".join(target_parts(reasoning, answer)[:-1])


def render_example(question: str, reasoning: str, answer: str) -> str:
  """The whole example as text, as it appears in preview.jsonl (without BOS)."""
  return render_prompt(question) + render_target(reasoning, answer) + END_OF_TURN

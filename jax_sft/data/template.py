"""The Gemma chat template with the reasoning/answer format, as plain strings.

    render_prompt("Why?") + render_target("Because.", "B")
    == "<start_of_turn>user\nWhy?<end_of_turn>\n<start_of_turn>model\n"
       "<reasoning>Because.</reasoning>\n<answer>B</answer>"
The tokenizer adds BOS in front of the prompt; the trainer appends `END_OF_TURN` to the target.
"""

from __future__ import annotations

START_OF_TURN = "<start_of_turn>"
END_OF_TURN = "<end_of_turn>"
REASONING_OPEN, REASONING_CLOSE = "<reasoning>", "</reasoning>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
TAGS = (REASONING_OPEN, REASONING_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)


def render_prompt(question: str, system_prompt: str = "") -> str:
  """The user turn plus the model header; a system prompt (Gemma has no system role) goes first."""
  if system_prompt:
    question = f"{system_prompt}\n\n{question}"
  return f"{START_OF_TURN}user\n{question}{END_OF_TURN}\n{START_OF_TURN}model\n"


def render_target(reasoning: str, answer: str) -> str:
  """The model turn's content, without the closing `<end_of_turn>`."""
  return f"{REASONING_OPEN}{reasoning}{REASONING_CLOSE}\n{ANSWER_OPEN}{answer}{ANSWER_CLOSE}"


def render_example(question: str, reasoning: str, answer: str) -> str:
  """The whole example as text, as it appears in preview.jsonl (without BOS)."""
  return render_prompt(question) + render_target(reasoning, answer) + END_OF_TURN

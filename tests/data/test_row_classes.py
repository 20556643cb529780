"""Every class of row in docs/data.md's table, on rows written here in the real layouts:
what normalize + the row filters make of it (kept as which trace and answer, or dropped
with which reason)."""

import pytest

from jax_sft.config import FilterConfig
from jax_sft.data import filters, normalize
from jax_sft.data.sources import RawRow

Q = "Why do people keep diaries, and what do they get out of writing things down each day?"
R1 = "The question asks about motives. Writing helps people sort out their feelings."
R2 = "There is also memory: a diary keeps details that would otherwise fade."
A = "People keep diaries to understand their feelings and to remember their days."


def think(kind, response, prompt=Q):
  return kind, {"prompt": prompt, "response": response}


def openo1(output, instruction=Q):
  return "openo1", {"instruction": instruction, "output": output}


def gi(answer, reasoning, question=Q):
  return "general_inquiry", {"question": question, "answer": answer,
                             "metadata": {"reasoning": reasoning, "difficulty": 2, "topic": "life"}}


def cot(rationale, target, source=Q):
  return "cot_collection", {"source": source, "rationale": rationale, "target": target,
                            "task": "qa", "type": "CoT"}


TABLE = ("## What the numbers show\n\n| Period | Population | Mine employees | Businesses |\n|---|---|---|---|\n"
         "| 1980–1995 (15 yrs) | −1,500 (−12%) | −1,050 (−34%) | −28 (−19%) |\n"
         "| 1995–2005 (10 yrs) | −2,700 (−25%) | −1,150 (−56%) | −47 (−40%) |\n"
         "| 2005–2020 (15 yrs) | −1,900 (−23%) | −750 (−83%) | −13 (−18%) |\n\n"
         "The town shrank as the mine let people go, and the shops followed the workers out.")
# class -> (row, expected): expected is a drop reason, or (trace, answer, repairs) when kept.
CLASSES = {
    "one think block": (think("raiden", f"<think>\n{R1}\n</think>\n\n{A}"), (R1, A, [])),
    "several think blocks: all thinking in the trace, the answer after the last close": (
        think("raiden", f"<think>\n{R1}\n</think>\n\nDraft: diaries help.\n\n<think>\n{R2}\n</think>\n\n{A}"),
        (f"{R1}\n\nDraft: diaries help.\n\n{R2}", A, ["several_blocks"])),
    "several think blocks, compact (glaive)": (
        think("glaive", f"<think>{R1}</think>Draft.<think>{R2}</think>{A}"),
        (f"{R1}\n\nDraft.\n\n{R2}", A, ["several_blocks"])),
    "missing opening <think> (R1 distill)": (
        think("raiden", f"{R1}\n</think>\n\n{A}"), (R1, A, ["missing_open_tag"])),
    "missing opening tag, compact": (think("glaive", f"{R1}</think>{A}"), (R1, A, ["missing_open_tag"])),
    "text before <think>: kept at the start of the trace": (
        think("glaive", f"Let me see.\n<think>\n{R1}\n</think>\n\n{A}"),
        (f"Let me see.\n\n{R1}", A, ["text_before_reasoning"])),
    "a think block opened after the answer (cut off)": (
        think("raiden", f"<think>\n{R1}\n</think>\n\n{A}\n<think>\n{R2}"), "unclosed_reasoning"),
    "no tag at all": (think("glaive", f"{R1} {A}"), "no_reasoning_tag"),
    "unclosed <think>": (think("raiden", f"<think>\n{R1}"), "unclosed_reasoning"),
    "the trace talks about </think> inline": (
        think("raiden", f"<think>\nI must not write </think> too early. {R1}\n</think>\n\n{A}"),
        (f"I must not write </think> too early. {R1}", A, [])),
    "the answer talks about </think> inline: it stays": (
        think("raiden", f"<think>\n{R1}\n</think>\n\nR1 models print </think> when done. {A}"),
        (R1, f"R1 models print </think> when done. {A}", [])),
    "an unquoted think block inside the answer": (
        think("glaive", f"<think>\n{R1}\n</think>\n\nUse <think>x</think> like this. {A}"), "tag_block_in_answer"),
    "a quoted think block inside the answer stays": (
        think("glaive", f"<think>\n{R1}\n</think>\n\nUse `<think>x</think>` like this. {A}"),
        (R1, f"Use `<think>x</think>` like this. {A}", [])),
    "OpenO1 layout": (openo1(f"<Thought>\n{R1}\n</Thought>\n<Output>\n{A}\n</Output>"), (R1, A, [])),
    "OpenO1: the thought talks about </Thought> and <Output>": (
        openo1(f"<Thought>\n{R1} After that I close with </Thought> and open <Output> for it.\n{R2}\n"
               f"</Thought>\n<Output>\n{A}\n</Output>"),
        (f"{R1} After that I close with </Thought> and open <Output> for it.\n{R2}", A, [])),
    "OpenO1: code strings hold the tags": (
        openo1(f'<Thought>\n{R1}\nprint("</Thought>")\nprint("<Output>")\n</Thought>\n<Output>\n{A}\n</Output>'),
        (f'{R1}\nprint("</Thought>")\nprint("<Output>")', A, [])),
    "OpenO1: text between </Thought> and <Output>: kept at the end of the trace": (
        openo1(f"<Thought>\n{R1}\n</Thought>\nSo, in short:\n<Output>\n{A}\n</Output>"),
        (f"{R1}\n\nSo, in short:", A, ["text_between_reasoning_and_answer"])),
    "OpenO1: text after </Output>: dropped": (
        openo1(f"<Thought>\n{R1}\n</Thought>\n<Output>\n{A}\n</Output>\nMore text."), "text_after_answer"),
    "OpenO1: a code fence in the answer holds the tags on their own lines: it stays": (
        openo1(f"<Thought>\n{R1}\n</Thought>\n<Output>\n{A}\n```xml\n<Output>\nhi\n</Output>\n```\n</Output>"),
        (R1, f"{A}\n```xml\n<Output>\nhi\n</Output>\n```", [])),
    "inline code holds a tag block in the answer: it stays": (
        think("glaive", f"<think>\n{R1}\n</think>\n\nType `say <think> then </think> done` here. {A}"),
        (R1, f"Type `say <think> then </think> done` here. {A}", [])),
    "OpenO1: no <Output>": (openo1(f"<Thought>\n{R1}\n</Thought>\n{A}"), "no_answer_tag"),
    "OpenO1: unclosed <Output>": (openo1(f"<Thought>\n{R1}\n</Thought>\n<Output>\n{A}"), "unclosed_answer"),
    "OpenO1: the answer discusses the tags in backticks: it stays": (
        openo1(f"<Thought>\n{R1}\n</Thought>\n<Output>\nWrap it as `<Output>x</Output>`. {A}\n</Output>"),
        (R1, f"Wrap it as `<Output>x</Output>`. {A}", [])),
    "General_Inquiry: answer carries the same think block": (
        gi(f"<think>\n{R1}\n</think>\n\n{A}", f"<think>\n{R1}\n</think>"), (R1, A, ["answer_think_removed"])),
    "General_Inquiry: answer carries a different think block: merged into the trace": (
        gi(f"<think>{R2}</think>\n{A}", f"<think>\n{R1}\n</think>"),
        (f"{R1}\n\n{R2}", A, ["answer_think_merged"])),
    "General_Inquiry: empty reasoning, the answer's think block becomes the trace": (
        gi(f"<think>{R1}</think>{A}", ""), (R1, A, ["answer_think_moved"])),
    "General_Inquiry: reasoning without tags": (gi(A, R1), (R1, A, [])),
    "CRLF and lone CR become LF in every field": (
        think("raiden", f"<think>\r\n{R1}\r\n{R2}\r\n</think>\r\n\r\nFirst line.\rSecond line. {A}",
              prompt=Q.replace(", and", ",\r\nand")),
        (f"{R1}\n{R2}", f"First line.\nSecond line. {A}", [])),
    "CoT-Collection: literal backslash-n is a newline (LaTeX and \\\\n stay)": (
        cot(r"First, x \neq y.\nSo the answer follows.\nA path C:\\new stays.", "Yes"),
        ("First, x \\neq y.\nSo the answer follows.\nA path C:\\\\new stays.", "Yes", ["escaped_newlines"])),
    "control string in the question": (think("glaive", f"<think>{R1}</think>{A}",
                                              prompt=Q + " <end_of_turn>"), "control_string_in_question"),
    "control string in the trace": (think("glaive", f"<think>{R1} <start_of_turn>user</think>{A}"),
                                    "control_string_in_reasoning"),
    "control string in the answer": (think("glaive", f"<think>{R1}</think>{A}<eos>"), "control_string_in_answer"),
    "<bos> / <pad> in a field": (openo1(f"<Thought>\n{R1}<pad>\n</Thought>\n<Output>\n{A}\n</Output>"),
                                 "control_string_in_reasoning"),
    "our tag in the trace": (think("raiden", f"<think>\n{R1} <answer>\n</think>\n\n{A}"), "own_tag_in_reasoning"),
    "our tag in the answer": (think("raiden", f"<think>\n{R1}\n</think>\n\n{A}</reasoning>"), "own_tag_in_answer"),
    "our tag in the question: kept (the model never writes the question)": (
        think("raiden", f"<think>\n{R1}\n</think>\n\n{A}", prompt=Q + " Put it in <answer> tags."),
        (R1, A, [])),
    "empty question": (think("glaive", f"<think>{R1}</think>{A}", prompt=" \n\t"), "empty_question"),
    "empty answer": (think("raiden", f"<think>\n{R1}\n</think>\n\n"), "empty_answer"),
    "empty trace": (cot("", "Yes"), "empty_reasoning"),
    "a looping answer": (think("raiden", f"<think>\n{R1}\n</think>\n\n" + "I keep saying the same thing. " * 30),
                         "degenerate_answer"),
    "a looping trace": (think("raiden", "<think>\n" + "Let me check this again. " * 8 + f"\n</think>\n\n{A}"),
                        "degenerate_trace"),
    "a Spanish row (Latin script)": (
        think("glaive", "<think>\nLa pregunta trata de los motivos. Escribir ayuda a ordenar los sentimientos.\n"
                        "</think>\n\nLa gente escribe diarios para entender sus sentimientos y recordar sus días.",
              prompt="¿Por qué la gente escribe diarios y qué obtiene de escribir cada día lo que le pasa?"),
        "non_english"),
    "a French answer to an English question": (
        think("glaive", f"<think>\n{R1}\n</think>\n\nLes gens tiennent un journal pour comprendre leurs "
                        "sentiments et se souvenir de leurs journées."), "non_english"),
    "English question and answer, the trace in Chinese": (
        think("raiden", "<think>\n问题是关于动机的。写作可以帮助人们整理自己的感受和记忆。\n</think>\n\n" + A),
        "non_latin_trace"),
    "an English answer that opens with a table of figures: judged by its words": (
        think("raiden", f"<think>\n{R1}\n</think>\n\n" + TABLE),
        (R1, TABLE, [])),
    "a short English question (too short to judge) with an English answer": (
        think("glaive", f"<think>{R1}</think>{A}", prompt="Why keep a diary?"), (R1, A, [])),
}


def _outcome(kind, row):
  rec, why = normalize.normalize(RawRow("fixture.jsonl:0", row), kind, kind)
  if rec is None:
    return why
  why = filters.row_filter(rec, FilterConfig(drop_code=False))  # code fences are a class here
  return why or (rec["reasoning"], rec["answer"], rec["metadata"].get("repairs", []), rec["question"])


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_row_class(name):
  (kind, row), want = CLASSES[name]
  got = _outcome(kind, row)
  if isinstance(want, str):
    assert got == want
  else:
    assert got[:3] == want
    assert "\r" not in got[3]


def test_reasoning_never_reaches_the_answer():
  # Over every kept class: no part of the trace's blocks sits in the answer.
  for name, ((kind, row), want) in CLASSES.items():
    if not isinstance(want, str):
      trace, answer, _ = want
      assert R2 not in answer and "Draft" not in answer, name
      for block in trace.split("\n\n"):
        assert block not in answer or block == answer, name

"""The format checker on hand-written outputs, one or more per failure kind."""

import pytest

from jax_sft.eval import compliance
from jax_sft.eval.compliance import check

GOOD = "<reasoning>Paris is the capital of France.</reasoning>\n<answer>Paris</answer>"


@pytest.mark.parametrize("text", [
    GOOD,
    "\n  " + GOOD + "\n\n",  # whitespace around the blocks is free
    "<reasoning>a</reasoning><answer>b</answer>",  # and between them optional
    GOOD + "<end_of_turn>",  # the stop marker ends the output
    GOOD + "<end_of_turn>\n<start_of_turn>user\nmore",  # nothing after it is seen
    GOOD + "<eos>",
    "<reasoning>\nline one\nline two\n</reasoning>\n\n<answer>\n42\n</answer>\n",
])
def test_well_formed_outputs_pass(text):
  v = check(text)
  assert (v.ok, v.kind) == (True, "ok"), v


def test_ok_extracts_stripped_blocks():
  v = check("<reasoning>\n  think  \n</reasoning>\n<answer> 42 </answer>")
  assert v.reasoning == "think" and v.answer == "42" and v.detail == ""


# (output, hit_budget, expected kind, a word the detail must contain)
CASES = [
    # cut off by the budget: no </answer> and generation hit max_new_tokens
    ("<reasoning>Let me think. Let me think. Let me", True, "cut_off", "max_new_tokens"),
    ("<reasoning>done</reasoning>\n<answer>Par", True, "cut_off", ""),
    ("", True, "cut_off", ""),
    # the same unfinished texts without the budget flag are structural failures
    ("<reasoning>Let me think.", False, "unclosed_reasoning", "</reasoning>"),
    ("<reasoning>done</reasoning>\n<answer>Par", False, "unclosed_answer", "</answer>"),
    # duplicated blocks
    (GOOD + "\n" + GOOD, False, "duplicated", "x2"),
    ("<reasoning>a</reasoning><reasoning>b</reasoning><answer>c</answer>", False, "duplicated",
     "<reasoning>"),
    ("<reasoning>a</reasoning><answer>b</answer><answer>c</answer>", False, "duplicated", "<answer>"),
    # missing tags, saying which
    ("Paris is the capital.\n<answer>Paris</answer>", False, "missing_reasoning", "no <reasoning>"),
    ("", False, "missing_reasoning", ""),
    ("The answer is Paris.", False, "missing_reasoning", ""),
    ("<reasoning>Paris.</reasoning>", False, "missing_answer", "no <answer>"),
    ("<reasoning>Paris.</reasoning>\nParis</answer>", False, "missing_answer", "</answer> without"),
    ("Paris.</reasoning>\n<answer>Paris</answer>", False, "missing_reasoning", "</reasoning> without"),
    # tags are exact: a capitalised tag is text
    ("<Reasoning>a</Reasoning><answer>b</answer>", False, "missing_reasoning", ""),
    # wrong order
    ("<answer>Paris</answer>\n<reasoning>Because.</reasoning>", False, "wrong_order", ""),
    ("<reasoning>a<answer>b</answer></reasoning>", False, "wrong_order", ""),
    ("</reasoning>a<reasoning><answer>b</answer>", False, "wrong_order", ""),
    # text outside the blocks
    ("Sure! " + GOOD, False, "text_before", "Sure!"),
    ("<reasoning>a</reasoning>\nSo:\n<answer>b</answer>", False, "text_between", "So:"),
    (GOOD + "\nHope this helps!", False, "text_after", "Hope this helps"),
    # a complete answer followed by rambling up to the budget is text after, not a cut
    (GOOD + "\nAlso, " + "more " * 50, True, "text_after", "Also"),
    # empty blocks
    ("<reasoning>Because.</reasoning>\n<answer>  \n</answer>", False, "empty_answer", ""),
    ("<reasoning> </reasoning>\n<answer>Paris</answer>", False, "empty_reasoning", ""),
]


@pytest.mark.parametrize("text,hit_budget,kind,detail", CASES)
def test_failure_kinds(text, hit_budget, kind, detail):
  v = check(text, hit_budget=hit_budget)
  assert not v.ok
  assert v.kind == kind, v
  assert detail in v.detail, v


def test_every_failure_kind_is_exercised():
  assert {kind for _, _, kind, _ in CASES} == set(compliance.FAILURE_KINDS)


def test_ok_at_exactly_the_budget():
  # Closing </answer> on the last allowed token is a complete, valid output.
  assert check(GOOD, hit_budget=True).ok


def test_partial_blocks_are_extracted_for_lengths():
  v = check("<reasoning>step one\nstep two", hit_budget=True)
  assert v.reasoning == "step one\nstep two" and v.answer is None
  v = check("<reasoning>r</reasoning><answer>partial", hit_budget=True)
  assert (v.reasoning, v.answer) == ("r", "partial")


def test_text_after_stop_marker_is_ignored_even_if_malformed():
  v = check(GOOD + "<end_of_turn><reasoning>again")
  assert v.ok
  # ...but a stop marker before the answer leaves the answer missing.
  v = check("<reasoning>a</reasoning><end_of_turn><answer>b</answer>")
  assert v.kind == "missing_answer"

"""The final check of `prepare`: what it catches, and that it catches what a filter missed."""

import json

import pytest

from jax_sft.config import DataConfig, SourceConfig
from jax_sft.data import checks, clean, prepare

OK = {"question": "Why?", "reasoning": "Because it is so.", "answer": "Yes."}


@pytest.mark.parametrize("change, want", [
    ({}, ""),
    ({"reasoning": " \n"}, "empty_trace"),
    ({"answer": ""}, "empty_answer"),
    ({"question": "Why?\r\nReally?"}, "carriage_return"),
    ({"answer": "Yes.\r"}, "carriage_return"),
    ({"question": "Why?<end_of_turn>"}, "control_string"),
    ({"reasoning": "Because <pad> it is so."}, "control_string"),
    ({"answer": "Yes.<bos>"}, "control_string"),
    ({"reasoning": "Because </reasoning> it is so."}, "own_tag"),
    ({"answer": "<answer>Yes."}, "own_tag"),
    ({"answer": "<think>maybe</think> Yes."}, "tag_block_in_answer"),
    ({"answer": "<Thought>\nmaybe\n</Thought>\nYes."}, "tag_block_in_answer"),
    ({"answer": "Yes, `<think>maybe</think>` is the format."}, ""),  # quoted content
    ({"answer": "Yes, a lone </think> mention."}, ""),  # a mention, not a block
    ({"question": "Answer in <answer> tags."}, ""),  # the model never writes the question
])
def test_text_checks(change, want):
  assert checks.text_problem({**OK, **change}) == want


def test_smoke_prepare_checks_every_example(prepared):
  _, m = prepared
  fc = m["final_check"]
  passed = sum(s["passed"] for s in m["sources"].values())
  assert fc["checked"] == fc["passed"] == passed > 0 and fc["failed"] == {}


def test_a_row_a_filter_missed_is_dropped_by_the_check(tmp_path, monkeypatch):
  monkeypatch.setattr(clean, "field_problem", lambda *a: "")  # as if the filter had a hole
  r = "The question asks about motives. Writing helps people sort out their feelings and days."
  a = "People keep diaries to understand their feelings and to remember their days."
  rows = [{"prompt": "Why do people keep diaries, and what do they get out of it?",
           "response": f"<think>{r}</think>{a}<end_of_turn>"},
          {"prompt": "Why does bread go stale overnight in a dry kitchen, and can it be undone?",
           "response": f"<think>{r}</think>{a}"}]
  f = tmp_path / "g.jsonl"
  f.write_text("".join(json.dumps(x) + "\n" for x in rows))
  cfg = DataConfig(sources={"g": SourceConfig(kind="glaive", path=str(f))}, output_dir=str(tmp_path / "o"),
                   num_workers=0, eval_fraction=0.0)
  m = prepare.prepare(cfg)
  assert m["final_check"] == {"checked": 2, "passed": 1, "failed": {"control_string": 1},
                              "checks": list(checks.NAMES)}
  s = m["sources"]["g"]
  assert s["dropped"] == {"check_control_string": 1} and s["kept"] == 1 and s["passed"] == 1
  (rec,) = prepare.read_records(cfg.output_dir, "train")
  assert "<end_of_turn>" not in rec["answer"]

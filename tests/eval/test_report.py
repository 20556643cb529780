"""The report on synthetic results: JSON round trip, Markdown sections, --against deltas."""

import json

import pytest

from jax_sft.eval import evaluate, report

GOOD = "<reasoning>It is the capital.</reasoning>\n<answer>Paris</answer>"
LOOP = "<reasoning>" + "Let me check again. " * 60


def _count(text):
  return len(text.split())


def _samples(outputs):
  recs = [
      {"id": "cot-1", "source": "cot", "question": "Capital of France?", "reasoning": "r",
       "answer": "Paris"},
      {"id": "cot-2", "source": "cot", "question": "Capital of Spain?", "reasoning": "r",
       "answer": "Madrid"},
      {"id": "raiden-1", "source": "raiden", "question": "Write | a poem", "reasoning": "r",
       "answer": "A long poem " * 30},
      {"id": "raiden-2", "source": "raiden", "question": "Explain <tags>", "reasoning": "r",
       "answer": "An essay " * 30},
  ]
  return [evaluate.score_sample(r, out, n, hit, _count)
          for r, (out, n, hit) in zip(recs, outputs)]


def _report(outputs, name, loss=None):
  return evaluate.build_report(name, _samples(outputs), max_new_tokens=100,
                               short_answer_max_words=8, loss=loss, loss_tokens=1000)


THIS = _report([(GOOD, 12, False), ("<reasoning>Spain.</reasoning>\n<answer>Madrid</answer>", 9, False),
                (GOOD + " P.S. <b>", 14, False), (LOOP, 100, True)], "runs/two", loss=1.5)
OTHER = _report([(GOOD, 12, False), ("Madrid", 2, False), (LOOP, 100, True), (LOOP, 100, True)],
                "runs/one", loss=2.0)


def test_summary_numbers():
  s = THIS["summary"]
  assert s["n"] == 4
  assert s["compliance_rate"] == 0.5
  assert s["kinds"]["ok"] == 2 and s["kinds"]["text_after"] == 1 and s["kinds"]["cut_off"] == 1
  assert sum(s["kinds"].values()) == 4
  assert s["hit_budget_rate"] == 0.25 and s["looping_rate"] == 0.25
  assert s["answer_agreement"]["cot"] == {"n": 2, "exact_match": 1.0, "f1": 1.0}
  assert "raiden" not in s["answer_agreement"]  # long references are not scored
  assert s["per_source"]["raiden"]["compliance_rate"] == 0.0
  assert s["heldout_perplexity"] == pytest.approx(4.4817, rel=1e-4)


def test_markdown_sections_and_escaping():
  md = report.render_markdown(THIS, samples=3)
  for heading in ("## Summary", "## Format failures by kind", "## Per source",
                  "## Answer agreement", "## Sample generations (3 of 4)"):
    assert heading in md
  assert "| format compliance | 50.0% |" in md
  assert "| text_after | 1 (25.0%) |" in md
  assert "| held-out perplexity | 4.48 |" in md
  # Model output is shown as text, never as markup.
  assert "P.S. &lt;b&gt;" in md and "P.S. <b>" not in md
  assert "&lt;reasoning&gt;It is the capital." in md
  assert md.count("### `") == 3
  assert "**Question:** Explain &lt;tags&gt;" in report.render_markdown(THIS, samples=4)
  assert "It is the capital.&lt;/reasoning&gt;<br>&lt;answer&gt;Paris" in md
  # each sample table is one source line, so no blank line can end the HTML block
  assert all(line.startswith("<table>") and line.endswith("</table>")
             for line in md.splitlines() if "<table>" in line)


def test_against_puts_both_side_by_side_with_deltas(tmp_path):
  json_path, md_path = report.write(THIS, str(tmp_path), OTHER, samples=4)
  md = open(md_path).read()
  assert "| metric | this | against | delta |" in md
  assert "| format compliance | 50.0% | 25.0% | +25.0 pt (better) |" in md
  assert "| held-out loss | 1.5000 | 2.0000 | -0.5000 (better) |" in md
  assert "| looping traces | 25.0% | 50.0% | -25.0 pt (better) |" in md
  assert "| missing_reasoning | 0 (0.0%) | 1 (25.0%) | -1 |" in md
  # Samples: the same prompt's two outputs in one row, with the reference.
  assert "<th>this: ok, 9 tokens</th><th>against: missing_reasoning" in md
  saved = json.load(open(json_path))
  assert saved["against"]["summary"] == json.loads(json.dumps(OTHER["summary"]))
  assert len(saved["samples"]) == 4


def test_load_round_trip_and_bad_file(tmp_path):
  report.write(THIS, str(tmp_path))
  back = report.load(str(tmp_path))
  assert back["summary"]["kinds"] == THIS["summary"]["kinds"]
  bad = tmp_path / "x.json"
  bad.write_text('{"checkpoint": "a"}')
  with pytest.raises(ValueError, match="x.json: not an eval report"):
    report.load(str(bad))
  with pytest.raises(ValueError, match="cannot read eval report"):
    report.load(str(tmp_path / "missing.json"))


def test_no_failures_and_no_short_references():
  r = _report([(GOOD, 5, False)] * 4, "x")
  r["samples"] = r["samples"][2:]  # only long-reference prompts
  r["summary"] = evaluate.metrics.summarize(r["samples"], short_answer_max_words=8)
  md = report.render_markdown(r)
  assert "No failures." in md
  assert "No prompt in this set has a short reference answer." in md
  assert "| held-out loss | n/a |" in md

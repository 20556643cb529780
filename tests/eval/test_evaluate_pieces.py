"""evaluate.py's pure pieces with the bundled tokenizer and a scripted generator."""

import doctest

import pytest

from jax_sft.data.template import render_prompt
from jax_sft.data.tokenizer import Tokenizer
from jax_sft.eval import compliance, evaluate, metrics, report


@pytest.mark.parametrize("module", [compliance, metrics, evaluate])
def test_docstring_examples(module):
  result = doctest.testmod(module)
  assert result.attempted > 0 and result.failed == 0


@pytest.fixture(scope="module")
def tok():
  return Tokenizer("")


def test_prompt_ids_are_bos_plus_the_template(tok):
  ids = evaluate.prompt_ids(tok, "Why is the sky blue?")
  assert ids[0] == tok.bos_id
  assert tok.decode(ids[1:]) == render_prompt("Why is the sky blue?")
  assert ids.count(tok.end_of_turn_id) == 1 and ids.count(tok.start_of_turn_id) == 2


def test_run_prompts_scores_scripted_generations(tok):
  records = [{"id": str(i), "source": "s", "question": f"q{i}", "reasoning": "r", "answer": "4"}
             for i in range(3)]
  good = tok.encode("<reasoning>2 and 2 make 4.</reasoning>\n<answer>4</answer>")
  scripted = [
      good + [tok.end_of_turn_id] + tok.encode("junk after the stop"),  # ok
      tok.encode("<reasoning>" + "and so on " * 10)[:10],  # budget of 10 runs out
      good[:5] + [tok.eos_id],  # stopped early: unclosed
  ]
  samples = evaluate.run_prompts(records, tok, lambda prompts: scripted, max_new_tokens=10)
  assert [s["kind"] for s in samples] == ["ok", "cut_off", "unclosed_reasoning"]
  assert samples[0]["output"] == tok.decode(good)
  assert samples[0]["generated_tokens"] == len(good)
  assert samples[0]["answer"] == "4" and samples[0]["answer_tokens"] == len(tok.encode("4"))
  assert samples[1]["hit_budget"] and not samples[2]["hit_budget"]


def test_build_report_renders(tok, tmp_path):
  records = [{"id": "a", "source": "s", "question": "q", "reasoning": "r", "answer": "4"}]
  gen = lambda prompts: [tok.encode("<reasoning>x</reasoning><answer>4</answer>")]
  samples = evaluate.run_prompts(records, tok, gen, max_new_tokens=64)
  r = evaluate.build_report("ckpt", samples, max_new_tokens=64, short_answer_max_words=8)
  _, md = report.write(r, str(tmp_path))
  assert r["summary"]["compliance_rate"] == 1.0
  assert r["summary"]["answer_agreement"]["s"]["exact_match"] == 1.0
  assert "| format compliance | 100.0% |" in open(md).read()


def test_cli_without_prepared_data_says_to_prepare(tmp_path, capsys):
  from jax_sft import cli
  smoke = __file__.rsplit("/tests/", 1)[0] + "/configs/smoke.yaml"
  # Overrides come right after CONFIG: argparse takes positionals in one run.
  rc = cli.main(["eval", smoke, f"data.output_dir={tmp_path}/nodata",
                 "--checkpoint", str(tmp_path / "run")])
  assert rc == 2
  err = capsys.readouterr().err
  assert "no prepared 'eval' split" in err and "jax-sft prepare" in err and "nodata" in err


def test_cli_rejects_a_zero_budget(tmp_path, capsys):
  from jax_sft import cli
  smoke = __file__.rsplit("/tests/", 1)[0] + "/configs/smoke.yaml"
  assert cli.main(["eval", smoke, "--checkpoint", "x", "--max-new-tokens", "0"]) == 2
  assert "eval.max_new_tokens" in capsys.readouterr().err

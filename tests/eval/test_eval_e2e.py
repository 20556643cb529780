"""End to end: train the smoke config a few steps on CPU, then `jax-sft eval` its checkpoint."""

import json
import math
import os

import pytest

from jax_sft import cli
from jax_sft import config as config_lib
from jax_sft.train import loop

SMOKE = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "smoke.yaml")
BUDGET = 8


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("eval_e2e")
  overrides = [f"run_dir={root}/run", f"data.output_dir={root}/data", "train.max_steps=2",
               "train.batch_size=8", "train.eval_every=0", "train.eval_batches=64",
               "train.generations_at_end=0", "checkpoint.every_steps=2",
               "checkpoint.async_save=false"]
  cfg = config_lib.load(SMOKE, overrides)
  result = loop.train(cfg, progress=False)
  return root, overrides, result


def _eval(root, overrides, out, *extra):
  # Overrides right after CONFIG: argparse takes positionals in one run.
  argv = ["eval", SMOKE, *overrides, "eval.batch_size=4", "eval.loss_batches=64",
          "--checkpoint", str(root / "run"), "--max-new-tokens", str(BUDGET),
          "--num-prompts", "4", "--out", str(out), *extra]
  return cli.main(argv)


def test_eval_of_the_smoke_checkpoint(smoke_run):
  root, overrides, result = smoke_run
  out = root / "eval"
  assert _eval(root, overrides, out) == 0
  r = json.load(open(out / "report.json"))
  s = r["summary"]
  assert r["num_prompts"] == 4 and len(r["samples"]) == 4
  assert sum(s["kinds"].values()) == 4
  for sample in r["samples"]:
    assert sample["generated_tokens"] <= BUDGET
    if sample["hit_budget"]:
      assert sample["generated_tokens"] == BUDGET
    if sample["kind"] == "cut_off":
      assert sample["hit_budget"]
  # Held-out loss: both the trainer (at its last step) and eval cover the whole held-out split.
  assert result.eval_loss is not None
  assert s["heldout_loss"] == pytest.approx(result.eval_loss, rel=1e-4)
  assert s["heldout_perplexity"] == pytest.approx(math.exp(s["heldout_loss"]))
  md = open(out / "report.md").read()
  assert "## Sample generations" in md and f"at most {BUDGET} new tokens" in md


def test_against_an_earlier_report(smoke_run):
  root, overrides, _ = smoke_run
  first = root / "eval"
  if not (first / "report.json").exists():
    assert _eval(root, overrides, first) == 0
  out = root / "eval_again"
  assert _eval(root, overrides, out, "--against", str(first / "report.json")) == 0
  md = open(out / "report.md").read()
  # Greedy decoding of the same checkpoint: the same outputs, so every delta is zero.
  assert "| format compliance |" in md and "| delta |" in md
  line = next(l for l in md.splitlines() if l.startswith("| format compliance |"))
  assert line.endswith("| +0.0 pt |"), line
  a = json.load(open(first / "report.json"))["samples"]
  b = json.load(open(out / "report.json"))["samples"]
  assert [x["output"] for x in a] == [x["output"] for x in b]


def test_bad_checkpoint_path_is_one_clear_line(smoke_run, capsys):
  root, overrides, _ = smoke_run
  argv = ["eval", SMOKE, *overrides, "--checkpoint", str(root / "nope"), "--num-prompts", "1"]
  assert cli.main(argv) == 2
  err = capsys.readouterr().err
  assert "jax-sft eval: cannot load --checkpoint" in err and "nope" in err

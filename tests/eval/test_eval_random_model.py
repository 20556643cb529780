"""`evaluate` end to end on released-format weights: a random tiny Gemma saved as a Kaggle
Flax checkpoint, the smoke config's prepared eval split, and a plain greedy decoder
(full forward passes, no cache) standing in for the sampler, so everything but the
sampler is exercised even where it is not built."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from jax_sft import config as config_lib
from jax_sft.eval import evaluate

SMOKE = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "smoke.yaml")
BUDGET = 6


def _greedy_fn(model_cfg, params):
  """Greedy decoding by repeated full forward passes over a right-padded buffer."""
  from jax_sft.model.gemma import Transformer
  model = Transformer(model_cfg)
  forward = jax.jit(lambda t: model.apply({"params": params}, t))

  def generate(prompts):
    lengths = [len(p) for p in prompts]
    tokens = np.zeros((len(prompts), max(lengths) + BUDGET), np.int32)
    for i, p in enumerate(prompts):
      tokens[i, :len(p)] = p
    out = [[] for _ in prompts]
    for k in range(BUDGET):
      logits = np.asarray(forward(jnp.asarray(tokens)))
      for i, n in enumerate(lengths):
        nxt = int(logits[i, n + k - 1].argmax())
        tokens[i, n + k] = nxt
        out[i].append(nxt)
    return out

  return generate


def test_evaluate_released_weights_with_a_stand_in_decoder(tmp_path):
  from jax_sft.data.prepare import prepare
  from jax_sft.model import formats
  cfg = config_lib.load(SMOKE, [f"run_dir={tmp_path}/run", f"data.output_dir={tmp_path}/data",
                                "eval.num_prompts=3", f"eval.max_new_tokens={BUDGET}",
                                "eval.loss_batches=1", "train.batch_size=2"])
  prepare(cfg.data)
  params = formats.random_params(cfg.model, seed=0)
  ckpt = formats.save_kaggle_flax(params, str(tmp_path / "weights"))

  gen = _greedy_fn(cfg.model, jax.tree.map(jnp.asarray, params))
  result = evaluate.evaluate(cfg, ckpt, generate_fn=gen, log=lambda m: None)

  s = result["summary"]
  assert result["num_prompts"] == 3 and sum(s["kinds"].values()) == 3
  # Random weights never emit the format: no output passes, each gets a failure kind.
  assert s["compliance_rate"] == 0.0
  for sample in result["samples"]:
    assert sample["generated_tokens"] <= BUDGET
    assert sample["kind"] != "ok"
  # Random logits over a 1024 vocab: loss near or above log(1024).
  assert s["heldout_loss"] > 0.5 * np.log(1024) and s["heldout_tokens"] > 0
  saved = json.load(open(tmp_path / "run" / "eval" / "report.json"))
  assert saved["summary"]["kinds"] == s["kinds"]
  assert os.path.exists(tmp_path / "run" / "eval" / "report.md")

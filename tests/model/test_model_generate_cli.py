"""`jax-sft generate` end to end on a tiny random Kaggle-Flax checkpoint and the sample tokenizer."""

import jax
import numpy as np

from jax_sft import cli
from jax_sft.data.tokenizer import sample_tokenizer_path
from jax_sft import config as model_config
from jax_sft.model import formats, sampler
from jax_sft.model.gemma import Transformer


def test_generate_prints_the_greedy_completion(tmp_path, capsys):
  (tmp_path / "run.yaml").write_text("model:\n  preset: tiny_gemma2\n  vocab_size: 1024\n")
  cfg = model_config.preset("tiny_gemma2")
  cfg.vocab_size = 1024
  params = jax.jit(Transformer(cfg).init)(jax.random.key(0), np.ones((1, 2), np.int32))["params"]
  formats.save_kaggle_flax(params, str(tmp_path / "ckpt"))
  rc = cli.main(["generate", "--checkpoint", str(tmp_path / "ckpt"), "--config",
                 str(tmp_path / "run.yaml"), "--tokenizer", sample_tokenizer_path(),
                 "--prompt", "What is 2+2?", "--max-new-tokens", "6"])
  assert rc == 0
  from jax_sft.data.template import render_prompt
  from jax_sft.data.tokenizer import Tokenizer
  tok = Tokenizer(sample_tokenizer_path())
  ids = sampler.generate(params, cfg, [[tok.bos_id] + tok.encode(render_prompt("What is 2+2?"))],
                         max_new_tokens=6, stop_ids=(tok.end_of_turn_id, tok.eos_id))[0]
  assert capsys.readouterr().out == tok.decode(ids) + "\n"

"""A LoRA run that starts from released weights (a Kaggle Flax checkpoint), read in bfloat16."""

import jax
import numpy as np

from jax_sft.model import formats
from jax_sft.train import weights
from jax_sft.train import loop


def test_lora_run_starts_from_a_kaggle_checkpoint(make_cfg, tmp_path):
  probe = make_cfg("probe")
  base = formats.random_params(probe.model, seed=3)
  released = formats.save_kaggle_flax(base, str(tmp_path / "released"))
  cfg = make_cfg("run", f"model.init_from={released}", "lora.enabled=true", "lora.rank=4",
                 "lora.base_dtype=bfloat16", "train.max_steps=2")
  result = loop.train(cfg, progress=False)
  assert result.end_step == 2 and all(np.isfinite(result.losses))

  # The checkpoint refers to the released weights instead of copying them.
  run_cfg, params, lora = weights.load_for_inference(cfg.run_dir)
  assert lora is not None and run_cfg.model.init_from == released
  got = params["layer_0"]["attn"]["q_einsum"]["w"]
  assert got.dtype == jax.numpy.bfloat16
  want = np.asarray(base["layer_0"]["attn"]["q_einsum"]["w"]).astype(jax.numpy.bfloat16)
  np.testing.assert_array_equal(np.asarray(got), want)

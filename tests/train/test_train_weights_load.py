"""weights.load: a training run's model (LoRA merged) or released weights, one entry point."""

import types

import numpy as np

from jax_sft.config import LoraConfig, ModelConfig
from jax_sft.model import formats
from jax_sft.train import weights


def test_training_run_is_delegated_and_lora_merged(tmp_path, monkeypatch):
  cfg = ModelConfig.tiny_gemma1()
  params = formats.random_params(cfg)
  lora_cfg = LoraConfig(enabled=True, rank=2, alpha=4.0, targets=["query"])
  q = params["layer_0"]["attn"]["q_einsum"]["w"]
  n, d, h = q.shape
  a = np.ones((d, 2), np.float32)  # the model's adapter layout: A (D, r), B (r, N, H)
  b = np.full((2, n, h), 0.5, np.float32)
  lora = {"layer_0": {"attn": {"q_einsum": {"a": a, "b": b}}}}
  run_cfg = types.SimpleNamespace(model=cfg, lora=lora_cfg)
  seen = {}

  def fake_load(path, shardings=None):
    seen["path"] = path
    return run_cfg, params, lora

  monkeypatch.setattr(weights, "load_for_inference", fake_load)
  (tmp_path / "run.yaml").write_text("seed: 0\n")
  merged = weights.load(str(tmp_path), cfg)
  assert seen["path"] == str(tmp_path)
  np.testing.assert_allclose(np.asarray(merged["layer_0"]["attn"]["q_einsum"]["w"]),
                             q + lora_cfg.scale * np.einsum("Dr,rNH->NDH", a, b), rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(merged["layer_1"]["attn"]["q_einsum"]["w"]),
                                params["layer_1"]["attn"]["q_einsum"]["w"])

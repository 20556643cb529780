"""Logits match keras-hub's GemmaBackbone / Gemma3Backbone with the same random weights."""

import dataclasses

import jax
import numpy as np
import pytest

from jax_sft import config as model_config
from jax_sft.model.formats.keras import params_from_keras_backbone
from jax_sft.model.gemma import Transformer

keras = pytest.importorskip("keras")
keras_hub = pytest.importorskip("keras_hub")

SEQ = 21  # longer than the tiny configs' sliding window (8)


def _gemma12_backbone(cfg):
  return keras_hub.models.GemmaBackbone(
      vocabulary_size=cfg.vocab_size, num_layers=cfg.num_layers, num_query_heads=cfg.num_heads,
      num_key_value_heads=cfg.num_kv_heads, hidden_dim=cfg.embed_dim,
      intermediate_dim=2 * cfg.mlp_dim,  # GemmaBackbone's width is gate + up together
      head_dim=cfg.head_dim, query_head_dim_normalize=True,
      use_post_ffw_norm=cfg.post_norms, use_post_attention_norm=cfg.post_norms,
      attention_logit_soft_cap=cfg.attn_softcap, final_logit_soft_cap=cfg.final_softcap,
      use_sliding_window_attention=cfg.sliding_window is not None,
      sliding_window_size=cfg.sliding_window or 4096, dtype="float32")


def _gemma3_backbone(cfg):
  return keras_hub.models.Gemma3Backbone(
      vocabulary_size=cfg.vocab_size, image_size=16, num_layers=cfg.num_layers,
      num_query_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
      hidden_dim=cfg.embed_dim, intermediate_dim=cfg.mlp_dim, head_dim=cfg.head_dim,
      query_head_dim_normalize=True, use_query_key_norm=True, use_post_ffw_norm=True,
      use_post_attention_norm=True, use_sliding_window_attention=True,
      sliding_window_size=cfg.sliding_window, dtype="float32")


def _configs():
  g1 = model_config.preset("tiny_gemma1")
  # Small soft-caps so tanh is far from linear at these random weights' logit scale.
  g2 = dataclasses.replace(model_config.preset("tiny_gemma2"), attn_softcap=2.0, final_softcap=8.0)
  g3 = model_config.preset("tiny_gemma3")
  return {"gemma1": (g1, _gemma12_backbone), "gemma2": (g2, _gemma12_backbone),
          "gemma3": (g3, _gemma3_backbone)}


@pytest.fixture(scope="module", params=["gemma1", "gemma2", "gemma3"])
def pair(request):
  cfg, build = _configs()[request.param]
  keras.utils.set_random_seed(0)
  backbone = build(cfg)
  rng = np.random.default_rng(1)
  for w in backbone.weights:  # norms start at zero in keras; randomise them too
    scale = 0.3 if "embeddings" in w.path else 0.2
    w.assign(rng.normal(0, scale, w.shape).astype("float32"))
  return cfg, backbone


def _keras_logits(backbone, tokens, padding):
  hidden = backbone({"token_ids": tokens, "padding_mask": padding})
  return np.asarray(backbone.token_embedding(hidden, reverse=True))


def test_logits_match_keras(pair, assert_close):
  cfg, backbone = pair
  rng = np.random.default_rng(2)
  tokens = rng.integers(1, cfg.vocab_size, (2, SEQ)).astype("int32")
  padding = np.ones((2, SEQ), "int32")
  padding[1, 15:] = 0  # right padding in the second row
  want = _keras_logits(backbone, tokens, padding)

  params = params_from_keras_backbone(backbone, cfg)
  positions = np.broadcast_to(np.arange(SEQ, dtype=np.int32), (2, SEQ))
  got = np.asarray(jax.jit(Transformer(cfg).apply)({"params": params}, tokens, positions, padding))
  valid = padding.astype(bool)
  assert np.abs(want).max() > 1.0  # the comparison is not between near-zero tensors
  assert_close(got[valid], want[valid], rel=1e-4)  # two float32 implementations

"""Our Gemma 3 on the real dequantized 270M weights against keras-hub's Gemma3Backbone
(an implementation nobody here wrote) at every position of a prompt longer than the
512-token sliding window; and each convention, changed on purpose, breaks the equality."""

import dataclasses

import jax
import numpy as np
import pytest

from jax_sft.config import GLOBAL, LOCAL
from jax_sft.model.formats.keras import assign_to_keras_backbone
from jax_sft.model.gemma import Transformer

pytestmark = pytest.mark.slow

T = 544  # > the 512-token window: the last 32 positions see the local layers' cut-off
# Tolerance, relative to max |logit| (31.6 here): both sides are float32 through 18 layers
# with different summation orders (keras' einsums and softmax vs ours). Measured: max |diff|
# 1.9e-3 (5.9e-5 relative; mean 1.4e-5; 1.5e-4 beyond position 512), argmax equal at every
# position. 3e-4 leaves 5x for another CPU's rounding; each deliberate change below moves the
# logits by 0.13 to 1.8 relative (4.2 to 57), so they must pass 100x the tolerance.
REL = 3e-4


@pytest.fixture(scope="module")
def tokens(real_tokenizer):
  text = ("The history of the city begins with a small settlement on the river. " * 40)
  ids = [real_tokenizer.bos_id] + real_tokenizer.encode(text)
  assert len(ids) >= T
  return np.asarray([ids[:T]], np.int32)


@pytest.fixture(scope="module")
def keras_logits(real_cfg, real_params, tokens, shared_dir):
  """keras-hub's logits for `tokens`, computed once per run (cached in the shared folder)."""
  folder, lock = shared_dir
  cache = folder / "keras_logits.npy"
  with lock:
    if not cache.exists():
      keras_hub = pytest.importorskip("keras_hub")
      cfg = real_cfg
      backbone = keras_hub.models.Gemma3Backbone(
          vocabulary_size=cfg.vocab_size, image_size=16, num_layers=cfg.num_layers,
          num_query_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
          hidden_dim=cfg.embed_dim, intermediate_dim=cfg.mlp_dim, head_dim=cfg.head_dim,
          query_head_dim_normalize=True, use_query_key_norm=True, use_post_ffw_norm=True,
          use_post_attention_norm=True, use_sliding_window_attention=True,
          sliding_window_size=cfg.sliding_window, dtype="float32")
      assign_to_keras_backbone(backbone, real_params, cfg)
      hidden = backbone({"token_ids": tokens, "padding_mask": np.ones_like(tokens)})
      logits = np.asarray(backbone.token_embedding(hidden, reverse=True), np.float32)
      del backbone, hidden
      np.save(folder / "keras_logits.tmp.npy", logits)
      (folder / "keras_logits.tmp.npy").rename(cache)
  return np.load(cache, mmap_mode="r")


def _ours(cfg, params, tokens):
  return np.asarray(jax.jit(Transformer(cfg).apply)({"params": params}, tokens))


def test_preset_is_what_the_gguf_says(real_cfg, preset_cfg):
  assert real_cfg == preset_cfg
  assert real_cfg.scale == 256 ** -0.5
  assert [i for i, t in enumerate(real_cfg.layer_types()) if t == GLOBAL] == [5, 11, 17]


def test_logits_equal_keras_hub_beyond_the_window(real_cfg, real_params, tokens, keras_logits,
                                                  assert_close):
  got = _ours(real_cfg, real_params, tokens)
  assert np.abs(keras_logits).max() > 10.0
  assert_close(got, keras_logits, REL, "all positions")
  assert_close(got[:, 512:], keras_logits[:, 512:], REL, "beyond the window")


def _offset_norms(params):
  """The norms as llama.cpp stores them (1 + w): what forgetting to subtract the 1 gives."""
  return jax.tree_util.tree_map_with_path(
      lambda path, x: x + 1.0 if "scale" in jax.tree_util.keystr(path) else x, params)


MUTATIONS = {
    "norm offset not undone": (lambda c: c, _offset_norms),
    "attention scale embed/heads": (lambda c: dataclasses.replace(c, query_scale=160 ** -0.5), None),
    "global layers at 0, 6, 12": (lambda c: dataclasses.replace(
        c, attention_types=[GLOBAL if i % 6 == 0 else LOCAL for i in range(18)]), None),
    "window 1024 instead of 512": (lambda c: dataclasses.replace(c, sliding_window=1024), None),
    "RoPE bases swapped": (lambda c: dataclasses.replace(
        c, rope_base_local=1_000_000.0, rope_base_global=10_000.0), None),
}


@pytest.mark.parametrize("name", MUTATIONS)
def test_each_convention_breaks_the_equality(name, real_cfg, real_params, tokens, keras_logits):
  change_cfg, change_params = MUTATIONS[name]
  params = change_params(real_params) if change_params else real_params
  got = _ours(change_cfg(real_cfg), params, tokens)
  diff = np.abs(got - keras_logits).max()
  assert diff > 100 * REL * np.abs(keras_logits).max(), f"{name}: max |diff| only {diff:.3g}"

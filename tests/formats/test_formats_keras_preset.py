"""Keras presets written by keras-hub itself: config.json -> ModelConfig, h5 weights, logits parity."""


import numpy as np
import pytest

import keras
import keras_hub

from jax_sft.model import formats
from jax_sft.model import gemma
from jax_sft.model.formats import keras_preset, shapes

# keras' variables warn about numpy 2's copy keyword on every read; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SETTINGS = {
    # Gemma 1: MQA, all global.
    "gemma1": (keras_hub.models.GemmaBackbone, dict(
        vocabulary_size=96, num_layers=2, num_query_heads=4, num_key_value_heads=1,
        hidden_dim=32, intermediate_dim=64, head_dim=8)),
    # Gemma 2: GQA, alternating sliding window (smaller than the sequence), soft-caps, post norms.
    "gemma2": (keras_hub.models.GemmaBackbone, dict(
        vocabulary_size=96, num_layers=4, num_query_heads=4, num_key_value_heads=2,
        hidden_dim=32, intermediate_dim=64, head_dim=8, use_post_ffw_norm=True,
        use_post_attention_norm=True, final_logit_soft_cap=30.0, attention_logit_soft_cap=50.0,
        use_sliding_window_attention=True, sliding_window_size=4)),
    # Gemma 3: QK-norm, 5 local : 1 global, RoPE 10K / 1M.
    "gemma3": (keras_hub.models.Gemma3Backbone, dict(
        vocabulary_size=96, image_size=None, vision_encoder=None, num_layers=6,
        num_query_heads=4, num_key_value_heads=1, hidden_dim=32, intermediate_dim=48,
        head_dim=8, use_post_ffw_norm=True, use_post_attention_norm=True,
        use_sliding_window_attention=True, sliding_window_size=4)),
}


def _backbone(kind, dtype="float32", seed=0):
  cls, kwargs = SETTINGS[kind]
  backbone = cls(dtype=dtype, **kwargs)
  rng = np.random.default_rng(seed)
  # Random norms too (keras initialises them at zero, which would hide a scale mix-up).
  backbone.set_weights([(rng.standard_normal(w.shape) * 0.3).astype(np.float32)
                        for w in backbone.get_weights()])
  return backbone


@pytest.mark.parametrize("kind", ["gemma1", "gemma2", "gemma3"])
def test_preset_weights_and_logits_match_keras(tmp_path, kind, assert_close):
  backbone = _backbone(kind)
  backbone.save_to_preset(str(tmp_path))
  assert formats.detect_format(str(tmp_path)) == "keras_preset"
  cfg = formats.config_from_checkpoint(str(tmp_path))
  assert cfg.mlp_dim == (48 if kind == "gemma3" else 32)  # GemmaBackbone halves intermediate_dim
  params = formats.load_params(str(tmp_path), cfg)

  # Oracle 1: the live keras model's weights, read through keras' own layer objects.
  from jax_sft.model.formats.keras import params_from_keras_backbone
  expected = shapes.flatten(params_from_keras_backbone(backbone, cfg))
  got = shapes.flatten(params)
  assert sorted(got) == sorted(expected)
  for path in got:
    np.testing.assert_array_equal(np.asarray(got[path]), expected[path], err_msg=path)

  # Oracle 2: keras-hub's forward pass, on more tokens than the sliding window.
  tokens = np.random.default_rng(1).integers(0, 96, (2, 11)).astype(np.int32)
  hidden = backbone({"token_ids": tokens, "padding_mask": np.ones_like(tokens)})
  # keras-hub's ReversibleEmbedding applies the final soft-cap itself in reverse mode.
  logits_ref = np.asarray(backbone.token_embedding(hidden, reverse=True))
  assert np.abs(logits_ref).max() > 1.0
  logits = gemma.Transformer(cfg).apply({"params": params}, tokens)
  assert_close(logits, logits_ref, rel=1e-4)  # two float32 implementations


def test_bfloat16_preset_cast_to_float32(tmp_path):
  backbone = _backbone("gemma1", dtype="bfloat16")
  backbone.save_to_preset(str(tmp_path))
  cfg = formats.config_from_checkpoint(str(tmp_path))
  params = formats.load_params(str(tmp_path), cfg)
  emb = params["embedder"]["input_embedding"]
  assert emb.dtype == np.float32
  keras_emb = keras.ops.convert_to_numpy(backbone.token_embedding.embeddings).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(emb), keras_emb)
  assert keras_preset.tokenizer_path(str(tmp_path)) is None


def test_preset_shape_mismatch_names_parameter(tmp_path):
  _backbone("gemma1").save_to_preset(str(tmp_path))
  cfg = formats.config_from_checkpoint(str(tmp_path))
  cfg.num_kv_heads = 2
  with pytest.raises(formats.CheckpointMismatch,
                     match=r"key_dense \(our layer_0/attn/kv_einsum/w\).*\(1, 32, 8\).*\(2, 32, 8\)"):
    formats.load_params(str(tmp_path), cfg)

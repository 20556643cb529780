"""Weights of a live keras-hub Gemma backbone as this project's param tree (and back).

keras-hub names: `decoder_block_{i}/attention/{query,key,value,attention_output}`, the MLP as
`ffw_gating` (gate, D x F), `ffw_gating_2` (up, D x F) and `ffw_linear` (F x D),
`token_embedding` and `final_normalization`. Used for the parity tests against keras-hub.
"""

from __future__ import annotations

import numpy as np

from jax_sft.model.config import ModelConfig


def _np(variable) -> np.ndarray:
  return np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable)


def params_from_keras_backbone(backbone, cfg: ModelConfig) -> dict:
  """The param tree (Kaggle Flax layout) holding a keras-hub GemmaBackbone/Gemma3Backbone's weights."""
  params = {
      "embedder": {"input_embedding": _np(backbone.get_layer("token_embedding").embeddings)},
      "final_norm": {"scale": _np(backbone.get_layer("final_normalization").scale)},
  }
  for i in range(cfg.num_layers):
    block = backbone.get_layer(f"decoder_block_{i}")
    attn = block.attention
    gate, up = _np(block.gating_ffw.kernel), _np(block.gating_ffw_2.kernel)  # (D, F) each
    gating = np.stack([gate, up]) if cfg.gating_layout == "gemma2" else np.stack([gate.T, up.T])
    layer = {
        "attn": {
            "q_einsum": {"w": _np(attn.query_dense.kernel)},
            "kv_einsum": {"w": np.stack([_np(attn.key_dense.kernel), _np(attn.value_dense.kernel)])},
            "attn_vec_einsum": {"w": _np(attn.output_dense.kernel)},
        },
        "mlp": {"gating_einsum": {"w": gating}, "linear": {"w": _np(block.ffw_linear.kernel)}},
        "pre_attention_norm": {"scale": _np(block.pre_attention_norm.scale)},
        "pre_ffw_norm": {"scale": _np(block.pre_ffw_norm.scale)},
    }
    if cfg.qk_norm:
      layer["attn"]["_query_norm"] = {"scale": _np(attn.query_norm.scale)}
      layer["attn"]["_key_norm"] = {"scale": _np(attn.key_norm.scale)}
    if cfg.post_norms:
      layer["post_attention_norm"] = {"scale": _np(block.post_attention_norm.scale)}
      layer["post_ffw_norm"] = {"scale": _np(block.post_ffw_norm.scale)}
    params[f"layer_{i}"] = layer
  return params

"""Keras (keras-hub / keras-nlp) Gemma preset directories, read from `model.weights.h5` with h5py.

A preset holds `config.json` (GemmaBackbone or Gemma3Backbone arguments), `model.weights.h5`
and `assets/tokenizer/vocabulary.spm`. Reading the h5 file directly, one dataset at a time,
avoids building the Keras model (a second full copy of the weights) just to read them.

Keras 3 names h5 groups after each layer's class in creation order:
`layers/reversible_embedding/vars/0` (V, D), `layers/rms_normalization/vars/0` (final norm),
`layers/gemma_decoder_block[_i]/...` (Gemma3: `gemma3_decoder_block[_i]`), the first block
without a suffix. Traps: GemmaBackbone's `intermediate_dim` is twice the per-gate MLP width
(Gemma3Backbone's is the width itself); `ffw_gating` is the GELU gate and `ffw_gating_2` the
up projection; bfloat16 datasets carry attrs dtype='bfloat16'.
"""

from __future__ import annotations

import json
import os
from typing import Any

import ml_dtypes
import numpy as np

from jax_sft.model.config import GLOBAL, LOCAL, ModelConfig
from jax_sft.model.formats import shapes

WEIGHTS = "model.weights.h5"
TOKENIZER = os.path.join("assets", "tokenizer", "vocabulary.spm")
_BACKBONES = ("GemmaBackbone", "Gemma3Backbone")


def is_keras_preset(path: str) -> bool:
  """True if `path` is a directory with config.json and model.weights.h5."""
  return (os.path.isdir(path) and os.path.exists(os.path.join(path, "config.json"))
          and os.path.exists(os.path.join(path, WEIGHTS)))


def read_config(path: str) -> dict:
  """The backbone's `config.json` as a dict, checked to be a Gemma backbone."""
  file = os.path.join(path, "config.json")
  with open(file) as f:
    data = json.load(f)
  if data.get("class_name") not in _BACKBONES:
    raise ValueError(f"{file}: class_name {data.get('class_name')!r} is not one of {_BACKBONES}")
  return data


def config_from_keras(data: dict) -> ModelConfig:
  """ModelConfig from a keras-hub GemmaBackbone / Gemma3Backbone config.json dict."""
  kind, c = data["class_name"], data["config"]
  if c.get("vision_encoder"):
    raise ValueError("config.json: Gemma3Backbone with a vision encoder is not supported")
  eps = float(c.get("layer_norm_epsilon", 1e-6))
  if abs(eps - 1e-6) > 1e-12:
    raise ValueError(f"config.json: layer_norm_epsilon={eps}; the model implements 1e-6")
  gemma3 = kind == "Gemma3Backbone"
  n, d, h = int(c["num_query_heads"]), int(c["hidden_dim"]), int(c["head_dim"])
  layers = int(c["num_layers"])
  sliding = bool(c.get("use_sliding_window_attention"))
  if gemma3:
    # keras-hub Gemma3Backbone: layer i is local when i % 6 < 5; RoPE 10K local, 1M global.
    types = [LOCAL if sliding and i % 6 < 5 else GLOBAL for i in range(layers)]
  else:
    types = [LOCAL if sliding and i % 2 == 0 else GLOBAL for i in range(layers)]
  cfg = ModelConfig(
      num_layers=layers, embed_dim=d, num_heads=n,
      num_kv_heads=int(c["num_key_value_heads"]), head_dim=h,
      mlp_dim=int(c["intermediate_dim"]) if gemma3 else int(c["intermediate_dim"]) // 2,
      vocab_size=int(c["vocabulary_size"]),
      attention_types=types if LOCAL in types else [],
      sliding_window=int(c["sliding_window_size"]) if LOCAL in types else None,
      attn_softcap=c.get("attention_logit_soft_cap"),
      final_softcap=c.get("final_logit_soft_cap"),
      query_scale=None if c.get("query_head_dim_normalize", True) else (d // n) ** -0.5,
      post_norms=bool(c.get("use_post_attention_norm") or c.get("use_post_ffw_norm")),
      qk_norm=bool(c.get("use_query_key_norm", gemma3)) if gemma3 else False,
      gating_layout="gemma3" if gemma3 else "gemma2")
  if c.get("use_post_attention_norm") != c.get("use_post_ffw_norm"):
    raise ValueError("config.json: use_post_attention_norm and use_post_ffw_norm differ;"
                     " the model has both post norms or neither")
  if gemma3:
    cfg.rope_base_global = 1_000_000.0
    if float(c.get("local_rope_scaling_factor", 1.0)) != 1.0:
      raise ValueError("config.json: local_rope_scaling_factor != 1 is not supported")
    cfg.rope_scale_global = float(c.get("global_rope_scaling_factor", 1.0))
  return cfg


def _read(dataset) -> np.ndarray:
  """One h5 dataset as numpy, honouring Keras' bfloat16 marker."""
  if dataset.attrs.get("dtype") == "bfloat16":
    return np.array(dataset, dtype=ml_dtypes.bfloat16)
  return dataset[()]


# How h5 arrays combine into one of ours: copied, stacked (kv, gating), or each transposed then
# stacked (Gemma 3's (2, F, D) gating from Keras' (D, F) kernels).
_CONVERT = {
    "same": (lambda x: x, lambda s: s),
    "stack": (lambda a, b: np.stack([a, b]), lambda a, b: (2,) + a if a == b else (-1,) + a),
    "stack_t": (lambda a, b: np.stack([a.T, b.T]),
                lambda a, b: (2,) + a[::-1] if a == b else (-1,) + a[::-1]),
}


def _sources(cfg: ModelConfig, gemma3: bool) -> dict[str, tuple[list[str], str]]:
  """Our path -> (h5 dataset paths, how they combine: a key of _CONVERT)."""
  block = "gemma3_decoder_block" if gemma3 else "gemma_decoder_block"
  v = lambda g: f"layers/{g}/vars/0"
  out = {"embedder/input_embedding": ([v("reversible_embedding")], "same"),
         "final_norm/scale": ([v("rms_normalization")], "same")}
  for i in range(cfg.num_layers):
    g = block if i == 0 else f"{block}_{i}"
    p = f"layer_{i}/"
    out[p + "attn/q_einsum/w"] = ([v(f"{g}/attention/query_dense")], "same")
    out[p + "attn/kv_einsum/w"] = (
        [v(f"{g}/attention/key_dense"), v(f"{g}/attention/value_dense")], "stack")
    out[p + "attn/attn_vec_einsum/w"] = ([v(f"{g}/attention/output_dense")], "same")
    if cfg.qk_norm:
      out[p + "attn/_query_norm/scale"] = ([v(f"{g}/attention/query_norm")], "same")
      out[p + "attn/_key_norm/scale"] = ([v(f"{g}/attention/key_norm")], "same")
    out[p + "mlp/gating_einsum/w"] = ([v(f"{g}/gating_ffw"), v(f"{g}/gating_ffw_2")],
                                      "stack_t" if cfg.gating_layout == "gemma3" else "stack")
    out[p + "mlp/linear/w"] = ([v(f"{g}/ffw_linear")], "same")
    norms = ["pre_attention_norm", "pre_ffw_norm"]
    norms += ["post_attention_norm", "post_ffw_norm"] if cfg.post_norms else []
    for norm in norms:
      out[p + norm + "/scale"] = ([v(f"{g}/{norm}")], "same")
  return out


def load_keras_preset(path: str, cfg: ModelConfig, shardings: Any = None,
                      dtype: Any = None) -> shapes.Params:
  """Reads a Keras Gemma preset directory's `model.weights.h5` into our param tree.

  One dataset at a time goes through host memory, is cast to `dtype` (default
  `cfg.param_dtype`) and placed slice by slice on its sharding.
  """
  import h5py  # only this format needs it

  gemma3 = read_config(path)["class_name"] == "Gemma3Backbone"
  file = os.path.join(path, WEIGHTS)
  sources = _sources(cfg, gemma3)
  sharding_of = shapes.sharding_lookup(shardings)
  dtype = shapes.resolve_dtype(cfg, dtype)
  with h5py.File(file, "r") as h5:
    present = set()
    h5.visititems(lambda name, obj: present.add(name) if isinstance(obj, h5py.Dataset) else None)
    used = {n for names, _ in sources.values() for n in names}
    found = {f"(h5) {n}": h5[n].shape for n in sorted(present - used)}
    for ours, (names, how) in sources.items():
      if all(n in present for n in names):
        found[ours] = _CONVERT[how][1](*[tuple(h5[n].shape) for n in names])
    shapes.check_shapes(found, cfg, source=file)
    flat = {}
    for ours, (names, how) in sources.items():
      host = _CONVERT[how][0](*[_read(h5[n]) for n in names])
      flat[ours] = shapes.place(host, sharding_of(ours), dtype)
      del host
  return shapes.unflatten(flat)


def tokenizer_path(path: str) -> str | None:
  """The preset's sentencepiece model, if it ships one."""
  spm = os.path.join(path, TOKENIZER)
  return spm if os.path.exists(spm) else None

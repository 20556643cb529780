"""Keras (keras-hub / keras-nlp) Gemma preset directories, read from `model.weights.h5` with h5py.

A preset holds `config.json` (GemmaBackbone or Gemma3Backbone arguments), `model.weights.h5`
and `assets/tokenizer/vocabulary.spm`. Reading the h5 file directly, one dataset at a time,
avoids building the Keras model (a second full copy of the weights) just to read them.

Names and layouts are the weight table's `keras` column (jax_sft.model.params); Keras 3
names h5 groups after each layer's class in creation order (see `_H5Tensors`). Traps:
GemmaBackbone's `intermediate_dim` is twice the per-gate MLP width (Gemma3Backbone's is
the width itself); bfloat16 datasets carry attrs dtype='bfloat16'.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import h5py
import ml_dtypes
import numpy as np

from jax_sft.config import GLOBAL, LOCAL, GatingLayout, ModelConfig
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
      gating_layout=GatingLayout.gemma3 if gemma3 else GatingLayout.gemma2)
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


_TOP = {"token_embedding": "reversible_embedding", "final_normalization": "rms_normalization"}
_BLOCK = re.compile(r"^(gemma3?_decoder_block)(?:_(\d+))?/")


class _H5Tensors:
  """The weight table's keras names (`decoder_block_3/attention/query_dense`) over the h5
  groups Keras 3 writes (`layers/gemma_decoder_block_3/attention/query_dense/vars/0`,
  the first block without a suffix; Gemma 3: `gemma3_decoder_block`)."""

  def __init__(self, h5, gemma3: bool):
    self.h5 = h5
    self.block = "gemma3_decoder_block" if gemma3 else "gemma_decoder_block"
    found = []
    h5.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
    self.paths = {self._ours(p): p for p in found}

  def _ours(self, h5_path: str) -> str:
    inner = h5_path[len("layers/"):-len("/vars/0")] if (
        h5_path.startswith("layers/") and h5_path.endswith("/vars/0")) else None
    if inner is None:
      return f"(h5) {h5_path}"
    m = _BLOCK.match(inner + "/")
    if m:
      return f"decoder_block_{int(m.group(2) or 0)}/{inner[m.end():]}".rstrip("/")
    return {v: k for k, v in _TOP.items()}.get(inner, inner)

  def names(self) -> set[str]:
    return set(self.paths)

  def shape(self, name: str) -> tuple[int, ...]:
    return tuple(self.h5[self.paths[name]].shape)

  def get(self, name: str) -> np.ndarray:
    return _read(self.h5[self.paths[name]])


def load_keras_preset(path: str, cfg: ModelConfig, shardings: Any = None,
                      dtype: Any = None) -> shapes.Params:
  """Reads a Keras Gemma preset directory's `model.weights.h5` into our param tree.

  One dataset at a time goes through host memory, is cast to `dtype` (default
  `cfg.param_dtype`) and placed slice by slice on its sharding.
  """
  gemma3 = read_config(path)["class_name"] == "Gemma3Backbone"
  file = os.path.join(path, WEIGHTS)
  with h5py.File(file, "r") as h5:
    return shapes.read_external(_H5Tensors(h5, gemma3), cfg, "keras", file, shardings, dtype)


def tokenizer_path(path: str) -> str | None:
  """The preset's sentencepiece model, if it ships one."""
  spm = os.path.join(path, TOKENIZER)
  return spm if os.path.exists(spm) else None

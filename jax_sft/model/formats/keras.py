"""Weights of a live keras-hub Gemma backbone as this project's param tree.

The names are the weight table's `keras` column (the same as a Keras preset's h5 groups):
`decoder_block_3/attention/query_dense` is `backbone.get_layer("decoder_block_3")
.attention.query_dense`, whose one variable is the kernel or norm scale. Used for the
parity tests against keras-hub, whose implementation nobody here wrote; the reverse,
`assign_to_keras_backbone`, puts weights we read (a GGUF) into keras-hub for the same test.
"""

from __future__ import annotations

import numpy as np

from jax_sft.config import ModelConfig
from jax_sft.model import params as params_lib
from jax_sft.model.formats import shapes


class _BackboneTensors:
  """The table's keras names resolved on a live backbone (one variable per named layer)."""

  def __init__(self, backbone, cfg: ModelConfig):
    self.backbone = backbone
    self._names = {n for w in params_lib.weights(cfg) for n in w.column("keras").names}

  def _variable(self, name: str):
    first, *attrs = name.split("/")
    layer = self.backbone.get_layer(first)
    for a in attrs:
      layer = getattr(layer, a)
    return layer.weights[0]

  def names(self) -> set[str]:
    return self._names

  def shape(self, name: str) -> tuple[int, ...]:
    return tuple(self._variable(name).shape)

  def get(self, name: str) -> np.ndarray:
    v = self._variable(name)
    return np.asarray(v.numpy() if hasattr(v, "numpy") else v)


def params_from_keras_backbone(backbone, cfg: ModelConfig) -> dict:
  """The param tree (Kaggle Flax layout, numpy) holding a GemmaBackbone/Gemma3Backbone's weights."""
  reader = _BackboneTensors(backbone, cfg)
  shapes.check_external(reader, cfg, "keras", source=type(backbone).__name__)
  return shapes.unflatten({
      w.path: params_lib.from_external(w, "keras", [reader.get(n) for n in w.column("keras").names], cfg)
      for w in params_lib.weights(cfg)})


def assign_to_keras_backbone(backbone, params, cfg: ModelConfig) -> None:
  """Writes our param tree into a live GemmaBackbone/Gemma3Backbone (the table's keras column
  read forwards), so keras-hub computes with exactly our weights; one weight at a time."""
  reader = _BackboneTensors(backbone, cfg)
  shapes.check_external(reader, cfg, "keras", source=type(backbone).__name__)
  flat = shapes.flatten(params)
  for w in params_lib.weights(cfg):
    for name, array in zip(w.column("keras").names,
                           params_lib.to_external(w, "keras", np.asarray(flat[w.path]), cfg)):
      reader._variable(name).assign(array)

"""Released checkpoint formats: detect one and load it into our param tree; write Kaggle Flax and HF.

Formats: Kaggle Flax Orbax directories (kaggle_flax), Hugging Face safetensors
(safetensors_io), Keras presets (keras_preset), llama.cpp GGUF files (gguf). All load into
the Kaggle Flax layout without `transformer/`, through the weight table (jax_sft.model.params). A training run's own
checkpoints are the trainer's business (jax_sft.train.weights.load).
"""

from __future__ import annotations

import glob
import json
import os
from typing import Any, Optional

from jax_sft.config import ModelConfig
from jax_sft.model.formats import gguf, kaggle_flax, keras_preset, safetensors_io
from jax_sft.model.formats.gguf import GGUFError, load_gguf, save_gguf
from jax_sft.model.formats.kaggle_flax import load_kaggle_flax, save_kaggle_flax
from jax_sft.model.formats.keras_preset import load_keras_preset
from jax_sft.model.formats.safetensors_io import load_safetensors, save_safetensors
from jax_sft.model.formats.shapes import (CheckpointMismatch, check_shapes, expected_shapes,
                                          random_params)

__all__ = [
    "CheckpointMismatch", "GGUFError", "check_shapes", "config_from_checkpoint", "detect_format",
    "expected_shapes", "load_gguf", "load_kaggle_flax", "load_keras_preset", "load_params",
    "load_safetensors", "random_params", "save_gguf", "save_kaggle_flax", "save_safetensors",
]

KAGGLE, KERAS, HF, GGUF = "kaggle_flax", "keras_preset", "safetensors", "gguf"


def detect_format(path: str) -> str:
  """One of 'keras_preset', 'safetensors', 'gguf', 'kaggle_flax'; raises naming the path if
  none fits."""
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: no such checkpoint")
  if os.path.isfile(path):
    if path.endswith(".safetensors"):
      return HF
    if path.endswith(".gguf"):
      return GGUF
    raise ValueError(f"{path}: a file that is not .safetensors or .gguf; expected a checkpoint"
                     " directory")
  if keras_preset.is_keras_preset(path):
    return KERAS
  if glob.glob(os.path.join(path, "*.safetensors")):
    return HF
  try:
    kaggle_flax.resolve_dir(path)
    return KAGGLE
  except FileNotFoundError:
    pass
  raise ValueError(
      f"{path}: not a recognised checkpoint (Orbax dir with _METADATA/manifest.ocdbt/checkpoint;"
      " Keras preset with config.json + model.weights.h5; *.safetensors; or a training run)")


_LOADERS = {KAGGLE: load_kaggle_flax, KERAS: load_keras_preset, HF: load_safetensors,
            GGUF: load_gguf}


def load_params(path: str, cfg: ModelConfig, shardings: Any = None, dtype: Any = None):
  """Loads the released checkpoint at `path` (any supported format) into our param tree.

  `shardings`: None (first device), one Sharding, or a tree of Shardings like the params;
  each array is placed straight onto it. `dtype` defaults to `cfg.param_dtype`.
  """
  return _LOADERS[detect_format(path)](path, cfg, shardings, dtype)


def config_from_checkpoint(path: str) -> Optional[ModelConfig]:
  """The ModelConfig a released checkpoint carries (HF/Keras config.json, GGUF metadata);
  None for Orbax dirs."""
  path = os.fspath(path)
  kind = detect_format(path)
  if kind == GGUF:
    return gguf.config_from_gguf(path)
  if kind == KERAS:
    return keras_preset.config_from_keras(keras_preset.read_config(path))
  if kind == HF:
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    file = os.path.join(folder, "config.json")
    if not os.path.exists(file):
      return None
    with open(file) as f:
      return safetensors_io.config_from_hf(json.load(f))
  return None

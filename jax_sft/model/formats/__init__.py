"""Checkpoint formats: detect and load any of them into our param tree; write Kaggle Flax and HF.

Formats: Kaggle Flax Orbax directories (kaggle_flax), Hugging Face safetensors
(safetensors_io), Keras presets (keras_preset), and a training run's own checkpoints
(jax_sft.train.checkpoint). All load into the Kaggle Flax layout without `transformer/`.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Any, Optional

from jax_sft.model.config import ModelConfig
from jax_sft.model.formats import keras_preset, kaggle_flax, safetensors_io
from jax_sft.model.formats.kaggle_flax import load_kaggle_flax, save_kaggle_flax
from jax_sft.model.formats.keras_preset import load_keras_preset
from jax_sft.model.formats.safetensors_io import load_safetensors, save_safetensors
from jax_sft.model.formats.shapes import (CheckpointMismatch, check_shapes, expected_shapes,
                                          random_params)
from jax_sft.model.formats.shapes import flatten as shapes_flatten

__all__ = [
    "CheckpointMismatch", "check_shapes", "config_from_checkpoint", "detect_format",
    "expected_shapes", "load_kaggle_flax", "load_keras_preset", "load_params",
    "load_safetensors", "random_params", "save_kaggle_flax", "save_safetensors",
]

KAGGLE, KERAS, HF, RUN = "kaggle_flax", "keras_preset", "safetensors", "training_run"


def _is_training_run(path: str) -> bool:
  return (os.path.exists(os.path.join(path, "run.yaml"))
          or "checkpoints" in os.path.normpath(path).split(os.sep)
          or os.path.isdir(os.path.join(path, "checkpoints")))


def _has_run_loader() -> bool:
  try:
    from jax_sft.train import checkpoint
  except ImportError:  # the training package may be absent in a slim install
    return False
  return hasattr(checkpoint, "load_for_inference")


def detect_format(path: str) -> str:
  """One of 'training_run', 'keras_preset', 'safetensors', 'kaggle_flax'; raises if none fits."""
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: no such checkpoint")
  if os.path.isfile(path):
    if path.endswith(".safetensors"):
      return HF
    raise ValueError(f"{path}: a file that is not .safetensors; expected a checkpoint directory")
  if _is_training_run(path) and _has_run_loader():
    return RUN
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


def load_params(path: str, cfg: ModelConfig, shardings: Any = None, dtype: Any = None):
  """Loads the checkpoint at `path` (any supported format) into our param tree.

  `shardings`: None (first device), one Sharding, or a tree of Shardings like the params;
  each array is placed straight onto it. `dtype` defaults to `cfg.param_dtype`.
  """
  kind = detect_format(path)
  if kind == RUN:
    return _load_training_run(path, cfg, shardings)
  if kind == KERAS:
    return load_keras_preset(path, cfg, shardings, dtype)
  if kind == HF:
    return load_safetensors(path, cfg, shardings, dtype)
  return load_kaggle_flax(path, cfg, shardings, dtype)


def _load_training_run(path: str, cfg: ModelConfig, shardings: Any):
  """A training run's params (LoRA merged), via jax_sft.train.checkpoint; checked against `cfg`."""
  from jax_sft.model import lora as lora_lib
  from jax_sft.train import checkpoint as run_checkpoint
  run_cfg, params, lora = run_checkpoint.load_for_inference(path, shardings)
  if lora is not None:
    params = lora_lib.merge(params, lora, run_cfg.model, run_cfg.lora)
  found = {p: tuple(x.shape) for p, x in shapes_flatten(params).items()}
  check_shapes(found, cfg, source=path)
  return params


def config_from_checkpoint(path: str) -> Optional[ModelConfig]:
  """The ModelConfig a checkpoint carries (HF/Keras config.json, a run's config); None for Orbax dirs."""
  path = os.fspath(path)
  kind = detect_format(path)
  if kind == RUN:
    from jax_sft.train import checkpoint as run_checkpoint
    if hasattr(run_checkpoint, "config_from_checkpoint") and hasattr(run_checkpoint, "open_read_only"):
      ckpt, step = run_checkpoint.open_read_only(path)
      return run_checkpoint.config_from_checkpoint(ckpt, step).model
    return None
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

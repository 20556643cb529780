"""A run's final model, LoRA merged, in a format others load (Kaggle Flax Orbax or HF safetensors)."""

from __future__ import annotations

import jax

from jax_sft.model import formats
from jax_sft.model import lora as lora_lib
from jax_sft.train import weights

FORMATS = ("flax", "safetensors")


def export(path: str, fmt: str, out: str, dtype=None) -> str:
  """Writes the checkpoint at `path` (LoRA merged) to `out` as `fmt`; returns `out`."""
  cfg, params, adapters = weights.load_for_inference(path)
  if adapters is not None:
    params = lora_lib.merge(params, adapters, cfg.model, cfg.lora)
  params = jax.device_get(params)
  if fmt == "flax":
    formats.save_kaggle_flax(params, out, dtype=dtype)
  elif fmt == "safetensors":
    formats.save_safetensors(params, cfg.model, out, dtype=dtype)
  else:
    raise ValueError(f"export format {fmt!r} is not one of {FORMATS}")
  return out

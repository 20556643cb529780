"""`jax-sft export RUN_OR_CHECKPOINT --format flax|safetensors --out DIR`: the final model,
LoRA merged, in a format others load (Kaggle Flax Orbax layout or HF safetensors)."""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.add_argument("checkpoint", help="a run dir, its checkpoints dir, or one step's dir")
  p.add_argument("--format", choices=("flax", "safetensors"), default="safetensors")
  p.add_argument("--out", required=True, help="output directory (created)")
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default=None,
                 help="weights dtype in the output (default: as trained)")


def export(path: str, fmt: str, out: str, dtype=None) -> str:
  """Writes the checkpoint at `path` (LoRA merged) to `out` as `fmt`; returns `out`."""
  import jax
  from jax_sft.model import formats, lora as lora_lib
  from jax_sft.train import checkpoint as ckpt_lib
  cfg, params, adapters = ckpt_lib.load_for_inference(path)
  if adapters is not None:
    params = lora_lib.merge(params, adapters, cfg.model, cfg.lora)
  params = jax.device_get(params)
  if fmt == "flax":
    formats.save_kaggle_flax(params, out, dtype=dtype)
  else:
    formats.save_safetensors(params, cfg.model, out, dtype=dtype)
  return out


def run(args: argparse.Namespace) -> int:
  from jax_sft.train import checkpoint as ckpt_lib
  try:
    out = export(args.checkpoint, args.format, args.out, args.dtype)
  except (ckpt_lib.CheckpointError, FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"[export] {args.format} -> {out}")
  return 0

"""`jax-sft export RUN_OR_CHECKPOINT --format flax|safetensors --out DIR`: the final model,
LoRA merged, in a format others load (Kaggle Flax Orbax layout or HF safetensors)."""

from __future__ import annotations

import argparse
import sys

from jax_sft.train import checkpoint as ckpt_lib
from jax_sft.train.export import FORMATS, export


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.add_argument("checkpoint", help="a run dir, its checkpoints dir, or one step's dir")
  p.add_argument("--format", choices=FORMATS, default="safetensors")
  p.add_argument("--out", required=True, help="output directory (created)")
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default=None,
                 help="weights dtype in the output (default: as trained)")


def run(args: argparse.Namespace) -> int:
  try:
    out = export(args.checkpoint, args.format, args.out, args.dtype)
  except (ckpt_lib.CheckpointError, FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"[export] {args.format} -> {out}")
  return 0

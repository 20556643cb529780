"""`jax-sft export RUN_OR_CHECKPOINT --format flax|safetensors|gguf|sentencepiece --out PATH`:
the final model, LoRA merged, in a format others load (Kaggle Flax Orbax layout, HF
safetensors, or one GGUF file with the tokenizer and chat template for llama.cpp, Ollama
and LM Studio); `sentencepiece` writes the tokenizer rebuilt from a .gguf."""

from __future__ import annotations

import argparse
import sys

from jax_sft.train import checkpoint as ckpt_lib
from jax_sft.train.export import DTYPES, FORMATS, export


def add_arguments(p: argparse.ArgumentParser) -> None:
  """Flags of `jax-sft export`."""
  p.add_argument("checkpoint", help="a run dir, its checkpoints dir, one step's dir, or released"
                                    " weights that carry their config (.gguf, HF, Keras)")
  p.add_argument("--format", choices=FORMATS, default="safetensors")
  p.add_argument("--out", required=True,
                 help="output directory (flax, safetensors) or file (gguf, sentencepiece)")
  p.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                 help="weights dtype in the output (default: as trained; gguf: f32)")
  p.add_argument("--tokenizer", default=None,
                 help="tokenizer for gguf/sentencepiece (default: the run's data.tokenizer)")


def run(args: argparse.Namespace) -> int:
  """Export; one error line and exit code 2 on a bad input."""
  try:
    out = export(args.checkpoint, args.format, args.out, args.dtype, args.tokenizer)
  except (ckpt_lib.CheckpointError, FileNotFoundError, ValueError) as e:
    # GGUFError, VocabError and CheckpointMismatch are ValueErrors that name the file.
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"[export] {args.format} -> {out}")
  return 0

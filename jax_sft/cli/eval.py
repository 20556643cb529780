"""`jax-sft eval CONFIG --checkpoint RUN_OR_CHECKPOINT [--against OTHER]`.

Greedy generation on the held-out prompts, format compliance, lengths, answer agreement
and held-out loss, written as report.json and report.md (see docs/eval.md).
"""

from __future__ import annotations

import argparse
import sys

from jax_sft import config as config_lib
from jax_sft.eval.evaluate import EvalError, evaluate


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("config", help="run config YAML (its data.output_dir holds the eval split)")
  parser.add_argument("--checkpoint", required=True,
                      help="a training run dir, its checkpoints dir, one step's dir, or released "
                           "weights (Kaggle Flax, Keras preset, safetensors) shaped by the config")
  parser.add_argument("--against", default=None,
                      help="a second checkpoint to evaluate the same way, or an earlier "
                           "report.json (or its folder), shown side by side")
  parser.add_argument("--max-new-tokens", type=int, default=None,
                      help="generation budget (default: eval.max_new_tokens, 768)")
  parser.add_argument("--num-prompts", type=int, default=None,
                      help="held-out prompts to use (default: eval.num_prompts)")
  parser.add_argument("--out", default=None, help="report folder (default: <run_dir>/eval)")
  parser.add_argument("overrides", nargs="*", help="config overrides, key.path=value")


def run(args: argparse.Namespace) -> int:
  overrides = list(args.overrides)
  if args.max_new_tokens is not None:
    overrides.append(f"eval.max_new_tokens={args.max_new_tokens}")
  if args.num_prompts is not None:
    overrides.append(f"eval.num_prompts={args.num_prompts}")
  try:
    cfg = config_lib.load(args.config, overrides)
    if cfg.eval.max_new_tokens < 1 or cfg.eval.num_prompts < 1:
      raise config_lib.ConfigError(
          f"{args.config}: eval.max_new_tokens and eval.num_prompts must be positive")
    evaluate(cfg, args.checkpoint, out_dir=args.out, against=args.against)
  except (config_lib.ConfigError, EvalError, FileNotFoundError) as e:
    print(f"jax-sft eval: {e}", file=sys.stderr)
    return 2
  return 0

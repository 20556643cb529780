"""`jax-sft`: one entry point, one subcommand per job.

Each subcommand lives in its own module of this package, which defines
`add_arguments(parser)` and `run(args) -> int`; this file only wires them together and
turns a bad config into one line naming the key.
"""

from __future__ import annotations

import argparse
import sys

from jax_sft import config as config_lib
from jax_sft.cli import eval as eval_cmd
from jax_sft.cli import export, generate, grpo, plan, prepare, train

COMMANDS = {
    "prepare": (prepare, "normalize, filter, mix and tokenize the datasets"),
    "train": (train, "train (full or LoRA), resumable across sessions"),
    "grpo": (grpo, "GRPO polish after SFT: sample, score with the format checker, update"),
    "export": (export, "write a run's model, LoRA merged, as Flax or safetensors"),
    "generate": (generate, "sample a completion from a checkpoint"),
    "plan": (plan, "compile for a TPU topology ahead of time and report fit"),
    "eval": (eval_cmd, "format compliance, lengths and answers of a checkpoint"),
}


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="jax-sft", description=__doc__.splitlines()[0])
  sub = parser.add_subparsers(dest="command", required=True)
  for name, (module, help_text) in COMMANDS.items():
    p = sub.add_parser(name, help=help_text, description=help_text)
    p.set_defaults(_run=module.run)
    module.add_arguments(p)
  return parser


def main(argv: list[str] | None = None) -> int:
  parser = build_parser()
  # Dotted overrides (key.path=value) may come anywhere after CONFIG, even after options.
  args, extra = parser.parse_known_args(argv)
  stray = [a for a in extra if a.startswith("-") or "=" not in a]
  if stray or (extra and not hasattr(args, "overrides")):
    parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
  if extra:
    args.overrides = list(args.overrides or []) + extra
  try:
    return int(args._run(args) or 0)
  except config_lib.ConfigError as e:
    print(f"jax-sft {args.command}: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())

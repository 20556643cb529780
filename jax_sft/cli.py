"""`jax-sft`: one entry point, one subcommand per job.

Each subcommand lives in its own module, which defines `add_arguments(parser)` and
`run(args) -> int`; this file only wires them together.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "prepare": ("jax_sft.data.prepare_cli", "normalize, filter, mix and tokenize the datasets"),
    "train": ("jax_sft.train.train_cli", "train (full or LoRA), resumable across sessions"),
    "export": ("jax_sft.train.export_cli", "write a run's model, LoRA merged, as Flax or safetensors"),
    "generate": ("jax_sft.model.generate_cli", "sample a completion from a checkpoint"),
    "plan": ("jax_sft.tpu.plan_cli", "compile for a TPU topology ahead of time and report fit"),
    "eval": ("jax_sft.eval.eval_cli", "format compliance, lengths and answers of a checkpoint"),
}


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="jax-sft", description=__doc__.splitlines()[0])
  sub = parser.add_subparsers(dest="command", required=True)
  for name, (module_name, help_text) in COMMANDS.items():
    p = sub.add_parser(name, help=help_text, description=help_text)
    p.set_defaults(_module=module_name)
    try:
      module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
      if e.name != module_name:
        raise
      p.set_defaults(_missing=True)
      continue
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
  if getattr(args, "_missing", False):
    parser.error(f"`{args.command}` is not available in this build")
  module = importlib.import_module(args._module)
  return int(module.run(args) or 0)


if __name__ == "__main__":
  sys.exit(main())

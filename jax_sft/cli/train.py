"""`jax-sft train CONFIG [key=value ...] [--resume] [--init-from CKPT] [--time-budget 8h30m]`."""

from __future__ import annotations

import argparse
import sys

from jax_sft import config as config_lib
from jax_sft.eval.generations import training_hooks
from jax_sft.train import checkpoint as ckpt_lib
from jax_sft.train import loop
from jax_sft.train import mesh as mesh_lib
from jax_sft.train import stopping

# Kaggle: a 9-hour session; leave room for the final save and copying the output.
PROFILES = {
    "kaggle": {"train.time_budget": "8h30m",
               "checkpoint.every_minutes": "30"},
}


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.add_argument("config", help="YAML run config (configs/<model>_<mode>_<session>_<seq>.yaml)")
  p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.max_steps=100")
  p.add_argument("--resume", action="store_true",
                 help="continue this run from its newest readable checkpoint (exactly)")
  p.add_argument("--resume-step", type=int, metavar="N",
                 help="with --resume: continue from checkpoint step N instead of the newest")
  p.add_argument("--init-from", metavar="CKPT",
                 help="start a new run from another run's weights (read-only dir is fine), an"
                      " export or released weights (fresh optimizer)")
  p.add_argument("--init-optimizer", action="store_true",
                 help="with --init-from: also take its optimizer state")
  p.add_argument("--time-budget", metavar="DURATION",
                 help="stop cleanly with a checkpoint before this much wall time, e.g. 8h30m")
  p.add_argument("--profile", choices=sorted(PROFILES),
                 help="preset overrides for a platform (kaggle: 8h30m budget)")
  p.add_argument("--no-progress", action="store_true", help="no progress bar")


def load_config(args: argparse.Namespace, forced: list[str] = ()):
  """The run's Config from the flags (None after printing the one-line error)."""
  overrides = []
  if args.profile:
    overrides += [f"{k}={v}" for k, v in PROFILES[args.profile].items()]
  overrides += list(args.overrides) + list(forced)
  if args.time_budget:
    overrides.append(f"train.time_budget={args.time_budget}")
  if args.init_optimizer and not args.init_from:
    print("error: --init-optimizer needs --init-from", file=sys.stderr)
    return None
  if args.resume_step is not None and not args.resume:
    print("error: --resume-step needs --resume", file=sys.stderr)
    return None
  cfg = config_lib.load(args.config, overrides)
  try:
    if cfg.train.time_budget:
      stopping.parse_duration(cfg.train.time_budget)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return None
  return cfg


def train(args: argparse.Namespace, cfg: config_lib.Config, name: str, **kwargs) -> int:
  """One session of `cfg` with the flags' start (fresh, --resume, --init-from)."""
  try:
    result = loop.train(cfg, resume=args.resume, init_from=args.init_from,
                        init_optimizer=args.init_optimizer, progress=not args.no_progress,
                        hooks=training_hooks(cfg), resume_step=args.resume_step, **kwargs)
  except (mesh_lib.MeshError, ckpt_lib.CheckpointError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"[{name}] done: steps {result.start_step} -> {result.end_step}/{result.total_steps}"
        f" ({result.stopped_because}); checkpoints in {result.checkpoint_dir}", flush=True)
  return 0


def run(args: argparse.Namespace) -> int:
  cfg = load_config(args)
  return 2 if cfg is None else train(args, cfg, "train")

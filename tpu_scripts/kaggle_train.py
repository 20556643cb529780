#!/usr/bin/env python3
"""Run one jax_sft training session in a Kaggle TPU notebook (v5e-8, 9 hours, 20 GB output).

Installs the package, finds the Gemma weights, tokenizer, prepared data and any earlier
session's run under /kaggle/input, trains with a time budget, exports the model, and
prunes /kaggle/working to fit Kaggle's 20 GB output limit.

  python tpu_scripts/kaggle_train.py --session s1 --model gemma2_2b --mode lora --seq 2048
  python tpu_scripts/kaggle_train.py --config configs/gemma2_2b_lora_s2_2048.yaml \
      --init-from /kaggle/input/my-s1-output/run/export
  python tpu_scripts/kaggle_train.py --session s1 --resume-from /kaggle/input/my-s1-output/run
  ... --dry-run   # print every command and the files found, run nothing

Uses only the standard library, so it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GB = 10**9
# Config key the trainer reads the base weights from.
BASE_WEIGHTS_KEY = "model.init_from"
COPY_IGNORE = (".venv", ".git", "runs", "data_cache", "__pycache__", "*.egg-info", ".jax_cache")
MODEL_NAME_HINTS = {
    "gemma2_2b": ("gemma2", "gemma-2", "2b"),
    "gemma3_1b": ("gemma3", "gemma-3", "1b"),
    "gemma1_2b": ("gemma", "2b"),
}


def log(msg: str) -> None:
  print(f"[kaggle_train] {msg}", flush=True)


def run(cmd: list[str], dry_run: bool) -> None:
  """Prints the command; runs it (failing loudly) unless dry_run."""
  print("+ " + shlex.join(cmd), flush=True)
  if not dry_run:
    subprocess.run(cmd, check=True)


# --- finding things under /kaggle/input ---------------------------------------------


def _walk(root: str, max_depth: int = 8):
  """os.walk limited to max_depth levels below root; skips run directories' checkpoints."""
  root = os.path.abspath(root)
  base = root.count(os.sep)
  for dirpath, dirnames, filenames in os.walk(root):
    if dirpath.count(os.sep) - base >= max_depth:
      dirnames[:] = []
    yield dirpath, dirnames, filenames


def is_run_dir(path: str) -> bool:
  """A jax_sft run directory: holds metrics.jsonl or a checkpoints/ folder."""
  return (os.path.exists(os.path.join(path, "metrics.jsonl"))
          or os.path.isdir(os.path.join(path, "checkpoints")))


def find_run_dirs(root: str) -> list[str]:
  """Earlier sessions' run directories under root, newest first."""
  found = [d for d, _, _ in _walk(root) if is_run_dir(d)]
  return sorted(found, key=os.path.getmtime, reverse=True)


def _model_kind(dirpath: str, filenames: list[str]) -> str | None:
  names = set(filenames)
  if names & {"_METADATA", "_CHECKPOINT_METADATA", "manifest.ocdbt"}:
    return "flax"
  if "config.json" in names and any(n.endswith(".weights.h5") for n in names):
    return "keras"
  if "config.json" in names and any(n.endswith(".safetensors") for n in names):
    return "safetensors"
  return None


def find_model(root: str, preset: str) -> str | None:
  """The base checkpoint directory for `preset` (Kaggle Flax, Keras preset or safetensors)."""
  hints = MODEL_NAME_HINTS.get(preset, ())
  runs = find_run_dirs(root)
  best, best_score = None, -1
  for dirpath, dirnames, filenames in _walk(root):
    if any(dirpath.startswith(r + os.sep) or dirpath == r for r in runs):
      continue  # an earlier session's own checkpoints are not base weights
    kind = _model_kind(dirpath, filenames)
    if kind is None:
      continue
    dirnames[:] = []  # do not descend into the checkpoint itself
    low = dirpath.lower()
    score = sum(h in low for h in hints) * 10 + ("it" in os.path.basename(low)) + (kind == "flax")
    if score > best_score:
      best, best_score = dirpath, score
  return best


def find_tokenizer(root: str, model_dir: str | None) -> str | None:
  """tokenizer.model (Kaggle Flax) or vocabulary.spm (Keras) nearest to the model."""
  places = []
  if model_dir:
    places += [model_dir, os.path.dirname(model_dir),
               os.path.join(model_dir, "assets", "tokenizer")]
  for place in places:
    for name in ("tokenizer.model", "vocabulary.spm"):
      if os.path.isfile(os.path.join(place, name)):
        return os.path.join(place, name)
  for dirpath, _, filenames in _walk(root):
    for name in ("tokenizer.model", "vocabulary.spm"):
      if name in filenames:
        return os.path.join(dirpath, name)
  return None


def find_prepared_data(root: str) -> str | None:
  """A `jax-sft prepare` output directory (has manifest.json and a train split)."""
  for dirpath, _, filenames in _walk(root):
    if "manifest.json" in filenames and os.path.isdir(os.path.join(dirpath, "train")):
      return dirpath
  return None


# --- output size -----------------------------------------------------------------------


def tree_size(path: str) -> int:
  """Bytes under path (apparent sizes: what Kaggle saves)."""
  if os.path.isfile(path):
    return os.path.getsize(path)
  total = 0
  for dirpath, _, filenames in os.walk(path):
    for n in filenames:
      p = os.path.join(dirpath, n)
      if not os.path.islink(p):
        total += os.path.getsize(p)
  return total


def checkpoint_steps(run_dir: str) -> list[str]:
  """Orbax step directories (all-digit names) under run_dir, oldest first."""
  steps = []
  for dirpath, dirnames, _ in os.walk(run_dir):
    digits = [d for d in dirnames if d.isdigit()]
    steps += [os.path.join(dirpath, d) for d in sorted(digits, key=int)]
    dirnames[:] = [d for d in dirnames if not d.isdigit()]
  return steps


def prune_output(working: str, run_dir: str, export_dir: str, cache_dir: str,
                 limit_bytes: int, dry_run: bool) -> list[str]:
  """Deletes, in this order, until /kaggle/working fits: older checkpoints, the compile
  cache, then (if the export exists) the last checkpoint. Returns what was removed."""
  removed = []
  steps = checkpoint_steps(run_dir)
  candidates = steps[:-1] + [cache_dir]
  if os.path.isdir(export_dir) and steps:
    candidates.append(steps[-1])  # the export alone can start the next session (--init-from)
  size = tree_size(working)
  log(f"/kaggle/working holds {size / GB:.2f} GB (limit {limit_bytes / GB:.1f} GB)")
  for path in candidates:
    if size <= limit_bytes:
      break
    if not os.path.exists(path):
      continue
    freed = tree_size(path)
    print(f"+ rm -rf {shlex.quote(path)}   # {freed / GB:.2f} GB", flush=True)
    if not dry_run:
      shutil.rmtree(path)
    size -= freed
    removed.append(path)
  if size > limit_bytes:
    log(f"WARNING: output still {size / GB:.2f} GB > {limit_bytes / GB:.1f} GB; Kaggle will not "
        "save all of it. Use a LoRA config or export in bfloat16.")
  return removed


# --- the session -----------------------------------------------------------------------


def config_path(args) -> str:
  if args.config:
    return args.config
  return os.path.join(REPO, "configs", f"{args.model}_{args.mode}_{args.session}_{args.seq}.yaml")


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", help="run config (default: from --model/--mode/--session/--seq)")
  p.add_argument("--model", default="gemma2_2b", choices=sorted(MODEL_NAME_HINTS))
  p.add_argument("--mode", default="lora", choices=["lora", "full"])
  p.add_argument("--session", default="s1", choices=["s1", "s2", "s3"])
  p.add_argument("--seq", default=2048, type=int, choices=[1024, 2048])
  p.add_argument("--time-budget", default="8h30m", help="training stops cleanly before this")
  p.add_argument("--resume-from", help="an earlier session's run dir to continue exactly "
                 "(copied into --working, then `train --resume`)")
  p.add_argument("--init-from", help="checkpoint or export to warm-start a new run from; "
                 "'auto' = newest run dir under --input")
  p.add_argument("--model-dir", help="base weights (default: searched under --input)")
  p.add_argument("--tokenizer", help="SentencePiece model (default: searched under --input)")
  p.add_argument("--data-dir", help="prepared data (default: searched under --input, "
                 "else prepared into /tmp)")
  p.add_argument("--input", default="/kaggle/input")
  p.add_argument("--working", default="/kaggle/working")
  p.add_argument("--output-limit-gb", type=float, default=19.5,
                 help="prune /kaggle/working to this (Kaggle saves 20 GB)")
  p.add_argument("--export-format", default="flax", choices=["flax", "safetensors"])
  p.add_argument("--install-dir", default="/tmp/jax_sft_src",
                 help="where the source is copied to be installed (writable)")
  p.add_argument("--no-install", action="store_true", help="the package is already installed")
  p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
  p.add_argument("overrides", nargs="*", help="extra key.path=value config overrides")
  args = p.parse_args(argv)
  started = time.time()

  run_dir = os.path.join(args.working, "run")
  export_dir = os.path.join(run_dir, "export")
  cache_dir = os.path.join(args.working, "jax_cache")
  src = REPO
  if not args.no_install:
    # /kaggle/input is read-only and setuptools builds in the source tree: install a copy.
    src = args.install_dir
    print(f"+ copy {shlex.quote(REPO)} -> {shlex.quote(src)}", flush=True)
    if not args.dry_run:
      shutil.rmtree(src, ignore_errors=True)
      shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(*COPY_IGNORE))
    run(["pip", "install", "-q", "-e", f"{src}[tpu]"], args.dry_run)
  config = config_path(args)
  if not args.config:
    config = os.path.join(src, os.path.relpath(config, REPO))

  model_dir = args.model_dir or find_model(args.input, args.model)
  tokenizer = args.tokenizer or find_tokenizer(args.input, model_dir)
  data_dir = args.data_dir or find_prepared_data(args.input) or "/tmp/jax_sft_data"
  log(f"config: {config}")
  log(f"base weights: {model_dir or 'NOT FOUND (add the Gemma model to the notebook)'}")
  log(f"tokenizer: {tokenizer or 'NOT FOUND'}")
  log(f"data: {data_dir}")
  if not args.dry_run and (model_dir is None or tokenizer is None) and not args.resume_from:
    log(f"no Gemma weights or tokenizer under {args.input}: add the model to the notebook "
        "(Add Input -> Models -> Gemma 2 or Gemma 3, Flax) or pass --model-dir/--tokenizer")
    return 2

  overrides = [f"run_dir={run_dir}", f"data.output_dir={data_dir}",
               f"checkpoint.compilation_cache_dir={cache_dir}"]
  if tokenizer:
    overrides.append(f"data.tokenizer={tokenizer}")
  if model_dir:
    overrides.append(f"{BASE_WEIGHTS_KEY}={model_dir}")
  train = ["jax-sft", "train", config, "--time-budget", args.time_budget]
  if args.resume_from:
    run(["rm", "-rf", run_dir], args.dry_run)
    run(["cp", "-r", args.resume_from, run_dir], args.dry_run)
    train.append("--resume")
  elif args.init_from:
    init = args.init_from
    if init == "auto":
      runs = find_run_dirs(args.input)
      if not runs:
        log(f"--init-from auto: no earlier run dir under {args.input}")
        return 2
      init = runs[0]
    train += ["--init-from", init]
  train += overrides + list(args.overrides)

  if not os.path.isabs(data_dir) or not data_dir.startswith(args.input):
    run(["jax-sft", "prepare", config] + overrides + list(args.overrides), args.dry_run)
  run(train, args.dry_run)
  run(["jax-sft", "export", run_dir, "--format", args.export_format, "--out", export_dir],
      args.dry_run)
  prune_output(args.working, run_dir, export_dir, cache_dir,
               int(args.output_limit_gb * GB), args.dry_run)
  log(f"done in {(time.time() - started) / 3600:.2f} h; save the notebook's output "
      "(or a Kaggle dataset from it) to start the next session from it")
  return 0


if __name__ == "__main__":
  sys.exit(main())

#!/usr/bin/env python3
"""Run one jax_sft training session in a Kaggle TPU notebook (v5e-8, 9 hours, 20 GB output).

One clock for the whole session: it starts when the notebook started (or at --deadline
minus --session-hours) and covers install, prepare, training (whose final checkpoint the
trainer budgets for itself), export and pruning. Export and pruning run even when training
fails; the script then exits with training's status.

  python tpu_scripts/kaggle_train.py --session s1 --model gemma2_2b --mode lora --seq 2048
  python tpu_scripts/kaggle_train.py --session s1 --resume-from /kaggle/input/my-s1-output/run
  python tpu_scripts/kaggle_train.py --session s2 --init-from auto     # newest earlier run
  ... --dry-run   # print every command and the files found, run nothing

Output (under /kaggle/working, at most --output-limit-gb): run/ (checkpoints, metrics, the
export) and data/ (the prepared mix, so the next session need not prepare again). When it
does not all fit, what can be rebuilt goes first; see `plan_pruning`. JAX_SFT_KAGGLE_ROOT
(default /kaggle) moves /kaggle/input and /kaggle/working, for rehearsals on any machine.
Uses only the standard library, so it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import os
import shlex
import shutil
import subprocess
import sys
import time

from kaggle_output import GB, checkpoint_steps, copy_run, prune_output, writable_copy

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KAGGLE_ROOT = os.environ.get("JAX_SFT_KAGGLE_ROOT", "/kaggle")
BASE_WEIGHTS_KEY = "model.init_from"  # the config key the trainer reads the base weights from
COPY_IGNORE = (".venv", ".git", "runs", "data_cache", "__pycache__", "*.egg-info", ".jax_cache")
MODEL_NAME_HINTS = {
    "gemma2_2b": ("gemma2", "gemma-2", "2b"),
    "gemma3_1b": ("gemma3", "gemma-3", "1b"),
    "gemma3_270m": ("gemma3", "gemma-3", "270m"),
    "gemma1_2b": ("gemma", "2b"),
}


def log(msg: str) -> None:
  print(f"[kaggle_train] {msg}", flush=True)


def run(cmd: list[str], dry_run: bool, check: bool = True) -> int:
  """Prints the command; runs it unless dry_run; returns its exit status."""
  print("+ " + shlex.join(cmd), flush=True)
  if dry_run:
    return 0
  return subprocess.run(cmd, check=check).returncode


def parse_duration(text: str) -> float:
  """Seconds in "8h30m", "90m", "45s" or a bare number of seconds."""
  text, total, num = str(text).strip().lower(), 0.0, ""
  for ch in text:
    if ch.isdigit() or ch == ".":
      num += ch
    elif ch in "dhms" and num:
      total += float(num) * {"d": 86400, "h": 3600, "m": 60, "s": 1}[ch]
      num = ""
    else:
      raise ValueError(f"{text!r} is not a duration like 8h30m")
  return total + (float(num) if num else 0.0)


# --- the clock --------------------------------------------------------------------------


def session_start() -> float:
  """When this notebook's session started: the start of the container's first process
  (Kaggle starts a fresh container per session); the script's own start if unknown."""
  try:
    with open("/proc/stat") as f:
      boot = next(float(line.split()[1]) for line in f if line.startswith("btime"))
    with open("/proc/1/stat") as f:
      ticks = float(f.read().rsplit(")", 1)[1].split()[19])
    start = boot + ticks / os.sysconf("SC_CLK_TCK")
    return start if start <= time.time() else time.time()
  except (OSError, ValueError, StopIteration, IndexError):
    return time.time()


def parse_deadline(text: str) -> float:
  """Epoch seconds from a number of seconds, or an ISO time (local time if no zone)."""
  try:
    return float(text)
  except ValueError:
    return datetime.datetime.fromisoformat(text).timestamp()


class Clock:
  """Seconds left until the session's deadline."""

  def __init__(self, deadline: float):
    self.deadline = deadline

  def left(self) -> float:
    return self.deadline - time.time()

  def describe(self) -> str:
    return f"{self.left() / 3600:.2f} h left"


# --- finding things under /kaggle/input ---------------------------------------------


def _walk(root: str, max_depth: int = 8):
  """os.walk limited to max_depth levels below root."""
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


def warm_start_source(run_dir: str) -> str | None:
  """What `--init-from` should read from an earlier run: its checkpoints (weights and
  optimizer), else its export (weights only), else nothing."""
  if checkpoint_steps(run_dir):
    return run_dir
  export = os.path.join(run_dir, "export")
  return export if os.path.isdir(export) and os.listdir(export) else None


def _model_kind(filenames: list[str]) -> str | None:
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
    kind = _model_kind(filenames)
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
    places += [model_dir, os.path.dirname(model_dir), os.path.join(model_dir, "assets", "tokenizer")]
  for place in places:
    for name in ("tokenizer.model", "vocabulary.spm"):
      if os.path.isfile(os.path.join(place, name)):
        return os.path.join(place, name)
  for dirpath, _, filenames in _walk(root):
    for name in ("tokenizer.model", "vocabulary.spm"):
      if name in filenames:
        return os.path.join(dirpath, name)
  return None


def is_prepared_data(path: str) -> bool:
  """What `jax-sft prepare` writes: manifest.json beside train-*.array_record shards."""
  return (os.path.isfile(os.path.join(path, "manifest.json"))
          and bool(glob.glob(os.path.join(path, "train-*.array_record"))))


def find_prepared_data(root: str) -> str | None:
  """A `jax-sft prepare` output directory under root (newest first)."""
  found = [d for d, _, _ in _walk(root) if is_prepared_data(d)]
  return max(found, key=os.path.getmtime) if found else None


# --- the session -----------------------------------------------------------------------


def config_path(args, src: str) -> str:
  if args.config:
    return args.config
  return os.path.join(src, "configs", f"{args.model}_{args.mode}_{args.session}_{args.seq}.yaml")


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", help="run config (default: from --model/--mode/--session/--seq)")
  p.add_argument("--model", default="gemma2_2b", choices=sorted(MODEL_NAME_HINTS))
  p.add_argument("--mode", default="lora", choices=["lora", "full"])
  p.add_argument("--session", default="s1", choices=["s1", "s2", "s3"])
  p.add_argument("--seq", default=2048, type=int, choices=[1024, 2048])
  p.add_argument("--session-hours", type=float, default=9.0, help="Kaggle's session limit")
  p.add_argument("--deadline", help="when the session ends (epoch seconds or ISO time);"
                 " default: the notebook's start plus --session-hours")
  p.add_argument("--export-reserve", default="20m",
                 help="time kept after training for export and pruning")
  p.add_argument("--time-budget", help="cap on training time (the clock may give less)")
  p.add_argument("--resume-from", help="an earlier session's run dir to continue exactly")
  p.add_argument("--init-from", help="an earlier run, export or model to warm-start from;"
                 " 'auto' = the newest run dir under --input")
  p.add_argument("--model-dir", help="base weights (default: searched under --input)")
  p.add_argument("--tokenizer", help="SentencePiece model (default: searched under --input)")
  p.add_argument("--data-dir", help="prepared data (default: searched under --input, else"
                 " prepared into --working/data)")
  p.add_argument("--input", default=os.path.join(KAGGLE_ROOT, "input"))
  p.add_argument("--working", default=os.path.join(KAGGLE_ROOT, "working"))
  p.add_argument("--output-limit-gb", type=float, default=19.5,
                 help="prune --working to this (Kaggle saves 20 GB)")
  p.add_argument("--prefer", choices=["checkpoint", "export"],
                 help="what to keep when both do not fit (default: export in s3, else checkpoint)")
  p.add_argument("--export-format", default="flax", choices=["flax", "safetensors"])
  p.add_argument("--install-dir", default="/tmp/jax_sft_src",
                 help="where the source is copied to be installed (writable)")
  p.add_argument("--no-install", action="store_true", help="the package is already installed")
  p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
  p.add_argument("overrides", nargs="*", help="extra key.path=value config overrides")
  return p


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)
  deadline = (parse_deadline(args.deadline) if args.deadline
              else session_start() + args.session_hours * 3600)
  clock = Clock(deadline)
  log(f"session clock: {clock.describe()} (deadline {time.ctime(deadline)})")
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
  config = config_path(args, src)

  model_dir = args.model_dir or find_model(args.input, args.model)
  tokenizer = args.tokenizer or find_tokenizer(args.input, model_dir)
  data_dir = args.data_dir or os.path.join(args.working, "data")
  earlier = None if args.data_dir else find_prepared_data(args.input)
  if earlier and not os.path.exists(data_dir):
    # An earlier session's prepared data: `jax-sft prepare` reuses it when the mix is the
    # same (same content hash) and rebuilds it in place otherwise, so it is copied from
    # the read-only input rather than used there.
    print(f"+ copy {shlex.quote(earlier)} -> {shlex.quote(data_dir)}", flush=True)
    if not args.dry_run:
      writable_copy(earlier, data_dir)
  log(f"config: {config}")
  log(f"base weights: {model_dir or 'NOT FOUND (add the Gemma model to the notebook)'}")
  log(f"tokenizer: {tokenizer or 'NOT FOUND'}; data: {data_dir}")
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
  overrides += list(args.overrides)
  train = ["jax-sft", "train", config]
  if args.resume_from:
    copy_run(args.resume_from, run_dir, args.dry_run)
    train.append("--resume")
  elif args.init_from:
    init = args.init_from
    if init == "auto":
      runs = [r for r in find_run_dirs(args.input) if warm_start_source(r)]
      if not runs:
        log(f"--init-from auto: no earlier run with a checkpoint or an export under {args.input}")
        return 2
      init = warm_start_source(runs[0])
    train += ["--init-from", init]
  run(["jax-sft", "prepare", config] + overrides, args.dry_run)  # reuses a matching mix

  reserve = parse_duration(args.export_reserve)
  budget = clock.left() - reserve
  if args.time_budget:
    budget = min(budget, parse_duration(args.time_budget))
  status = 0
  if budget <= 10 and not args.dry_run:
    log(f"no time left to train ({clock.describe()}, {reserve:.0f}s kept for export)")
    status = 3
  else:
    log(f"training for at most {budget / 3600:.2f} h ({clock.describe()})")
    status = run(train + ["--time-budget", f"{int(budget)}s"] + overrides, args.dry_run,
                 check=False)
    if status:
      log(f"training exited with status {status}; exporting and pruning what it left")
  if args.dry_run or checkpoint_steps(run_dir):
    if os.path.exists(export_dir):  # an earlier export of this run: replaced by the new one
      run(["rm", "-rf", export_dir], args.dry_run)
    if run(["jax-sft", "export", run_dir, "--format", args.export_format, "--out", export_dir],
           args.dry_run, check=False):
      log("export failed; the checkpoint is kept")
  prefer = args.prefer or ("export" if args.session == "s3" else "checkpoint")
  prune_output(args.working, run_dir, export_dir, cache_dir, data_dir,
               int(args.output_limit_gb * GB), prefer, args.dry_run)
  log(f"done ({clock.describe()}); save the notebook's output (or a Kaggle dataset from it)"
      " to start the next session from it")
  return status


if __name__ == "__main__":
  sys.exit(main())

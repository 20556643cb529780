"""What a Kaggle session leaves in /kaggle/working: sizes, pruning under the output limit,
and writable copies of read-only inputs (tpu_scripts/kaggle_train.py uses these).

Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import os
import shlex
import shutil

GB = 10**9


def log(msg: str) -> None:
  print(f"[kaggle_train] {msg}", flush=True)


def checkpoint_steps(run_dir: str) -> list[str]:
  """Finished Orbax step directories (all-digit names) under run_dir, oldest first."""
  ckpt = os.path.join(run_dir, "checkpoints")
  if not os.path.isdir(ckpt):
    return []
  return [os.path.join(ckpt, d) for d in sorted((d for d in os.listdir(ckpt) if d.isdigit()),
                                                 key=int)]


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


def plan_pruning(sizes: dict[str, int], total: int, limit: int, *, cache: str, data: str,
                 older_steps: list[str], last_step: str | None, export: str | None,
                 prefer: str) -> list[str]:
  """What to delete, in order, so the output fits `limit`; nothing if it already fits.

  Rebuildable things go first (the compile cache, the prepared data, older checkpoint
  steps), then whichever of the export and the last checkpoint is not preferred. The
  other is kept even if it alone is over the limit: Kaggle then saves nothing, and the
  log says so. `prefer` "checkpoint" keeps the resumable state (sessions 1-2); "export"
  keeps the model (the last session), and so does "checkpoint" when the checkpoint alone
  would not fit but the export would.
  """
  plan: list[str] = []

  def drop(path):
    nonlocal total
    if path and path in sizes and total > limit:
      plan.append(path)
      total -= sizes[path]

  for path in [cache, data, *older_steps]:
    drop(path)
  ckpt_fits = last_step is not None and total - sizes.get(export, 0) <= limit
  keep_ckpt = prefer == "checkpoint" and (ckpt_fits or export not in sizes)
  drop(export if keep_ckpt else last_step)
  return plan


def prune_output(working: str, run_dir: str, export_dir: str, cache_dir: str, data_dir: str,
                 limit_bytes: int, prefer: str, dry_run: bool) -> list[str]:
  """Deletes what plan_pruning says until the working dir fits; returns what was removed."""
  steps = checkpoint_steps(run_dir)
  candidates = [cache_dir, data_dir, export_dir] + steps
  sizes = {p: tree_size(p) for p in candidates if os.path.exists(p)}
  total = tree_size(working)
  log(f"{working} holds {total / GB:.2f} GB (limit {limit_bytes / GB:.1f} GB)")
  plan = plan_pruning(sizes, total, limit_bytes, cache=cache_dir,
                      data=data_dir if data_dir.startswith(working) else "",
                      older_steps=steps[:-1], last_step=steps[-1] if steps else None,
                      export=export_dir if export_dir in sizes else None, prefer=prefer)
  for path in plan:
    print(f"+ rm -rf {shlex.quote(path)}   # {sizes[path] / GB:.2f} GB", flush=True)
    if not dry_run:
      shutil.rmtree(path)
    total -= sizes[path]
  if export_dir in plan:
    log("the export was removed to keep the checkpoint; rebuild it any time with"
        f" `jax-sft export {run_dir} --format flax --out DIR`")
  if steps and steps[-1] in plan:
    log("the checkpoint did not fit beside the export: the next session can only warm-start"
        " from the export (weights only, a fresh optimizer). A compact state"
        " (model.param_dtype=bfloat16) or LoRA keeps the checkpoint.")
  if total > limit_bytes:
    log(f"WARNING: output still {total / GB:.2f} GB > {limit_bytes / GB:.1f} GB; Kaggle will"
        " not save all of it")
  return plan


def copy_run(src: str, dst: str, dry_run: bool) -> None:
  """An earlier run's newest checkpoint, config and metrics into dst (read-only inputs are
  copied: the run continues there); older steps and the export stay behind."""
  steps = checkpoint_steps(src)
  print(f"+ copy {shlex.quote(src)} -> {shlex.quote(dst)} (newest checkpoint only)", flush=True)
  if dry_run:
    return
  shutil.rmtree(dst, ignore_errors=True)
  keep = {os.path.basename(steps[-1])} if steps else set()
  writable_copy(src, dst, ignore=lambda d, names: [
      n for n in names if (d == src and n == "export")
      or (os.path.basename(d) == "checkpoints" and n not in keep)])


def writable_copy(src: str, dst: str, ignore=None) -> None:
  """A copy of `src` that this session may write to (Kaggle's inputs are read-only)."""
  shutil.copytree(src, dst, ignore=ignore, copy_function=shutil.copyfile)
  for root, dirs, files in os.walk(dst):
    os.chmod(root, 0o755)
    for n in files:
      os.chmod(os.path.join(root, n), 0o644)

"""Orbax checkpoints that carry a run across sessions, on local disk or in a bucket.

One checkpoint step holds five items, written together (all processes) and atomically
(Orbax writes a tmp dir and renames it, so a failed save never touches the last good one):
  params     the trainable weights (the full model, or only the LoRA adapters)
  opt        {'step', 'opt_state', 'rng'}
  data_iter  the Grain iterator state (one file per process)
  config     the run's Config as JSON
  meta       step, lora, base weights reference, the data stream's identity, param counts
A step that cannot be read back (a truncated file, a disk that filled up) is reported,
moved aside as `<step>.unreadable-<time>`, and the previous good step is used instead.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Optional

import grain
import grain.checkpoint  # registers grain's Orbax handler
import jax
import orbax.checkpoint as ocp
from etils import epath
from jax.sharding import SingleDeviceSharding

from jax_sft import config as config_lib
from jax_sft import storage
from jax_sft.config import CheckpointConfig
from jax_sft.train import compat

PyTree = Any
# A bucket is not probed (a test object per session is clutter): GCS from a TPU VM writes at
# several hundred MB/s per host; this lower figure errs on the side of saving in time.
REMOTE_WRITE_BPS = 100e6


class CheckpointError(ValueError):
  """A checkpoint that does not fit this run; the message lists what differs."""


def dir_size_bytes(path: storage.PathLike) -> int:
  """Total size of the files under `path` (local or remote)."""
  root = storage.resolve(path)
  if not root.exists():
    return 0
  if not root.is_dir():
    return root.stat().length
  return sum(dir_size_bytes(child) for child in root.iterdir())


def _abstract(tree: PyTree, sharding_tree: Optional[PyTree] = None) -> PyTree:
  """ShapeDtypeStructs (with shardings) to restore into."""
  if sharding_tree is None:  # this process's first device: on a multi-host slice, each host's own
    dev = SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=dev), tree)
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      tree, sharding_tree)


def log(msg: str) -> None:
  if jax.process_index() == 0:
    print(f"[checkpoint] {msg}", flush=True)


class Checkpointer:
  """Saves and restores one run's checkpoints under `directory` (an Orbax manager)."""

  def __init__(self, directory: storage.PathLike, cfg: CheckpointConfig = CheckpointConfig(),
               *, read_only: bool = False):
    self.path: epath.Path = storage.resolve(directory)
    self.directory = str(self.path)
    self.cfg = cfg
    self.read_only = read_only
    is_async = cfg.async_save and not read_only
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None if read_only else cfg.keep, create=not read_only,
        read_only=read_only, enable_async_checkpointing=is_async,
        cleanup_tmp_directories=not read_only,
        async_options=(ocp.AsyncOptions(post_finalization_callback=self._committed)
                       if is_async else None))
    handlers = dict(params=ocp.StandardCheckpointHandler(use_ocdbt=cfg.ocdbt),
                    opt=ocp.StandardCheckpointHandler(use_ocdbt=cfg.ocdbt),
                    config=ocp.JsonCheckpointHandler(), meta=ocp.JsonCheckpointHandler(),
                    data_iter=grain.checkpoint.CheckpointHandler())
    self.manager = ocp.CheckpointManager(self.path, options=options, item_handlers=handlers)
    self._last_save_time = time.monotonic()
    self._pending: Optional[int] = None  # the step whose save is in flight
    self._save_started = 0.0
    self.last_save_s = 0.0  # wall time of the last save, start to commit (measured)

  # --- saving -------------------------------------------------------------------

  def due(self, step: int) -> bool:
    """Whether the cadence (every N steps or every M minutes) asks for a save now."""
    by_steps = self.cfg.every_steps > 0 and step % self.cfg.every_steps == 0
    minutes = (time.monotonic() - self._last_save_time) / 60
    by_time = self.cfg.every_minutes > 0 and minutes >= self.cfg.every_minutes
    return by_steps or by_time

  def save(self, step: int, state, data_iter, cfg: config_lib.Config, meta: dict) -> bool:
    """Starts an (async) save of `state` and `data_iter` at `step`; False if it exists."""
    if step in self.manager.all_steps():
      return False
    self._finish_pending()
    items = dict(
        params=ocp.args.StandardSave(state.params),
        opt=ocp.args.StandardSave({"step": state.step, "opt_state": state.opt_state,
                                   "rng": state.rng}),
        config=ocp.args.JsonSave(config_lib.to_dict(cfg)),
        meta=ocp.args.JsonSave(dict(meta, step=int(step))))
    if data_iter is not None:
      items["data_iter"] = grain.checkpoint.CheckpointSave(data_iter)
    self._save_started = time.monotonic()
    self.manager.save(step, args=ocp.args.Composite(**items), force=True)
    if not self.manager.is_saving_in_progress():  # synchronous: committed already
      self._committed()
    self._last_save_time = time.monotonic()
    self._pending = step
    return True

  def _committed(self) -> None:
    """Orbax calls this when a save is committed: its duration bounds the final save's."""
    self.last_save_s = time.monotonic() - self._save_started

  def _finish_pending(self) -> None:
    """Waits for the save in flight (if any), then reports its size and duration."""
    if self._pending is None:
      return
    self.manager.wait_until_finished()
    step, self._pending = self._pending, None
    path = self.path / str(step)
    if storage.is_remote(path):  # sizing a bucket's folder is many requests: not per save
      log(f"step {step} at {path} ({self.last_save_s:.1f}s)")
    elif path.exists():
      log(f"step {step}: {dir_size_bytes(path) / 1e6:.1f} MB at {path}"
          f" ({self.last_save_s:.1f}s)")

  def wait(self):
    """Blocks until the async save in flight has been committed (raises its error)."""
    self._finish_pending()

  def close(self):
    self._finish_pending()
    self.manager.close()

  def write_speed(self, probe_bytes: int = 32 << 20) -> float:
    """Bytes per second a file is written into the checkpoint directory, measured now."""
    if self.read_only:
      return float("inf")
    if storage.is_remote(self.path):
      return REMOTE_WRITE_BPS
    probe = self.path / f".write-probe-{jax.process_index()}"
    data = os.urandom(probe_bytes)  # incompressible, as weights are
    t0 = time.monotonic()
    with open(probe, "wb") as f:  # to the disk, not the page cache
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    seconds = time.monotonic() - t0
    probe.unlink()
    return probe_bytes / max(seconds, 1e-6)

  # --- restoring ----------------------------------------------------------------

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def read_json(self, step: int, name: str) -> dict:
    """The 'config' or 'meta' item of `step`."""
    return self.manager.restore(step, args=ocp.args.Composite(
        **{name: ocp.args.JsonRestore()}))[name]

  def check_compatible(self, step: int, cfg: config_lib.Config, params_abstract: PyTree):
    """Raises CheckpointError listing each differing config key and param path."""
    lines = compat.config_diff(self.read_json(step, "config"), cfg)
    lines += compat.tree_diff(self.saved_params_metadata(step), params_abstract)
    if lines:
      raise CheckpointError(
          f"checkpoint {self.directory}/{step} does not fit this run:\n  " + "\n  ".join(lines))

  def restore_params(self, step: int, params_abstract: PyTree,
                     shardings: Optional[PyTree] = None) -> PyTree:
    """The trainable weights of `step`, placed by `shardings`."""
    target = _abstract(params_abstract, shardings)
    return self.manager.restore(step, args=ocp.args.Composite(
        params=ocp.args.StandardRestore(target)))["params"]

  def restore_opt(self, step: int, opt_abstract: dict, shardings: Optional[dict] = None) -> dict:
    """{'step', 'opt_state', 'rng'} of `step`, placed by `shardings`."""
    target = _abstract(opt_abstract, shardings)
    return self.manager.restore(step, args=ocp.args.Composite(
        opt=ocp.args.StandardRestore(target)))["opt"]

  def restore_data_iter(self, step: int, data_iter) -> None:
    """Sets `data_iter` to where it was at `step`, on any number of processes.

    Every process reads the whole global stream and keeps its own rows (data_feed.py), so
    the saved states of all processes are the same position: a run saved by N processes
    resumes on M from any one of them (Grain's own handler only finds its N-process file).
    """
    folder = self.path / str(step) / "data_iter"
    mine = folder / f"process_{jax.process_index()}-of-{jax.process_count()}.json"
    if mine.exists():
      self.manager.restore(step, args=ocp.args.Composite(
          data_iter=grain.checkpoint.CheckpointRestore(data_iter)))
      return
    saved = sorted(folder.glob("process_*-of-*.json")) if folder.exists() else []
    if not saved:
      raise ValueError(f"{folder}: no saved data iterator state")
    data_iter.set_state(json.loads(saved[0].read_text()))

  def saved_params_metadata(self, step: int) -> PyTree:
    """The saved params as a nested dict of ShapeDtypeStructs."""
    out: dict = {}
    for path, m in jax.tree_util.tree_flatten_with_path(self.manager.item_metadata(step)["params"])[0]:
      node = out
      keys = [getattr(k, "key", getattr(k, "name", k)) for k in path]
      for k in keys[:-1]:
        node = node.setdefault(k, {})
      node[keys[-1]] = jax.ShapeDtypeStruct(tuple(m.shape), m.dtype)
    return out

  def restore_newest_good(self, restore: Callable[[int], Any], step: Optional[int] = None):
    """(step, restore(step)) for `step`, or the newest step that reads back whole.

    A step that fails to read is named with its error and moved aside (so the run can
    write that step again), and the next older one is tried.
    """
    candidates = [step] if step is not None else sorted(self.all_steps(), reverse=True)
    if step is not None and step not in self.all_steps():
      raise CheckpointError(f"--resume-step {step}: no such checkpoint in {self.directory}"
                            f" (steps: {self.all_steps()})")
    unreadable = []
    for s in candidates:
      try:
        result = restore(s)
      except CheckpointError:
        raise
      except Exception as e:  # pylint: disable=broad-except  (any unreadable file)
        why = (str(e).strip().splitlines() or [type(e).__name__])[-1][:300]
        log(f"step {s} in {self.directory} cannot be read back ({type(e).__name__}: {why});"
            + (" trying the previous step" if s != candidates[-1] else ""))
        unreadable.append(s)
        continue
      for bad in unreadable:  # only once an older step did read: the run writes them again
        self._quarantine(bad)
      return s, result
    raise CheckpointError(f"no readable checkpoint in {self.directory}"
                          f" (tried {candidates}); start fresh or pick another run")

  def _quarantine(self, step: int) -> None:
    if self.read_only or jax.process_index() != 0:
      return
    src = self.path / str(step)
    dst = self.path / f"{step}.unreadable-{int(time.time())}"
    try:
      src.rename(dst)
      log(f"moved step {step} aside to {dst}")
    except OSError as e:
      log(f"could not move step {step} aside ({e}); it stays where it is")
    self.manager.reload()


def is_run(path: storage.PathLike) -> bool:
  """True for a training run dir, its checkpoints dir, or one step's dir (not released weights)."""
  p = storage.resolve(path)
  return ((p / "checkpoints").is_dir() or (p / "run.yaml").exists()
          or "checkpoints" in p.parts or (p.name.isdigit() and (p / "meta").is_dir()))


def resolve(path: storage.PathLike) -> tuple[str, Optional[int]]:
  """(manager directory, step or None for latest) from a run dir, a checkpoints dir,
  or one step's dir."""
  p = storage.resolve(path)
  if (p / "checkpoints").is_dir():
    return str(p / "checkpoints"), None
  if (p / "params").is_dir() and p.name.isdigit():
    return str(p.parent), int(p.name)
  if not p.is_dir():
    raise CheckpointError(f"checkpoint path not found: {p}")
  return str(p), None


def open_read_only(path: storage.PathLike) -> tuple[Checkpointer, int]:
  """A read-only Checkpointer on `path` and the step to use; raises if empty."""
  directory, step = resolve(path)
  ckpt = Checkpointer(directory, read_only=True)
  step = ckpt.latest_step() if step is None else step
  if step is None:
    raise CheckpointError(f"no finished checkpoint under {directory}")
  return ckpt, step


def config_from_checkpoint(ckpt: Checkpointer, step: int) -> config_lib.Config:
  """The saved run's Config."""
  return config_lib.from_dict(ckpt.read_json(step, "config"), source=f"{ckpt.directory}/{step}")

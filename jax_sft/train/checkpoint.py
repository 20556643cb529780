"""Orbax checkpoints that carry a run across sessions.

One checkpoint step holds five items, written together (all processes) and atomically
(Orbax writes a tmp dir and renames it, so a failed save never touches the last good one):
  params     the trainable weights (the full model, or only the LoRA adapters)
  opt        {'step', 'opt_state', 'rng'}
  data_iter  the Grain iterator state (one file per process)
  config     the run's Config as JSON
  meta       step, lora, base weights reference, data manifest hash, param counts
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Optional

import grain
import grain.checkpoint  # registers grain's Orbax handler
import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import SingleDeviceSharding

from jax_sft import config as config_lib
from jax_sft.config import CheckpointConfig

PyTree = Any
# Config keys that change the shapes or meaning of saved weights; others may differ.
_SHAPE_KEYS = ("num_layers", "embed_dim", "num_heads", "num_kv_heads", "head_dim",
               "mlp_dim", "vocab_size", "attention_types", "sliding_window", "attn_softcap",
               "final_softcap", "query_scale", "qk_norm", "post_norms", "gating_layout")
_LORA_KEYS = ("enabled", "rank", "alpha", "targets")


class CheckpointError(ValueError):
  """A checkpoint that does not fit this run; the message lists what differs."""


def dir_size_mb(path: str) -> float:
  """Total size of the files under `path`, in MB."""
  total = 0
  for root, _, files in os.walk(path):
    total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
  return total / 1e6


def _abstract(tree: PyTree, sharding_tree: Optional[PyTree] = None) -> PyTree:
  """ShapeDtypeStructs (with shardings) to restore into."""
  if sharding_tree is None:
    dev = SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=dev), tree)
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      tree, sharding_tree)


def tree_diff(saved: PyTree, wanted: PyTree, limit: int = 10) -> list[str]:
  """Human lines naming paths that are missing, extra, or of another shape."""
  def flat(t):
    return {jax.tree_util.keystr(p): tuple(x.shape) for p, x in
            jax.tree_util.tree_flatten_with_path(t)[0]}
  a, b = flat(saved), flat(wanted)
  out = [f"{k}: only in the checkpoint" for k in sorted(a.keys() - b.keys())]
  out += [f"{k}: missing from the checkpoint" for k in sorted(b.keys() - a.keys())]
  out += [f"{k}: checkpoint shape {a[k]} != this run's {b[k]}"
          for k in sorted(a.keys() & b.keys()) if a[k] != b[k]]
  return out[:limit] + ([f"... and {len(out) - limit} more"] if len(out) > limit else [])


def config_diff(saved: dict, cfg: config_lib.Config) -> list[str]:
  """Lines naming model/lora keys whose saved value differs from `cfg`'s."""
  now = config_lib.to_dict(cfg)
  out = []
  for section, keys in (("model", _SHAPE_KEYS), ("lora", _LORA_KEYS)):
    for k in keys:
      a, b = saved.get(section, {}).get(k), now[section].get(k)
      if section == "lora" and k != "enabled" and not now["lora"]["enabled"]:
        continue
      if a != b:
        out.append(f"{section}.{k}: checkpoint has {a!r}, this run has {b!r}")
  return out


class Checkpointer:
  """Saves and restores one run's checkpoints under `directory` (an Orbax manager)."""

  def __init__(self, directory: str, cfg: CheckpointConfig = CheckpointConfig(),
               *, read_only: bool = False):
    self.directory = os.path.abspath(directory)
    self.cfg = cfg
    self.read_only = read_only
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None if read_only else cfg.keep, create=not read_only,
        read_only=read_only, enable_async_checkpointing=cfg.async_save and not read_only,
        cleanup_tmp_directories=not read_only)
    handlers = dict(params=ocp.StandardCheckpointHandler(), opt=ocp.StandardCheckpointHandler(),
                    config=ocp.JsonCheckpointHandler(), meta=ocp.JsonCheckpointHandler(),
                    data_iter=grain.checkpoint.CheckpointHandler())
    self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)
    self._last_save_time = time.monotonic()
    self._pending: Optional[int] = None

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
    self._report_pending()
    items = dict(
        params=ocp.args.StandardSave(state.params),
        opt=ocp.args.StandardSave({"step": state.step, "opt_state": state.opt_state,
                                   "rng": state.rng}),
        config=ocp.args.JsonSave(config_lib.to_dict(cfg)),
        meta=ocp.args.JsonSave(dict(meta, step=int(step))))
    if data_iter is not None:
      items["data_iter"] = grain.checkpoint.CheckpointSave(data_iter)
    self.manager.save(step, args=ocp.args.Composite(**items), force=True)
    self._last_save_time = time.monotonic()
    self._pending = step
    return True

  def _report_pending(self):
    if self._pending is not None and jax.process_index() == 0:
      path = os.path.join(self.directory, str(self._pending))
      if os.path.isdir(path):
        print(f"[checkpoint] step {self._pending}: {dir_size_mb(path):.1f} MB at {path}",
              flush=True)
    self._pending = None

  def wait(self):
    """Blocks until the async save in flight has been committed (raises its error)."""
    self.manager.wait_until_finished()
    self._report_pending()

  def close(self):
    self.manager.wait_until_finished()
    self._report_pending()
    self.manager.close()

  # --- restoring ----------------------------------------------------------------

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def read_json(self, step: int, name: str) -> dict:
    """The 'config' or 'meta' item of `step`."""
    return self.manager.restore(step, args=ocp.args.Composite(
        **{name: ocp.args.JsonRestore()}))[name]

  def check_compatible(self, step: int, cfg: config_lib.Config, params_abstract: PyTree):
    """Raises CheckpointError listing each differing config key and param path."""
    lines = config_diff(self.read_json(step, "config"), cfg)
    lines += tree_diff(self.saved_params_metadata(step), params_abstract)
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
    """Sets `data_iter` to where it was at `step`."""
    self.manager.restore(step, args=ocp.args.Composite(
        data_iter=grain.checkpoint.CheckpointRestore(data_iter)))

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


def is_run(path: str) -> bool:
  """True for a training run dir, its checkpoints dir, or one step's dir (not released weights)."""
  path = os.path.abspath(os.fspath(path))
  return (os.path.isdir(os.path.join(path, "checkpoints"))
          or os.path.exists(os.path.join(path, "run.yaml"))
          or "checkpoints" in os.path.normpath(path).split(os.sep))


def resolve(path: str) -> tuple[str, Optional[int]]:
  """(manager directory, step or None for latest) from a run dir, a checkpoints dir,
  or one step's dir."""
  path = os.path.abspath(path)
  if os.path.isdir(os.path.join(path, "checkpoints")):
    return os.path.join(path, "checkpoints"), None
  if os.path.isdir(os.path.join(path, "params")) and os.path.basename(path).isdigit():
    return os.path.dirname(path), int(os.path.basename(path))
  if not os.path.isdir(path):
    raise CheckpointError(f"checkpoint path not found: {path}")
  return path, None


def open_read_only(path: str) -> tuple[Checkpointer, int]:
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

"""Between the data pipeline and the step: steps per run, iterators, device batches.

Every process reads the same global stream and feeds only its own rows to the global
array (jax.make_array_from_process_local_data). Packing is cheap next to a train step,
and it buys exactness: the losses do not depend on the number of processes, and a run
resumed on a different host count continues the very same stream.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Iterator, Optional

import jax
import numpy as np

from jax_sft import config as config_lib
from jax_sft import storage
from jax_sft.data import loader
from jax_sft.data import prepare as prepare_lib
from jax_sft.train import mesh as mesh_lib

KEYS = ("inputs", "targets", "loss_mask", "segment_ids", "positions")


def localize(cfg: config_lib.Config) -> tuple[config_lib.Config, Optional[str]]:
  """(cfg with data.output_dir on this machine, the gs:// dir it mirrors or None).

  The prepared data is read by ArrayRecord and Grain, which need local files: a prepared
  dir in a bucket is copied down once (when it is there) and `prepare` publishes a new one
  back up.
  """
  out = cfg.data.output_dir
  if not storage.is_remote(out):
    return cfg, None
  local = storage.mirror_path(out)
  if not os.path.exists(local) and storage.exists(storage.join(out, "manifest.json")):
    local = storage.local_copy(out)
  return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, output_dir=local)), out


def prepare(cfg: config_lib.Config, publish_to: Optional[str] = None,
            force: bool = False) -> dict:
  """Runs (or reuses) `jax-sft prepare` for cfg.data; returns the manifest. With
  `publish_to` (a bucket dir, see `localize`) a new result is copied up there too."""
  manifest = prepare_lib.prepare(cfg.data, seed=cfg.seed, force=force)
  if publish_to and jax.process_index() == 0:
    remote = storage.join(publish_to, "manifest.json")
    remote_hash = (json.loads(storage.read_text(remote)).get("content_hash")
                   if storage.exists(remote) else None)
    if remote_hash != manifest.get("content_hash"):
      storage.upload(cfg.data.output_dir, publish_to)
  return manifest


def _epoch_policy(cfg: config_lib.Config) -> str | None:
  """The curriculum epoch policy in effect (None: no curriculum to keep)."""
  return loader.curriculum_epochs(cfg.data, cfg.train.shuffle, cfg.train.curriculum_epochs)


def _batches_available(cfg: config_lib.Config, manifest: dict) -> int:
  """Batches the train iterator yields over ceil(epochs) epochs (packing decides, so it
  is counted with the very same iterator settings), cached beside the prepared data."""
  epochs = max(1, math.ceil(cfg.train.epochs))
  key = "-".join(str(x) for x in (manifest.get("content_hash", manifest.get("hash", "")),
                                   cfg.data.max_seq_len, cfg.train.batch_size, cfg.seed,
                                   loader.shuffles(cfg.data, cfg.train.shuffle), epochs))
  if _epoch_policy(cfg) == "then_shuffle":  # the only stream older keys did not know
    key += "-then_shuffle"
  cache = os.path.join(cfg.data.output_dir, "batch_counts.json")
  known = {}
  if os.path.exists(cache):
    with open(cache, encoding="utf-8") as f:
      known = json.load(f)
  if key in known:
    return known[key]
  it = loader.make_iterator(cfg.data, "train", cfg.train.batch_size, cfg.data.max_seq_len,
                            epochs=epochs, seed=cfg.seed, shuffle=cfg.train.shuffle,
                            epoch_policy=cfg.train.curriculum_epochs)
  count = sum(1 for _ in it)
  known[key] = count
  try:
    with open(cache, "w", encoding="utf-8") as f:
      json.dump(known, f)
  except OSError:  # a read-only data dir is fine; we just count again next time
    pass
  return count


def total_steps(cfg: config_lib.Config, manifest: dict) -> int:
  """train.max_steps, or the batches in `epochs` epochs of packed rows (at least 1)."""
  if cfg.train.max_steps > 0:
    return cfg.train.max_steps
  available = _batches_available(cfg, manifest)
  epochs = max(1, math.ceil(cfg.train.epochs))
  return max(1, math.floor(available * cfg.train.epochs / epochs))


def train_iterator(cfg: config_lib.Config, steps: int) -> Iterator[dict]:
  """The global training stream (Grain iterator, checkpointable), enough epochs for `steps`."""
  epochs = max(1, math.ceil(cfg.train.epochs)) if cfg.train.max_steps <= 0 else None
  return loader.make_iterator(cfg.data, "train", cfg.train.batch_size, cfg.data.max_seq_len,
                              epochs=epochs, seed=cfg.seed, shuffle=cfg.train.shuffle,
                              epoch_policy=cfg.train.curriculum_epochs)


def _pad_rows(batch: dict, rows: int) -> dict:
  """Pads a short final batch with empty rows (segment 0, no loss)."""
  n = batch["inputs"].shape[0]
  if n == rows:
    return batch
  return {k: np.concatenate([v, np.zeros((rows - n,) + v.shape[1:], v.dtype)])
          for k, v in batch.items()}


def eval_batch_size(cfg: config_lib.Config, mesh) -> int:
  """train.eval_batch_size, or one row per data-parallel device (small held-out sets
  still fill a batch; the loader drops a short last one)."""
  return cfg.train.eval_batch_size or mesh_lib.batch_parallelism(mesh)


def eval_batches(cfg: config_lib.Config, batch_size: Optional[int] = None) -> Iterator[dict]:
  """Up to train.eval_batches batches of `batch_size` rows (default train.eval_batch_size
  or 1) of the held-out split, in order; the last batch is padded with empty rows
  (segment 0, no loss) so a held-out set smaller than one batch is still evaluated."""
  batch_size = batch_size or cfg.train.eval_batch_size or 1
  try:
    rows = loader.make_iterator(cfg.data, "eval", 1, cfg.data.max_seq_len,
                                epochs=1, seed=cfg.seed, shuffle=False)
  except FileNotFoundError:
    return
  group: list[dict] = []
  emitted = 0
  for row in rows:
    group.append({k: np.asarray(row[k])[0] for k in KEYS})
    if len(group) == batch_size:
      yield {k: np.stack([r[k] for r in group]) for k in KEYS}
      group, emitted = [], emitted + 1
      if emitted >= cfg.train.eval_batches:
        return
  if group:
    empty = {k: np.zeros_like(group[0][k]) for k in KEYS}
    group += [empty] * (batch_size - len(group))
    yield {k: np.stack([r[k] for r in group]) for k in KEYS}


def abstract_batch(cfg: config_lib.Config, mesh) -> dict:
  """ShapeDtypeStructs of one global train batch, for ahead-of-time compilation."""
  shape = (cfg.train.batch_size, cfg.data.max_seq_len)
  sh = mesh_lib.batch_sharding(mesh)
  dtypes = {"loss_mask": np.float32}
  return {k: jax.ShapeDtypeStruct(shape, dtypes.get(k, np.int32), sharding=sh) for k in KEYS}


def to_device(batch: dict, mesh, batch_size: int) -> dict:
  """This process's rows of a global host batch, as one global sharded array per key."""
  batch = _pad_rows({k: np.asarray(batch[k]) for k in KEYS}, batch_size)
  rows = mesh_lib.process_rows(batch_size)
  return mesh_lib.to_global({k: v[rows] for k, v in batch.items()}, mesh)

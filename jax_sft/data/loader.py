"""Grain input pipeline: shards -> order -> epochs -> shift -> pack -> batch.

Order: with `data.order: shuffle`, a global shuffle by seed (a new permutation each
epoch); with a curriculum (`prepare` wrote the split easy -> hard) none, and each epoch is
easy -> hard again (`restart`) or only the first one is (`then_shuffle`). Each example is
shifted (inputs = tokens[:-1], targets = tokens[1:]) before packing, so no target crosses
into the next example; Grain's best-fit packer then fills rows of `seq_len` with segment
ids and positions per example. Batches follow the shared contract: inputs, targets,
segment_ids, positions int32 and loss_mask float32, each [B, L].
The iterator's get_state()/set_state() (or Orbax via grain's PyGrainCheckpointSave/Restore)
resumes at the exact next batch.
"""

from __future__ import annotations

from typing import Any, Optional

import grain
import grain.experimental as grain_exp
import numpy as np

from jax_sft.data import shards
from jax_sft.config import DataConfig

FEATURES = ("inputs", "targets", "loss_mask")


def shift_example(tokens: np.ndarray, prompt_len: int, max_len: int = 0) -> dict[str, np.ndarray]:
  """Next-token pairs of one example; loss on every target inside the model turn.

      shift_example([BOS, u, u, m, m, EOT], prompt_len=3)
      -> inputs [BOS, u, u, m, m], targets [u, u, m, m, EOT], loss_mask [0, 0, 1, 1, 1]
  """
  tokens = np.asarray(tokens, np.int32)
  inputs, targets = tokens[:-1], tokens[1:]
  loss_mask = (np.arange(1, len(tokens)) >= prompt_len).astype(np.float32)
  if max_len and len(inputs) > max_len:  # only when the loader's seq_len < the prepared max
    inputs, targets, loss_mask = inputs[:max_len], targets[:max_len], loss_mask[:max_len]
  return {"inputs": inputs, "targets": targets, "loss_mask": loss_mask}


class _Parse(grain.transforms.Map):

  def __init__(self, seq_len: int):
    self.seq_len = seq_len

  def map(self, data: bytes) -> dict[str, np.ndarray]:
    tokens, prompt_len = shards.deserialize_tokens(data)
    return shift_example(tokens, prompt_len, self.seq_len)


def _to_batch(packed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  return {
      "inputs": packed["inputs"].astype(np.int32),
      "targets": packed["targets"].astype(np.int32),
      "loss_mask": packed["loss_mask"].astype(np.float32),
      "segment_ids": packed["inputs_segment_ids"].astype(np.int32),
      "positions": packed["inputs_positions"].astype(np.int32),
  }


def shuffles(cfg: DataConfig, shuffle: Optional[bool] = None) -> bool:
  """Whether the loader shuffles globally: `shuffle` (the trainer's train.shuffle) when set,
  else data.shuffle_loader when set, else only when prepare shuffled (`order: shuffle`).

      order shuffle,           shuffle_loader None, shuffle None  -> True
      order curriculum_length, shuffle_loader None, shuffle None  -> False
      order shuffle,           shuffle_loader None, shuffle False -> False
  """
  for flag in (shuffle, cfg.shuffle_loader):
    if flag is not None:
      return bool(flag)
  return cfg.order == "shuffle"


def curriculum_epochs(cfg: DataConfig, shuffle: Optional[bool] = None,
                      policy: str = "restart") -> Optional[str]:
  """The curriculum epoch policy in effect ("restart" or "then_shuffle"), or None when
  there is no curriculum to keep (`order: shuffle`, or the loader shuffles anyway)."""
  if cfg.order == "shuffle" or shuffles(cfg, shuffle):
    return None
  return str(policy)


class _FirstEpochInOrder(grain.MapDataset):
  """Epoch 0 as written (the curriculum), every later epoch a fresh seeded permutation.

  Indices run past one epoch, as under `repeat`: index i of epoch i // n reads the
  written order in epoch 0 and the shuffled view (Grain's per-epoch reseeding) after it.
  """

  def __init__(self, ordered: grain.MapDataset, seed: int):
    super().__init__(ordered)
    self._shuffled = ordered.shuffle(seed=seed)

  def __len__(self) -> int:
    return len(self._parent)

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    return (self._parent if index < len(self._parent) else self._shuffled)[index]


def make_dataset(cfg: DataConfig, split: str, batch_size: int, seq_len: int, *,
                 epochs: Optional[int] = 1, seed: int = 0, shuffle: Optional[bool] = None,
                 epoch_policy: str = "restart", process_index: int = 0,
                 process_count: int = 1) -> grain.IterDataset:
  """The batched Grain IterDataset (see make_iterator)."""
  paths = shards.shard_paths(cfg.output_dir, split)
  if not paths:
    raise FileNotFoundError(f"no {split} shards in {cfg.output_dir}: run `jax-sft prepare` first")
  policy, shuffle = curriculum_epochs(cfg, shuffle, epoch_policy), shuffles(cfg, shuffle)
  ds = grain.MapDataset.source(grain.sources.ArrayRecordDataSource(paths))
  if shuffle:
    ds = ds.shuffle(seed=seed)  # a fresh permutation each epoch (Grain reseeds per epoch)
  elif policy == "then_shuffle":
    ds = _FirstEpochInOrder(ds, seed)
  ds = ds.repeat(epochs if epochs else None)
  ds = ds[process_index::process_count]  # each JAX process reads only its share
  ds = ds.map(_Parse(seq_len))
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=64))
  # Rows leave the packer in the order their bins opened unless shuffle_bins: with a
  # curriculum the packed stream keeps the written order (docs/data.md has the measure).
  it = grain_exp.BestFitPackIterDataset(
      it, length_struct={k: seq_len for k in FEATURES}, num_packing_bins=cfg.packing_bins,
      seed=seed, shuffle_bins=shuffle)
  return it.batch(batch_size, drop_remainder=True).map(_to_batch)


def make_iterator(cfg: DataConfig, split: str, batch_size: int, seq_len: int, *,
                  epochs: Optional[int] = 1, seed: int = 0, shuffle: Optional[bool] = None,
                  epoch_policy: str = "restart", process_index: int = 0,
                  process_count: int = 1) -> Any:
  """A Grain DatasetIterator of batches (dicts of [batch_size, seq_len] arrays).

  epochs None or 0 repeats forever; shuffle None follows the config (`shuffles`: off for
  curricula); epoch_policy (train.curriculum_epochs) says what a curriculum's later
  epochs are: "restart" (easy -> hard again) or "then_shuffle"; get_state()/set_state()
  save and restore the exact position.
  """
  return iter(make_dataset(cfg, split, batch_size, seq_len, epochs=epochs, seed=seed,
                           shuffle=shuffle, epoch_policy=epoch_policy,
                           process_index=process_index, process_count=process_count))

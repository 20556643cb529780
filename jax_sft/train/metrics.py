"""Run metrics: metrics.jsonl, TensorBoard event files, and the loss-curve PNG.

Only process 0 writes. A resumed run appends to the same metrics.jsonl; the plot keeps
the last value logged for each step, so a replayed step does not draw twice.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Mapping

import jax
from tensorboardX import SummaryWriter

from jax_sft import storage


class MetricsWriter:
  """Appends one JSON line per logged step and mirrors scalars to TensorBoard.

  A remote run dir (gs://) cannot be appended to: the files are written to a local mirror
  and uploaded by `sync()` (at every checkpoint and at the end).
  """

  def __init__(self, run_dir: str):
    self.run_dir = run_dir
    self.enabled = jax.process_index() == 0
    self.local_dir = local_mirror(run_dir)
    self.path = os.path.join(self.local_dir, "metrics.jsonl")
    self._tb = None
    if self.enabled:
      os.makedirs(self.local_dir, exist_ok=True)
      remote_metrics = storage.join(run_dir, "metrics.jsonl")
      if storage.is_remote(run_dir) and storage.exists(remote_metrics):  # a resumed run
        with open(self.path, "w", encoding="utf-8") as f:
          f.write(storage.read_text(remote_metrics))
      self._tb = SummaryWriter(os.path.join(self.local_dir, "tensorboard"))

  def sync(self) -> None:
    """Uploads metrics.jsonl, TensorBoard events and the plot to a remote run dir."""
    if self.enabled and storage.is_remote(self.run_dir):
      self._tb.flush()
      for name in ("metrics.jsonl", "tensorboard", "loss.png"):
        if os.path.exists(os.path.join(self.local_dir, name)):
          storage.upload(os.path.join(self.local_dir, name), storage.join(self.run_dir, name))

  def write(self, step: int, split: str, values: Mapping[str, float]) -> None:
    """One line {'step', 'split', **values} and a TensorBoard scalar per value."""
    if not self.enabled:
      return
    row = {"step": int(step), "split": split}
    row.update({k: float(v) for k, v in values.items()})
    with open(self.path, "a", encoding="utf-8") as f:
      f.write(json.dumps(row) + "\n")
    for k, v in values.items():
      self._tb.add_scalar(f"{split}/{k}", float(v), int(step))

  def close(self) -> None:
    if self._tb is not None:
      self.sync()
      self._tb.close()
      self._tb = None


def local_mirror(run_dir: str) -> str:
  """Where a run's metrics are written locally: the run dir, or a cache dir for a URL."""
  if not storage.is_remote(run_dir):
    return run_dir
  key = hashlib.blake2b(run_dir.encode(), digest_size=8).hexdigest()
  return os.path.join(storage.cache_dir(), "runs", key)


def read(path: str) -> list[dict]:
  """All rows of a metrics.jsonl."""
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def _pyplot():
  """matplotlib's pyplot on the Agg backend (no display): heavy, so loaded when first plotted."""
  import matplotlib  # pylint: disable=g-import-not-at-top  (heavy; loaded when first plotted)
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def plot_losses(run_dir: str) -> str | None:
  """Writes loss.png (train and eval loss per step) beside metrics.jsonl; returns its path."""
  run_dir = local_mirror(run_dir)
  path = os.path.join(run_dir, "metrics.jsonl")
  if jax.process_index() != 0 or not os.path.exists(path):
    return None
  plt = _pyplot()
  curves: dict[str, dict[int, float]] = {}
  for row in read(path):
    if "loss" in row:
      curves.setdefault(row["split"], {})[row["step"]] = row["loss"]
  fig, ax = plt.subplots(figsize=(7, 4))
  for split, points in sorted(curves.items()):
    steps = sorted(points)
    ax.plot(steps, [points[s] for s in steps], marker="." if split != "train" else None,
            label=f"{split} loss")
  ax.set_xlabel("step")
  ax.set_ylabel("cross-entropy (nats/token)")
  ax.set_title(os.path.basename(os.path.abspath(run_dir)))
  ax.grid(alpha=0.3)
  ax.legend()
  out = os.path.join(run_dir, "loss.png")
  fig.tight_layout()
  fig.savefig(out, dpi=100)
  plt.close(fig)
  return out

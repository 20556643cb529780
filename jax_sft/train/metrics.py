"""Run metrics: metrics.jsonl, TensorBoard event files, and the loss-curve PNG.

Only process 0 writes. A resumed run appends to the same metrics.jsonl; the plot keeps
the last value logged for each step, so a replayed step does not draw twice.
"""

from __future__ import annotations

import json
import os
from typing import Mapping

import jax
from tensorboardX import SummaryWriter


class MetricsWriter:
  """Appends one JSON line per logged step and mirrors scalars to TensorBoard."""

  def __init__(self, run_dir: str):
    self.run_dir = run_dir
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(run_dir, "metrics.jsonl")
    self._tb = None
    if self.enabled:
      os.makedirs(run_dir, exist_ok=True)
      self._tb = SummaryWriter(os.path.join(run_dir, "tensorboard"))

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
      self._tb.close()


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
  """Writes {run_dir}/loss.png (train and eval loss per step); returns its path."""
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

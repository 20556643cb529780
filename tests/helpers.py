"""Small helpers the trainer tests share (the tests folder is on sys.path: tests/conftest.py)."""

import json
import os

import jax
import numpy as np
import yaml

from jax_sft import config as config_lib
from jax_sft.train import stopping


def per_step(run_dir: str, key: str = "loss", split: str = "train") -> dict[int, float]:
  """{step: value} from a run's metrics.jsonl; a step logged again (replayed after a resume
  from an earlier checkpoint) keeps its last value."""
  out = {}
  for line in open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8"):
    row = json.loads(line)
    if row["split"] == split and key in row:
      out[row["step"]] = row[key]
  return out


def leaves(tree) -> list[np.ndarray]:
  return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]


def stop_before_step(monkeypatch, k: int) -> None:
  """Makes the loop stop (as on a signal) before running step k+1."""
  calls = {"n": 0}
  real = stopping.StopFlags.should_stop

  def should_stop(self, step_s, save_s):
    calls["n"] += 1
    return "test stop" if calls["n"] == k + 1 else real(self, step_s, save_s)
  monkeypatch.setattr(stopping.StopFlags, "should_stop", should_stop)


def write_config(path, cfg, drop: tuple[str, ...] = ()) -> str:
  """`cfg` as a YAML file for the CLI, keys in the config's own order: data sources are mixed
  in their listed order (part of the prepared data's hash), which sorted keys would change."""
  raw = {k: v for k, v in config_lib.to_dict(cfg).items() if k not in drop}
  with open(path, "w", encoding="utf-8") as f:
    f.write(yaml.safe_dump(raw, sort_keys=False))
  return str(path)

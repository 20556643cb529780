"""Safe resume: faults end with a bitwise-exact continuation from the last good step.

Each test compares with one uninterrupted run of the same config (`whole`): the per-step
losses of the interrupted-then-resumed run, taken at the last time each step was logged,
and its final weights must equal it bitwise, so no example was lost or repeated.
"""

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jax_sft.train import checkpoint as ckpt_lib
from jax_sft.train import loop, weights
from helpers import leaves, per_step, stop_before_step, write_config

STEPS = ["train.max_steps=8", "checkpoint.every_steps=2", "checkpoint.keep=4"]


def _assert_same_as(reference_dir, run_dir):
  assert per_step(run_dir) == per_step(reference_dir)  # bitwise
  _, a, _ = weights.load_for_inference(reference_dir)
  _, b, _ = weights.load_for_inference(run_dir)
  for x, y in zip(leaves(a), leaves(b)):
    np.testing.assert_array_equal(x, y)


def _truncate_largest_file(step_dir):
  files = [os.path.join(r, f) for r, _, fs in os.walk(step_dir) for f in fs]
  victim = max(files, key=os.path.getsize)
  with open(victim, "r+b") as f:
    f.truncate(os.path.getsize(victim) // 2)
  return victim


def test_corrupted_newest_checkpoint_falls_back_to_the_last_good_one(make_cfg, monkeypatch,
                                                                      capsys):
  ref = make_cfg("whole", *STEPS)
  loop.train(ref, progress=False)
  cfg = make_cfg("corrupt", *STEPS)
  with monkeypatch.context() as m:
    stop_before_step(m, 6)
    assert loop.train(cfg, progress=False).end_step == 6
  ckpt_dir = os.path.join(cfg.run_dir, "checkpoints")
  _truncate_largest_file(os.path.join(ckpt_dir, "6"))
  capsys.readouterr()
  result = loop.train(cfg, resume=True, progress=False)
  out = capsys.readouterr().out
  assert "step 6" in out and "cannot be read back" in out and "moved step 6 aside" in out
  assert result.start_step == 4 and result.end_step == 8
  assert any(d.startswith("6.unreadable-") for d in os.listdir(ckpt_dir))
  _assert_same_as(ref.run_dir, cfg.run_dir)


def test_resume_step_picks_an_older_checkpoint(make_cfg, monkeypatch):
  ref = make_cfg("whole", *STEPS)
  loop.train(ref, progress=False)
  cfg = make_cfg("pick", *STEPS)
  with monkeypatch.context() as m:
    stop_before_step(m, 6)
    loop.train(cfg, progress=False)
  with pytest.raises(ckpt_lib.CheckpointError, match="--resume-step 5: no such checkpoint"):
    loop.train(cfg, resume=True, resume_step=5, progress=False)
  result = loop.train(cfg, resume=True, resume_step=2, progress=False)
  assert (result.start_step, result.end_step) == (2, 8)
  assert per_step(cfg.run_dir) == per_step(ref.run_dir)


@pytest.mark.parametrize("override, key", [
    ("seed=7", "seed"),
    ("data.packing_bins=16", "data.packing_bins"),
    ("train.shuffle=false", "train.shuffle"),
    ("train.batch_size=16", "train.batch_size"),
])
def test_resume_refuses_another_data_stream(make_cfg, monkeypatch, override, key):
  cfg = make_cfg("stream", "train.max_steps=2")
  loop.train(cfg, progress=False)
  with pytest.raises(ckpt_lib.CheckpointError, match=f"(?s)another data stream.*{key}"):
    loop.train(make_cfg("stream", "train.max_steps=4", override), resume=True, progress=False)


def _write(cfg, path):
  write_config(path, cfg)
  return str(path)


def _metric_lines(path):
  return sum(1 for _ in open(path)) if os.path.exists(path) else 0


@pytest.mark.slow
def test_sigkill_at_random_steps_then_resume_is_exact(make_cfg, tmp_path):
  # SIGKILL gives no chance to save: the run continues from the last periodic checkpoint,
  # re-doing the steps after it. Two kills at random points, then a resume to the end.
  ref = make_cfg("whole", *STEPS)
  loop.train(ref, progress=False)
  cfg = make_cfg("killed", *STEPS)
  path = _write(cfg, tmp_path / "killed.yaml")
  metrics = os.path.join(cfg.run_dir, "metrics.jsonl")
  rng = random.Random(0)
  for attempt in range(2):
    args = [sys.executable, "-m", "jax_sft.cli", "train", path, "--no-progress"]
    if attempt:
      args.append("--resume")
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = _metric_lines(metrics) + rng.randint(2, 4)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None and _metric_lines(metrics) < target:
      time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
  result = loop.train(cfg, resume=True, progress=False)
  assert result.end_step == 8 and result.start_step < 8
  _assert_same_as(ref.run_dir, cfg.run_dir)


def test_full_disk_during_a_save_then_resume_is_exact(make_cfg, monkeypatch):
  ref = make_cfg("whole", *STEPS)
  loop.train(ref, progress=False)
  cfg = make_cfg("full_disk", *STEPS, "checkpoint.async_save=false")
  real_save = ckpt_lib.Checkpointer.save

  def save(self, step, *args, **kwargs):
    if step == 6:
      raise OSError(28, "No space left on device")
    return real_save(self, step, *args, **kwargs)
  with monkeypatch.context() as m:
    m.setattr(ckpt_lib.Checkpointer, "save", save)
    with pytest.raises(OSError, match="No space left"):
      loop.train(cfg, progress=False)
  assert ckpt_lib.open_read_only(cfg.run_dir)[1] == 4
  result = loop.train(cfg, resume=True, progress=False)
  assert (result.start_step, result.end_step) == (4, 8)
  _assert_same_as(ref.run_dir, cfg.run_dir)

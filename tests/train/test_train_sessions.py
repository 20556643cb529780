"""Sessions: exact resume, time budget, warm start from a read-only dir, LoRA."""

import os
import stat
import time

import jax
import numpy as np
import pytest

from jax_sft.train import checkpoint as ckpt_lib
from jax_sft.train import loop, stopping, weights
from helpers import leaves, stop_before_step


def test_resume_is_bitwise_exact(make_cfg, monkeypatch):
  whole = loop.train(make_cfg("whole"), progress=False)
  assert whole.end_step == 6 and len(whole.losses) == 6

  cfg = make_cfg("split")
  with monkeypatch.context() as m:
    stop_before_step(m, 3)
    first = loop.train(cfg, progress=False)
  assert (first.end_step, first.stopped_because) == (3, "test stop")
  second = loop.train(cfg, resume=True, progress=False)
  assert second.start_step == 3 and second.end_step == 6

  assert first.losses + second.losses == whole.losses  # bitwise, not approximately
  _, p_whole, _ = weights.load_for_inference(make_cfg("whole").run_dir)
  _, p_split, _ = weights.load_for_inference(cfg.run_dir)
  for a, b in zip(leaves(p_whole), leaves(p_split)):
    np.testing.assert_array_equal(a, b)


def test_time_budget_stops_with_a_checkpoint(make_cfg, monkeypatch):
  # When the first step is about to run, the session has 3 s of its hour left
  # (the real clock then decides: compile, steps, the final save).
  real = stopping.StopFlags.should_stop
  deadline = {}

  def should_stop(self, step_s, save_s):
    if not deadline:
      self.start = time.monotonic() - 3600 + 3
      deadline["t"] = self.start + 3600
    return real(self, step_s, save_s)
  monkeypatch.setattr(stopping.StopFlags, "should_stop", should_stop)
  cfg = make_cfg("budget", "train.max_steps=100000", "train.time_budget=1h",
                 "checkpoint.every_steps=0")
  result = loop.train(cfg, progress=False)
  assert "time budget" in result.stopped_because
  assert 0 < result.end_step < 100000
  # Stopped with the final checkpoint written (end-of-run eval and plots are skipped).
  assert time.monotonic() < deadline["t"] + 1.0
  ckpt, step = ckpt_lib.open_read_only(cfg.run_dir)
  assert step == result.end_step


def test_stop_flags_leave_room_for_step_and_save():
  flags = stopping.StopFlags("10s", start=time.monotonic() - 9.0)
  assert flags.should_stop(step_s=0.1, save_s=0.1) is None
  assert "time budget" in flags.should_stop(step_s=0.5, save_s=0.6)
  assert stopping.parse_duration("8h30m") == 30600
  with pytest.raises(ValueError, match="train.time_budget"):
    stopping.parse_duration("8 hours")


def test_warm_start_from_read_only_dir(make_cfg):
  src_cfg = make_cfg("session1", "train.max_steps=3")
  loop.train(src_cfg, progress=False)
  ckpt_dir = os.path.join(src_cfg.run_dir, "checkpoints")
  for root, dirs, files in os.walk(ckpt_dir):
    for name in dirs + files:
      p = os.path.join(root, name)
      os.chmod(p, os.stat(p).st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
  os.chmod(ckpt_dir, 0o555)
  try:
    _, src_params, _ = weights.load_for_inference(src_cfg.run_dir)
    # Session 2: another data order (seed) and schedule, Adam moments carried over.
    cfg = make_cfg("session2", "seed=7", "train.max_steps=2", "train.learning_rate=0.0",
                   "train.weight_decay=0.0")
    result = loop.train(cfg, init_from=ckpt_dir, init_optimizer=True, progress=False)
    assert result.start_step == 0 and result.end_step == 2
    _, params, _ = weights.load_for_inference(cfg.run_dir)
    # lr 0: the new run's weights are exactly the warm start's.
    for a, b in zip(leaves(src_params), leaves(params)):
      np.testing.assert_array_equal(a, b)
  finally:
    os.chmod(ckpt_dir, 0o755)


def test_lora_trains_adapters_only_and_base_stays_bitwise(make_cfg):
  cfg = make_cfg("lora", "lora.enabled=true", "lora.rank=4", "train.max_steps=3")
  before = jax.device_get(weights.load_base(cfg))  # the base the run starts from
  held = {}  # ... and the frozen weights the run itself held after its last step
  hooks = loop.Hooks(at_end=lambda c, params, lora: held.update(base=params, lora=lora))
  result = loop.train(cfg, progress=False, hooks=hooks)
  assert result.end_step == 3 and held["lora"] is not None
  for a, b in zip(leaves(before), leaves(held["base"])):
    np.testing.assert_array_equal(a, b)
  run_cfg, base, adapters = weights.load_for_inference(cfg.run_dir)
  assert run_cfg.lora.enabled and adapters is not None
  bs = [np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(adapters)[0]
        if jax.tree_util.keystr(p).endswith("b']")]
  assert bs and any(np.abs(b).max() > 0 for b in bs)  # B started at zero and moved
  # The checkpoint holds adapters only: no embedding in it.
  ckpt, step = ckpt_lib.open_read_only(cfg.run_dir)
  assert "embedder" not in ckpt.saved_params_metadata(step)


def test_resume_with_another_model_names_the_key(make_cfg):
  cfg = make_cfg("mismatch", "train.max_steps=1")
  loop.train(cfg, progress=False)
  other = make_cfg("mismatch", "train.max_steps=2", "model.embed_dim=48")
  with pytest.raises(ckpt_lib.CheckpointError, match=r"model\.embed_dim: checkpoint has 32"):
    loop.train(other, resume=True, progress=False)


def test_warm_start_from_an_export_is_weights_only(make_cfg, tmp_path, capsys):
  from jax_sft.train import export as export_lib
  src = make_cfg("s1", "train.max_steps=3")
  loop.train(src, progress=False)
  export = export_lib.export(src.run_dir, "flax", str(tmp_path / "export"))
  with pytest.raises(ckpt_lib.CheckpointError, match="holds no optimizer state"):
    loop.train(make_cfg("s2_bad", "train.max_steps=1"), init_from=export, init_optimizer=True,
               progress=False)
  cfg = make_cfg("s2", "train.max_steps=2", "train.learning_rate=0.0", "train.weight_decay=0.0")
  capsys.readouterr()
  loop.train(cfg, init_from=export, progress=False)
  assert "weights only" in capsys.readouterr().out
  _, exported, _ = weights.load_for_inference(src.run_dir)
  _, params, _ = weights.load_for_inference(cfg.run_dir)
  for a, b in zip(leaves(exported), leaves(params)):  # lr 0: the export's weights, exactly
    np.testing.assert_array_equal(a, b)

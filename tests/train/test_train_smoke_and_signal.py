"""The main job (configs/smoke.yaml overfits) and SIGTERM mid-run, then resume."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from jax_sft.train import checkpoint as ckpt_lib
from jax_sft.train import loop
from helpers import write_config

from conftest import SMOKE


@pytest.mark.slow
def test_smoke_config_overfits(tmp_path):
  # As on a fresh CPU machine: one device, nothing prepared yet.
  run_dir, data_dir = tmp_path / "run", tmp_path / "data"
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
  proc = subprocess.run([sys.executable, "-m", "jax_sft.cli", "train", SMOKE, f"run_dir={run_dir}",
                         f"data.output_dir={data_dir}", "--no-progress"],
                        capture_output=True, text=True, env=env, timeout=600)
  out = proc.stdout
  assert proc.returncode == 0, (out + proc.stderr)[-3000:]
  rows = [json.loads(l) for l in open(run_dir / "metrics.jsonl")]
  train = [r for r in rows if r["split"] == "train"]
  evals = [r for r in rows if r["split"] == "eval"]
  assert train[-1]["loss"] < 0.5 * train[0]["loss"], (train[0], train[-1])
  assert evals and evals[-1]["loss"] < evals[0]["loss"]
  assert (run_dir / "loss.png").stat().st_size > 1000
  assert any(f.startswith("events") for f in os.listdir(run_dir / "tensorboard"))
  assert "finished" in out and ckpt_lib.open_read_only(str(run_dir))[1] == train[-1]["step"]
  assert "Q:" in out or "generations skipped" in out


def test_sigterm_checkpoints_and_exits_zero_then_resumes(make_cfg, tmp_path):
  cfg = make_cfg("sig", "train.max_steps=100000", "checkpoint.every_steps=0")
  path = tmp_path / "sig.yaml"
  write_config(path, cfg)
  proc = subprocess.Popen([sys.executable, "-m", "jax_sft.cli", "train", str(path), "--no-progress"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  metrics = os.path.join(cfg.run_dir, "metrics.jsonl")
  deadline = time.monotonic() + 180
  while time.monotonic() < deadline and proc.poll() is None:
    if os.path.exists(metrics) and sum(1 for _ in open(metrics)) >= 2:
      break
    time.sleep(0.2)
  proc.send_signal(signal.SIGTERM)
  out = proc.communicate(timeout=120)[0]
  assert proc.returncode == 0, out[-3000:]
  assert "received SIGTERM" in out
  _, step = ckpt_lib.open_read_only(cfg.run_dir)
  assert 2 <= step < 100000

  resumed = loop.train(make_cfg("sig", f"train.max_steps={step + 2}", "checkpoint.every_steps=0"),
                       resume=True, progress=False)
  assert (resumed.start_step, resumed.end_step) == (step, step + 2)

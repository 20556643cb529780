"""Multi-host end to end: the real `jax-sft train`, 2 processes x 4 CPU devices (gloo).

Checkpoints are written once by the two processes together; the run resumes on 2
processes and on 1 process x 8 devices (another host count); the end-of-run generations
and the eval report run without a crash.
"""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from jax_sft.train import checkpoint as ckpt_lib
from helpers import per_step, write_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _train(path, processes, *extra):
  """`jax-sft train` on `processes` processes sharing 8 CPU devices; their outputs."""
  port = _free_port()
  procs = []
  for i in range(processes):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={8 // processes}",
               JAX_PLATFORMS="cpu")
    if processes > 1:
      env.update(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES=str(processes),
                 JAX_PROCESS_ID=str(i))
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "jax_sft.cli", "train", str(path), "--no-progress", *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO))
  outs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-4000:]
  return outs


@pytest.mark.slow
def test_two_processes_train_resume_elsewhere_and_evaluate(make_cfg, tmp_path):
  # A constant learning rate: the run is extended (max_steps 4 -> 6 -> 8) without changing it.
  flat_lr = ["train.schedule=constant", "train.warmup_ratio=0"]
  cfg = make_cfg("multi", *flat_lr, "train.max_steps=4", "checkpoint.every_steps=2", "checkpoint.keep=4",
                 "train.generations_at_end=2", "train.generation_max_new_tokens=8",
                 "eval.at_end=true", "eval.num_prompts=4", "eval.batch_size=4",
                 "eval.max_new_tokens=8", "eval.loss_batches=1")
  path = tmp_path / "multi.yaml"
  write_config(path, cfg)

  first = _train(path, 2)
  assert "Q:" in first[0] and "eval report" in first[0]  # generations and the report, on host 0
  assert os.path.exists(os.path.join(cfg.run_dir, "eval", "report.json"))
  ckpt_dir = os.path.join(cfg.run_dir, "checkpoints")
  assert sorted(d for d in os.listdir(ckpt_dir) if d.isdigit()) == ["2", "4"]  # written once

  _train(path, 2, "--resume", "train.max_steps=6")  # the same host count
  _train(path, 1, "--resume", "train.max_steps=8")  # another host count
  assert ckpt_lib.open_read_only(cfg.run_dir)[1] == 8

  one = make_cfg("single", *flat_lr, "train.max_steps=8", "checkpoint.every_steps=0")
  one_path = tmp_path / "single.yaml"
  write_config(one_path, one)
  _train(one_path, 1)
  got, want = per_step(cfg.run_dir), per_step(one.run_dir)
  assert sorted(got) == sorted(want) == list(range(1, 9))
  # Collectives sum in another order across processes: float32 rounding only.
  np.testing.assert_allclose([got[s] for s in range(1, 9)], [want[s] for s in range(1, 9)],
                             rtol=2e-5)

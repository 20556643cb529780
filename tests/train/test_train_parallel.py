"""The same losses on 1 device, on 8 sharded devices, and on 2 processes x 4 devices."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from jax_sft.data import loader
from jax_sft.train import builder, checkpoint as ckpt_lib, data_feed, session
from jax_sft.train import mesh as mesh_lib

WORKER = os.path.join(os.path.dirname(__file__), "parallel_worker.py")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _run(n: int, ckpt_dir) -> list[float]:
  port = str(_free_port())
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  procs = [subprocess.Popen([sys.executable, WORKER, str(n), str(i), port, str(ckpt_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
           for i in range(n)]
  outs = [p.communicate(timeout=240)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
  all_losses = [json.loads(line.split(" ", 1)[1]) for out in outs
                for line in out.splitlines() if line.startswith("LOSSES ")]
  assert len(all_losses) == n and all(l == all_losses[0] for l in all_losses)
  return all_losses[0]


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
  one = _run(1, tmp_path / "one")
  two = _run(2, tmp_path / "two")
  # Same global batch, same math; only the collectives' reduction order differs.
  np.testing.assert_allclose(two, one, rtol=2e-5)
  assert one[-1] < one[0]
  assert os.path.isdir(tmp_path / "two" / "3" / "params")


def test_eight_sharded_devices_match_one(make_cfg, assert_close):
  def losses(devices, name):
    cfg = make_cfg(name, "train.grad_accum=2")
    trainer = builder.build(cfg, mesh_lib.make_mesh(cfg.mesh, devices), total_steps=3)
    mesh = trainer.mesh
    start = session.build(trainer, ckpt_lib.Checkpointer(cfg.run_dir + "/ck"),
                          resume=False, init_from=None, init_optimizer=False)
    fn = trainer.train_step
    it = loader.make_iterator(cfg.data, "train", 8, cfg.data.max_seq_len, epochs=1, seed=0,
                              shuffle=False)
    state, out = start.state, []
    for _ in range(3):
      state, m = fn(state, start.frozen, data_feed.to_device(next(it), mesh, 8))
      out.append(float(m["loss"]))
    return out, jax.device_get(state.params)

  l1, p1 = losses(jax.devices()[:1], "one")
  l8, p8 = losses(jax.devices(), "eight")
  # float32 sums in another order: equal to ~1e-6 relative; 1e-5 is the stated tolerance.
  np.testing.assert_allclose(l8, l1, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8)):
    assert_close(a, b, rel=1e-4)

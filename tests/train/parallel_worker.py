"""Trains 3 steps of a tiny Gemma on fixed synthetic batches; prints the losses as JSON.

  python parallel_worker.py NUM_PROCESSES PROCESS_ID PORT CKPT_DIR
Each process owns 8 / NUM_PROCESSES simulated CPU devices and feeds its rows of the
global batch (gloo collectives on loopback when NUM_PROCESSES > 1).
"""

import json
import os
import sys

n, i, port, ckpt_dir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={8 // n}"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

if n > 1:
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=n, process_id=i)

import numpy as np  # noqa: E402

from jax_sft import config as config_lib  # noqa: E402
from jax_sft.train import builder, checkpoint as ckpt_lib, data_feed  # noqa: E402
from jax_sft.train import mesh as mesh_lib, session  # noqa: E402

cfg = config_lib.from_dict({
    "model": {"preset": "tiny_gemma2", "vocab_size": 256, "num_layers": 2,
              "attention_types": ["local", "global"], "loss_chunk": 16},
    "train": {"batch_size": 8, "learning_rate": 1e-2, "xla_opt_level": 0},
    "mesh": {"data": 2, "fsdp": -1}, "data": {"max_seq_len": 32}})
mesh = mesh_lib.make_mesh(cfg.mesh)
mesh_lib.check_batch(mesh, cfg.train.batch_size)
trainer = builder.build(cfg, mesh, total_steps=3)
ckpt = ckpt_lib.Checkpointer(ckpt_dir, cfg.checkpoint)
start = session.build(trainer, ckpt, resume=False, init_from=None, init_optimizer=False)
fn = trainer.train_step
rng = np.random.default_rng(0)
state, losses = start.state, []
for _ in range(3):
  shape = (8, 32)
  batch = {"inputs": rng.integers(1, 256, shape), "targets": rng.integers(1, 256, shape),
           "loss_mask": (rng.random(shape) > 0.25).astype(np.float32),
           "segment_ids": np.ones(shape, np.int32),
           "positions": np.tile(np.arange(32), (8, 1))}
  batch = {k: v.astype(np.float32 if k == "loss_mask" else np.int32) for k, v in batch.items()}
  state, m = fn(state, start.frozen, data_feed.to_device(batch, mesh, 8))
  losses.append(float(m["loss"]))
ckpt.save(3, state, None, cfg, {"processes": n})  # written by all processes together
ckpt.close()
print("LOSSES " + json.dumps(losses), flush=True)

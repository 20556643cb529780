"""The one trainer builder: its step compiles once for a whole run of real batches."""

import jax

from jax_sft.data import loader
from jax_sft.train import builder, data_feed, mesh as mesh_lib, weights


def test_train_step_compiles_once_over_real_batches(make_cfg):
  cfg = make_cfg("once")
  trainer = builder.build(cfg, mesh_lib.make_mesh(cfg.mesh), total_steps=4)
  state = trainer.init_state(weights.load_base(cfg, shardings=trainer.base_sh), donate=True)
  it = loader.make_iterator(cfg.data, "train", cfg.train.batch_size, cfg.data.max_seq_len,
                            epochs=None, seed=cfg.seed)
  losses = []
  for _ in range(4):  # packed batches of different contents and loss-token counts
    batch = data_feed.to_device(next(it), trainer.mesh, cfg.train.batch_size)
    state, m = trainer.train_step(state, {}, batch)
    losses.append(float(m["loss"]))
  assert trainer.train_step._cache_size() == 1  # pylint: disable=protected-access
  assert int(jax.device_get(state.step)) == 4 and losses[-1] < losses[0]

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


def test_loss_chunk_tokens_holds_a_fixed_number_of_tokens_per_device(make_cfg):
  """model.loss_chunk_tokens: with 4 rows per device a 256-token chunk is 64 positions, so
  the compiled step holds a quarter of the logits that 256 positions would; the step's
  loss and every gradient stay those of full [B, T, V] logits (float32)."""
  overrides = ["train.batch_size=32", "model.vocab_size=4096", "model.compute_dtype=float32",
               "model.param_dtype=float32"]  # 8 devices (conftest): 4 rows each
  cfgs = {name: make_cfg(name, *overrides, *extra) for name, extra in {
      "full": ["model.loss_chunk=0"],
      "positions": ["model.loss_chunk=256"],
      "tokens": ["model.loss_chunk=256", "model.loss_chunk_tokens=256"]}.items()}
  assert cfgs["tokens"].model.loss_chunk_positions(4) == 64
  assert cfgs["positions"].model.loss_chunk_positions(4) == 256
  results = {}
  for name, cfg in cfgs.items():
    trainer = builder.build(cfg, mesh_lib.make_mesh(cfg.mesh), total_steps=1)
    assert mesh_lib.batch_parallelism(trainer.mesh) == 8
    params = weights.load_base(cfg, shardings=trainer.base_sh)
    batch = data_feed.to_device(next(loader.make_iterator(
        cfg.data, "train", 32, cfg.data.max_seq_len, epochs=None, seed=0)), trainer.mesh, 32)
    state = trainer.init_state(params)
    temp = trainer.train_step.lower(state, {}, batch).compile().memory_analysis()
    new_state, metrics = trainer.train_step(state, {}, batch)
    results[name] = (float(metrics["loss"]), float(metrics["grad_norm"]),
                     temp.temp_size_in_bytes)
  full_loss, full_norm, _ = results["full"]
  for name in ("positions", "tokens"):
    loss, norm, _ = results[name]
    assert abs(loss - full_loss) <= 1e-5 * abs(full_loss), (name, loss, full_loss)
    assert abs(norm - full_norm) <= 1e-4 * abs(full_norm), (name, norm, full_norm)
  # One chunk's float32 logits per device: 4 x 256 x 4096 x 4 B = 16 MiB by positions,
  # 4 MiB by tokens; the logits, their exp and gradient are each that size.
  saved = results["positions"][2] - results["tokens"][2]
  assert saved >= 2 * (4 * 256 - 4 * 64) * 4096 * 4, results

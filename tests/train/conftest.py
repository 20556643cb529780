"""Shared fixtures for the trainer tests: one prepared copy of the bundled samples."""

import os

import pytest

from jax_sft import config as config_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMOKE = os.path.join(REPO, "configs", "smoke.yaml")

# A one-layer Gemma on 256-token rows: compiles and steps in well under a second.
TINY = [
    "model.preset=tiny_gemma1", "model.vocab_size=1024", "model.num_layers=1",
    "model.embed_dim=32", "model.num_heads=2", "model.num_kv_heads=1", "model.head_dim=16",
    "model.mlp_dim=64", "model.loss_chunk=64",
    "data.max_seq_len=256", "data.max_target_tokens=200",
    "train.batch_size=8", "train.max_steps=6", "train.learning_rate=3e-3",
    "train.log_every=1", "train.eval_every=0", "train.eval_batches=1",
    "train.generations_at_end=0", "train.weight_decay=0.01",
    "mesh.data=1", "mesh.fsdp=-1", "mesh.tensor=1",
    "checkpoint.every_steps=3", "checkpoint.every_minutes=0",
    "train.xla_opt_level=0",  # compile in seconds, not tens of seconds, on 2 cores
]


@pytest.fixture(scope="session")
def prepared_data(tmp_path_factory):
  """The smoke data section prepared once (256-token rows) for every trainer test."""
  from jax_sft.data import prepare
  out = str(tmp_path_factory.mktemp("train_data"))
  cfg = config_lib.load(SMOKE, TINY + [f"data.output_dir={out}"])
  prepare.prepare(cfg.data, seed=cfg.seed)
  return out


@pytest.fixture
def make_cfg(prepared_data, tmp_path):
  """make_cfg(name, *overrides) -> a tiny Config whose run_dir is tmp_path/name."""
  def make(name="run", *overrides):
    return config_lib.load(SMOKE, TINY + [f"data.output_dir={prepared_data}",
                                          f"run_dir={tmp_path / name}", *overrides])
  return make

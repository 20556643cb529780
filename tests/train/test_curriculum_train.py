"""A curriculum reaches the model: the smoke config with `order: curriculum_length` trains
on examples whose logged model-turn length rises step by step (the default shuffled run's
does not), a resume continues the curriculum bitwise, and a resume under another epoch
policy is refused."""

import json
import os

import jax
import numpy as np
import pytest
from scipy import stats

from jax_sft import config as config_lib
from jax_sft.data import prepare
from jax_sft.train import checkpoint as ckpt_lib
from jax_sft.train import compat, loop, weights
from helpers import stop_before_step

from conftest import SMOKE, TINY

ONE_EPOCH = ["train.max_steps=0", "train.epochs=1", "checkpoint.every_steps=0",
             "checkpoint.every_minutes=0", "checkpoint.save_at_end=false"]


@pytest.fixture(scope="module")
def curriculum_data(tmp_path_factory):
  """The smoke data prepared easy -> hard by model-turn length (256-token rows)."""
  out = str(tmp_path_factory.mktemp("curriculum_data"))
  cfg = config_lib.load(SMOKE, TINY + [f"data.output_dir={out}", "data.order=curriculum_length"])
  prepare.prepare(cfg.data, seed=cfg.seed)
  return out


@pytest.fixture
def curriculum_cfg(curriculum_data, tmp_path):
  def make(name, *overrides):
    return config_lib.load(SMOKE, TINY + [f"data.output_dir={curriculum_data}",
                                          "data.order=curriculum_length",
                                          f"run_dir={tmp_path / name}", *overrides])
  return make


def _train_rows(run_dir):
  """{step: metrics row} of the train split, the last line for a step winning."""
  rows = {}
  for line in open(os.path.join(run_dir, "metrics.jsonl")):
    row = json.loads(line)
    if row["split"] == "train":
      rows[row["step"]] = row
  return rows


def _difficulty_trend(run_dir):
  """(steps logged, Spearman rho of the step against its examples' mean model turn)."""
  rows = _train_rows(run_dir)
  steps = sorted(rows)
  return len(steps), stats.spearmanr(steps, [rows[s]["mean_turn_tokens"] for s in steps])[0]


def test_curriculum_run_trains_easy_to_hard(curriculum_cfg, make_cfg):
  cur = curriculum_cfg("curriculum", *ONE_EPOCH)
  assert loop.train(cur, progress=False).end_step >= 10
  n, rho = _difficulty_trend(cur.run_dir)
  # One epoch, every step logged (n = 11 here). A trendless order of 11 steps reaches
  # rho >= 0.9 with probability 1.6e-4 (200K random permutations); the sorted stream packs
  # in order (tests/data/test_curriculum.py), so it measures 1.0.
  assert n >= 10 and rho >= 0.9, (n, rho)

  shuffled = make_cfg("shuffled", *ONE_EPOCH)  # the default: data.order shuffle
  assert loop.train(shuffled, progress=False).end_step >= 10
  n, rho = _difficulty_trend(shuffled.run_dir)
  # |rho| < 0.61 is no trend at the 5% level for 11 steps (two-sided, same permutations).
  assert n >= 10 and abs(rho) < 0.61, (n, rho)


def test_curriculum_resume_is_bitwise(curriculum_cfg, monkeypatch):
  whole_cfg, cfg = curriculum_cfg("whole"), curriculum_cfg("split")
  whole = loop.train(whole_cfg, progress=False)
  with monkeypatch.context() as m:
    stop_before_step(m, 3)
    first = loop.train(cfg, progress=False)
  second = loop.train(cfg, resume=True, progress=False)
  assert (first.end_step, second.start_step, second.end_step) == (3, 3, 6)
  assert first.losses + second.losses == whole.losses  # bitwise
  want, got = _train_rows(whole_cfg.run_dir), _train_rows(cfg.run_dir)
  assert [got[s]["mean_turn_tokens"] for s in range(1, 7)] == \
         [want[s]["mean_turn_tokens"] for s in range(1, 7)]
  assert want[6]["mean_turn_tokens"] > want[1]["mean_turn_tokens"]  # still easy -> hard
  _, a, _ = weights.load_for_inference(whole_cfg.run_dir)
  _, b, _ = weights.load_for_inference(cfg.run_dir)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_resume_refuses_another_epoch_policy(curriculum_cfg):
  loop.train(curriculum_cfg("policy", "train.max_steps=2"), progress=False)
  other = curriculum_cfg("policy", "train.max_steps=4", "train.curriculum_epochs=then_shuffle")
  with pytest.raises(ckpt_lib.CheckpointError, match="(?s)another data stream.*train.curriculum_epochs"):
    loop.train(other, resume=True, progress=False)


def test_checkpoints_from_before_keep_resuming_the_default_stream():
  # What a checkpoint of the default smoke run saved while the shuffle keys defaulted to true.
  saved = {"data.manifest_hash": "h", "seed": 0, "train.shuffle": True,
           "data.shuffle_loader": True, "data.order": "shuffle", "data.packing_bins": 512,
           "data.max_seq_len": 512, "train.batch_size": 4, "train.grad_accum": 1,
           "iterator epochs": 5}
  default = config_lib.load(SMOKE)
  assert compat.stream_diff({"stream": saved}, {}, compat.stream_identity(default, "h")) == []
  curriculum = config_lib.load(SMOKE, ["data.order=curriculum_length"])
  diff = compat.stream_diff({"stream": saved}, {}, compat.stream_identity(curriculum, "h"))
  assert [d.split(":")[0] for d in diff] == ["train.shuffle", "data.shuffle_loader", "data.order"]

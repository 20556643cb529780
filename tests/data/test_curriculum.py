"""A curriculum written by `prepare` survives the loader: no global shuffle, epochs by
policy, packing that keeps the order, exact resume, and one config error for a curriculum
that asks to be shuffled.

Examples are told apart in the packed stream by their written position, which the
synthetic sets store as their second token (the first is BOS). Run as a script, this file
measures the order at full size (docs/data.md, "Order in the loader"):

    python tests/data/test_curriculum.py --n 100000 --seq_len 2048 --batch 16
"""

import argparse
import json
import os
import sys
import tempfile

import grain.python as grain_py
import numpy as np
import orbax.checkpoint as ocp
import pytest
from scipy import stats

from jax_sft import config as config_lib
from jax_sft.config import DataConfig
from jax_sft.data import loader, mix, shards

SMOKE = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "smoke.yaml")
# The core mix in Gemma tokens (~4 characters a token, docs/data.md's character medians):
# (share of rows, median model-turn tokens, sigma of log tokens); turns capped at 768.
MIX = ((0.636, 2450, 0.55), (0.202, 1025, 0.5), (0.061, 750, 0.5), (0.101, 60, 0.6))
TURN_CAP = 768


def write_synthetic(out_dir, n: int, order: str, seed: int = 0) -> dict[str, np.ndarray]:
  """Writes n examples as the train split in `order` (mix.order's keys); returns, per
  written position, the example's model-turn tokens and source difficulty (1-5, 3 = none)."""
  rng = np.random.default_rng(seed)
  kind = rng.choice(len(MIX), size=n, p=[m[0] for m in MIX])
  median, sigma = np.array([m[1] for m in MIX])[kind], np.array([m[2] for m in MIX])[kind]
  turn = np.clip(rng.lognormal(np.log(median), sigma), 2, TURN_CAP).astype(np.int64)
  prompt = np.clip(rng.lognormal(np.log(60), 0.5, n), 8, 250).astype(np.int64)
  # glaive-like: 60% of the rows carry a difficulty of their own, the rest sort as 3.
  difficulty = np.where(rng.random(n) < 0.6, rng.integers(1, 6, n), 3)
  rows = [{"id": f"s:{i}", "target_len": int(turn[i]), "metadata": {"difficulty": int(difficulty[i])}}
          for i in range(n)]
  written = [int(r["id"][2:]) for r in mix.order(rows, order, seed)]
  records = []
  for pos, i in enumerate(written):
    tokens = np.full(prompt[i] + turn[i], 7, np.int32)
    tokens[0], tokens[1] = 2, pos
    records.append(shards.serialize(tokens, int(prompt[i]), f"s:{i}", "synthetic"))
  shards.write_shards(str(out_dir), "train", records, 10_000)
  return {"turn": turn[written], "difficulty": difficulty[written]}


def stream(it, max_steps: int = 0) -> dict[str, np.ndarray]:
  """Per example of a packed stream, in order: step, written position, loss tokens; and
  the share of real tokens."""
  steps, positions, turns, real, total = [], [], [], 0, 0
  for step, b in enumerate(it):
    if max_steps and step >= max_steps:
      break
    seg = b["segment_ids"]
    r, c = np.nonzero((b["positions"] == 0) & (seg > 0))
    positions.append(b["inputs"][r, c + 1])
    steps.append(np.full(len(r), step))
    key = (np.arange(seg.shape[0])[:, None] * (seg.max() + 1) + seg)[seg > 0]
    per_segment = np.bincount(key, weights=b["loss_mask"][seg > 0])
    turns.append(per_segment[r * (seg.max() + 1) + seg[r, c]])
    real, total = real + np.count_nonzero(seg), total + seg.size
  return {"step": np.concatenate(steps), "position": np.concatenate(positions),
          "turn": np.concatenate(turns), "fill": real / max(total, 1)}


def fidelity(s: dict, written: dict) -> dict[str, float]:
  """How far a stream is from the written order: rank correlations of the step with the
  written position, the model-turn tokens and the source difficulty (beside the written
  order's own, which ties cap below 1); how many examples (and steps) an example lands
  away from its written place."""
  emitted = np.argsort(np.argsort(s["position"], kind="stable"), kind="stable")
  moved = np.abs(np.arange(len(emitted)) - emitted)
  per_step = len(s["step"]) / (s["step"][-1] + 1)
  rho = lambda a, b: float(stats.spearmanr(a, b)[0])
  place = np.arange(len(written["turn"]))
  return {"rho_position": rho(s["step"], s["position"]),
          "rho_turn_tokens": rho(s["step"], s["turn"]),
          "rho_turn_tokens_written": rho(place, written["turn"]),
          "rho_difficulty": rho(s["step"], written["difficulty"][s["position"]]),
          "rho_difficulty_written": rho(place, written["difficulty"]),
          "moved_p99_examples": float(np.percentile(moved, 99)), "moved_max_examples": int(moved.max()),
          "moved_max_steps": float(moved.max() / per_step), "steps": int(s["step"][-1] + 1),
          "fill": float(s["fill"])}


def epochs_of(s: dict) -> np.ndarray:
  """The epoch of each example of a repeated stream: its how-many-th appearance."""
  by_position = np.argsort(s["position"], kind="stable")
  sorted_pos = s["position"][by_position]
  first = np.searchsorted(sorted_pos, sorted_pos)  # where each position's run starts
  out = np.empty(len(by_position), np.int64)
  out[by_position] = np.arange(len(by_position)) - first
  return out


def _data(out_dir, order, **kw) -> DataConfig:
  return DataConfig(output_dir=str(out_dir), order=order, **kw)


@pytest.fixture(scope="module")
def curricula(tmp_path_factory):
  """Three 3000-example synthetic sets (seq 1024), one per order."""
  out = {}
  for order in ("curriculum_length", "curriculum_difficulty", "shuffle"):
    d = tmp_path_factory.mktemp(order)
    out[order] = (_data(d, order), write_synthetic(d, 3000, order))
  return out


def test_packed_stream_keeps_a_length_curriculum(curricula):
  cfg, written = curricula["curriculum_length"]
  f = fidelity(stream(loader.make_iterator(cfg, "train", 8, 1024)), written)
  # Examples sorted by model turn reach the packer nearly sorted by length (prompts vary),
  # so a later one fills an earlier row's gap only now and then, and never past the open
  # rows (packing_bins); the length trend is the written order's (below 1 for ties: the
  # capped turns), where a shuffled stream has none (next test).
  assert f["rho_position"] > 0.99, f
  assert f["moved_max_steps"] <= cfg.packing_bins / 8, f
  assert f["rho_turn_tokens"] > f["rho_turn_tokens_written"] - 0.01 > 0.5, f


def test_shuffled_stream_has_no_length_trend(curricula):
  cfg, written = curricula["shuffle"]
  f = fidelity(stream(loader.make_iterator(cfg, "train", 8, 1024)), written)
  # ~2600 examples: a trendless order has rho ~ N(0, 0.02); 0.1 is five sigma.
  assert abs(f["rho_turn_tokens"]) < 0.1 and abs(f["rho_position"]) < 0.1, f


def test_difficulty_levels_stay_within_the_packing_buffer(curricula):
  cfg, written = curricula["curriculum_difficulty"]
  f = fidelity(stream(loader.make_iterator(cfg, "train", 8, 1024)), written)
  # A level's short first examples fill gaps in the open rows of the level before, at
  # most packing_bins rows back; the levels themselves stay in order.
  assert f["rho_position"] > 0.99 and f["moved_max_steps"] <= cfg.packing_bins / 8, f
  assert f["rho_difficulty"] > f["rho_difficulty_written"] - 0.03 > 0.5, f


@pytest.mark.parametrize("policy", ["restart", "then_shuffle"])
def test_epoch_policy(curricula, policy):
  cfg, written = curricula["curriculum_length"]
  s = stream(loader.make_iterator(cfg, "train", 8, 1024, epochs=3, epoch_policy=policy))
  n, epoch = len(written["turn"]), epochs_of(s)
  counts = np.bincount(epoch).tolist()
  # Every example once per epoch; the last epoch ends short by at most the dropped
  # partial batch (drop_remainder).
  assert counts[:2] == [n, n] and 0 <= n - counts[2] <= np.bincount(s["step"]).max(), counts
  orders = [s["position"][epoch == e] for e in range(3)]
  for e, order in enumerate(orders):
    rho = stats.spearmanr(np.arange(len(order)), order)[0]
    if e == 0 or policy == "restart":
      assert rho > 0.99, (e, rho)  # easy -> hard (again)
    else:
      assert abs(rho) < 0.1, (e, rho)  # shuffled: no trend (five sigma, as above)
  # An epoch's examples arrive together: at the seams only rows still open mix epochs.
  leak = [np.count_nonzero(epoch[e * n:(e + 1) * n] != e) for e in range(2)]
  assert max(leak) <= 2 * cfg.packing_bins, leak
  if policy == "then_shuffle":  # a fresh permutation each later epoch
    assert not np.array_equal(orders[1][:n // 2], orders[2][:n // 2])


def test_resume_across_a_then_shuffle_epoch_boundary_is_exact(curricula, tmp_path):
  cfg, _ = curricula["curriculum_length"]
  make = lambda: loader.make_iterator(cfg, "train", 8, 1024, epochs=2, epoch_policy="then_shuffle")
  full = list(make())
  s = stream(full)
  k = int(s["step"][epochs_of(s) == 1].min())  # the first batch holding a shuffled-epoch example
  assert 0 < k < len(full) - 1
  it = make()
  for _ in range(k):
    next(it)
  mngr = ocp.CheckpointManager(str(tmp_path / "ckpt"))
  mngr.save(k, args=ocp.args.Composite(data=grain_py.PyGrainCheckpointSave(it)))
  mngr.wait_until_finished()
  restored = make()
  mngr.restore(k, args=ocp.args.Composite(data=grain_py.PyGrainCheckpointRestore(restored)))
  rest = list(restored)
  assert len(rest) == len(full) - k > 0
  for a, b in zip(full[k:], rest):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize("keys", [["train.shuffle"], ["data.shuffle_loader"],
                                  ["train.shuffle", "data.shuffle_loader"]])
def test_a_shuffled_curriculum_is_one_error_naming_the_keys(keys):
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.load(SMOKE, ["data.order=curriculum_length"] + [f"{k}=true" for k in keys])
  msg = str(e.value)
  assert "\n" not in msg and "data.order" in msg and all(k in msg for k in keys), msg


@pytest.mark.parametrize("overrides, shuffled", [
    ([], True),  # the default config: prepare shuffles, the loader shuffles each epoch
    (["data.order=curriculum_length"], False),
    (["data.order=curriculum_difficulty", "train.shuffle=false"], False),
    (["train.shuffle=false"], False),  # a shuffled mix read as written
    (["data.shuffle_loader=false"], False),
    (["data.shuffle_loader=false", "train.shuffle=true"], True),  # the trainer's key wins
])
def test_shuffle_keys_follow_the_order(overrides, shuffled):
  cfg = config_lib.load(SMOKE, overrides)
  assert loader.shuffles(cfg.data, cfg.train.shuffle) is shuffled


def main(argv=None) -> None:
  """One JSON line per order: the fidelity of one packed epoch of a synthetic set."""
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--n", type=int, default=20_000)
  p.add_argument("--seq_len", type=int, default=2048)
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--bins", type=int, default=512)
  p.add_argument("--orders", default="curriculum_length,curriculum_difficulty,shuffle")
  args = p.parse_args(argv)
  for order in args.orders.split(","):
    with tempfile.TemporaryDirectory() as d:
      written = write_synthetic(d, args.n, order)
      cfg = _data(d, order, packing_bins=args.bins)
      f = fidelity(stream(loader.make_iterator(cfg, "train", args.batch, args.seq_len)), written)
      setting = {k: v for k, v in vars(args).items() if k != "orders"}
      print(json.dumps({"order": order, **setting, **{k: round(v, 4) for k, v in f.items()}}),
            flush=True)


if __name__ == "__main__":
  main(sys.argv[1:])

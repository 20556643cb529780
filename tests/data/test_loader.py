"""Loader: packed batches decode to the rendered examples; exact resume; process shares."""

import collections

import numpy as np
import orbax.checkpoint as ocp
import grain.python as grain_py

from jax_sft.data import loader, prepare, template
from jax_sft.data.tokenizer import Tokenizer


def _segments(batch):
  for b in range(batch["inputs"].shape[0]):
    seg = batch["segment_ids"][b]
    for s in range(1, seg.max() + 1):
      m = seg == s
      yield {k: batch[k][b][m] for k in ("inputs", "targets", "loss_mask", "positions")}


def test_packed_batches_decode_to_rendered_examples(prepared):
  cfg, _ = prepared
  tok = Tokenizer(cfg.tokenizer)
  want = collections.Counter()
  want_targets = collections.Counter()
  for r in prepare.read_records(cfg.output_dir, "train"):
    want[template.render_example(r["question"], r["reasoning"], r["answer"])] += 1
    want_targets[template.render_target(r["reasoning"], r["answer"]) + template.END_OF_TURN] += 1
  got, got_targets = collections.Counter(), collections.Counter()
  for batch in loader.make_iterator(cfg, "train", 1, cfg.max_seq_len, epochs=1):
    assert batch["inputs"].dtype == np.int32 and batch["loss_mask"].dtype == np.float32
    for seg in _segments(batch):
      assert seg["inputs"][0] == tok.bos_id
      np.testing.assert_array_equal(seg["positions"], np.arange(len(seg["inputs"])))
      np.testing.assert_array_equal(seg["targets"][:-1], seg["inputs"][1:])  # shifted within the example
      got[tok.decode(list(seg["inputs"]) + [seg["targets"][-1]])] += 1
      masked = seg["targets"][seg["loss_mask"] > 0]
      got_targets[tok.decode(masked)] += 1
      first = int(np.argmax(seg["loss_mask"]))
      assert seg["loss_mask"][first:].all()  # one contiguous model turn
      assert tok.decode(seg["targets"][:first]).endswith("<start_of_turn>model\n")
    assert (batch["loss_mask"][batch["segment_ids"] == 0] == 0).all()
  assert got == want
  assert got_targets == want_targets


def test_resume_is_exact(prepared, tmp_path):
  cfg, _ = prepared
  make = lambda: loader.make_iterator(cfg, "train", 2, 256, epochs=2, seed=3)
  full = [b for b in make()]
  it = make()
  head = [next(it) for _ in range(5)]
  state = it.get_state()
  mngr = ocp.CheckpointManager(str(tmp_path / "ckpt"))
  mngr.save(5, args=ocp.args.Composite(data=grain_py.PyGrainCheckpointSave(it)))
  mngr.wait_until_finished()
  resumed = make()
  resumed.set_state(state)
  rest = list(resumed)
  restored = make()
  mngr.restore(5, args=ocp.args.Composite(data=grain_py.PyGrainCheckpointRestore(restored)))
  assert len(full) == 5 + len(rest) and len(rest) > 3
  for a, b, c in zip(full[5:], rest, restored):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
      np.testing.assert_array_equal(a[k], c[k])
  for a, b in zip(full, head):
    np.testing.assert_array_equal(a["inputs"], b["inputs"])


def test_processes_read_disjoint_shares(prepared):
  cfg, m = prepared
  firsts = []
  for p in range(2):
    seen = []
    for batch in loader.make_iterator(cfg, "train", 1, cfg.max_seq_len, process_index=p, process_count=2):
      seen += [tuple(s["inputs"][:40]) + (len(s["inputs"]),) for s in _segments(batch)]
    firsts.append(collections.Counter(seen))
  assert sum(firsts[0].values()) + sum(firsts[1].values()) == m["splits"]["train"]["examples"]
  assert abs(sum(firsts[0].values()) - sum(firsts[1].values())) <= 1

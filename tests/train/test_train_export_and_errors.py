"""Export (LoRA merged) round trip, failed saves, and bad configs named before compiling."""


import jax
import numpy as np
import pytest

from jax_sft.cli import main
from jax_sft.train import checkpoint as ckpt_lib
from jax_sft.train import export as export_lib
from jax_sft.train import loop, weights
from jax_sft.config import CheckpointConfig
from helpers import write_config


def test_export_lora_run_merged_round_trips(make_cfg, tmp_path):
  from jax_sft.model import formats, lora as lora_lib
  cfg = make_cfg("lora_export", "lora.enabled=true", "lora.rank=4", "train.max_steps=2",
                 "train.eval_batches=0")
  loop.train(cfg, progress=False)
  out = export_lib.export(cfg.run_dir, "safetensors", str(tmp_path / "hf"))
  back = formats.load_params(out, cfg.model)
  run_cfg, base, adapters = weights.load_for_inference(cfg.run_dir)
  merged = lora_lib.merge(base, adapters, run_cfg.model, run_cfg.lora)
  for a, b in zip(jax.tree.leaves(merged), jax.tree.leaves(back)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert not np.array_equal(np.asarray(merged["layer_0"]["attn"]["q_einsum"]["w"]),
                            np.asarray(base["layer_0"]["attn"]["q_einsum"]["w"]))


class _FailingIterator:
  """A data iterator whose state cannot be written, like a disk that fills mid-save."""

  def get_state(self):
    raise OSError(28, "No space left on device")


def test_failed_save_keeps_previous_checkpoint(tmp_path, make_cfg):
  cfg = make_cfg("x")
  state = {"w": np.arange(6, dtype=np.float32)}

  class S:  # the Checkpointer only reads these attributes
    params, opt_state, step, rng = state, {}, np.int32(1), np.zeros(2, np.uint32)

  ckpt = ckpt_lib.Checkpointer(str(tmp_path / "ck"), CheckpointConfig(async_save=True))
  ckpt.save(1, S, None, cfg, {"note": "good"})
  ckpt.wait()
  with pytest.raises(Exception):
    ckpt.save(2, S, _FailingIterator(), cfg, {"note": "bad"})
    ckpt.wait()
  ckpt.close()
  again = ckpt_lib.Checkpointer(str(tmp_path / "ck"), read_only=True)
  assert again.latest_step() == 1
  assert again.read_json(1, "meta")["note"] == "good"
  restored = again.restore_params(1, again.saved_params_metadata(1))
  np.testing.assert_array_equal(np.asarray(restored["w"]), state["w"])


@pytest.mark.parametrize("override, key", [
    ("train.batch_size=12", "train.batch_size=12"),          # 8 devices do not divide 12
    ("mesh.data=3", "mesh"),                                 # 3 does not divide 8 devices
    ("train.grad_accum=3", "train.grad_accum=3"),
    ("train.bogus=1", "train.bogus"),
    ("train.learning_rate=fast", "train.learning_rate"),
    ("train.time_budget=soon", "train.time_budget"),
    ("model.vocab_size=512", "model.vocab_size=512"),         # the 1024-piece tokenizer
])
def test_bad_config_is_named_before_compiling(make_cfg, tmp_path, capsys, monkeypatch, override, key):
  from jax_sft.train import step
  path = tmp_path / "cfg.yaml"
  write_config(path, make_cfg("bad"))

  def no_compile(*a, **k):
    raise AssertionError("compiled before rejecting the config")
  monkeypatch.setattr(step, "jit_train_step", no_compile)
  assert main(["train", str(path), override, "--no-progress"]) == 2
  err = capsys.readouterr().err
  assert key in err and err.count("\n") <= 2, err

"""A Kaggle week rehearsed on this machine: the real kaggle_train.py and the real `jax-sft`.

Session 1 stops on its clock and leaves an output under the size cap; session 2 sees that
output as a read-only input and resumes it exactly (bitwise against one uninterrupted run);
session 3 warm-starts a new mix from session 2 with --init-from auto; the export loads.
JAX_SFT_KAGGLE_ROOT moves /kaggle to a temporary folder.
"""

import os
import shutil
import stat
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jax_sft import config as config_lib
from jax_sft.data.tokenizer import sample_tokenizer_path
from jax_sft.model import formats
from jax_sft.train import checkpoint as ckpt_lib
from jax_sft.train import loop, weights
from helpers import per_step, write_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KAGGLE = os.path.join(REPO, "tpu_scripts", "kaggle_train.py")
SMOKE = os.path.join(REPO, "configs", "smoke.yaml")
# A one-layer Gemma; a constant learning rate, so a session's max_steps can change without
# changing the schedule (session 2 sets it once session 1 has stopped).
TINY = ["model.preset=tiny_gemma1", "model.vocab_size=1024", "model.num_layers=1",
        "model.embed_dim=32", "model.num_heads=2", "model.num_kv_heads=1", "model.head_dim=16",
        "model.mlp_dim=64", "model.loss_chunk=64", "data.max_seq_len=256",
        "data.max_target_tokens=200", "train.batch_size=8", "train.max_steps=100000",
        "train.schedule=constant", "train.warmup_ratio=0", "train.learning_rate=1e-3",
        "train.log_every=1", "train.eval_every=0", "train.generations_at_end=0",
        "eval.at_end=false", "eval.during_training_every=0", "checkpoint.every_steps=0",
        "checkpoint.every_minutes=0", "train.xla_opt_level=0", "data.num_workers=0"]
MODES = {"lora": ["lora.enabled=true", "lora.rank=4", "checkpoint.keep=2"],
         "full_compact": ["model.param_dtype=bfloat16", "checkpoint.keep=1"]}
CAP_GB = 0.05


def _read_only(path):
  for root, dirs, files in os.walk(path):
    for n in files:
      os.chmod(os.path.join(root, n), stat.S_IRUSR | stat.S_IRGRP)
    os.chmod(root, stat.S_IRUSR | stat.S_IXUSR)


def _writable(path):
  for root, _, files in os.walk(path):
    os.chmod(root, 0o755)
    for n in files:
      os.chmod(os.path.join(root, n), 0o644)


def _session(root, inputs, args, env):
  """One Kaggle session: a fresh /kaggle/working, the given datasets under /kaggle/input."""
  kaggle = root / "kaggle"
  if kaggle.exists():
    _writable(kaggle)
    shutil.rmtree(kaggle)
  (kaggle / "working").mkdir(parents=True)
  for name, src in inputs.items():
    shutil.copytree(src, kaggle / "input" / name)
  _read_only(kaggle / "input")
  proc = subprocess.run([sys.executable, KAGGLE, "--no-install", *args],
                        env=dict(env, JAX_SFT_KAGGLE_ROOT=str(kaggle)), capture_output=True,
                        text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
  keep = root / f"out{len(list(root.glob('out*')))}"
  shutil.copytree(kaggle / "working", keep)  # "save version": the next session's input
  return keep, proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_kaggle_week(tmp_path, mode):
  # The released base: a tiny Gemma as Kaggle ships one (Orbax dir + tokenizer.model).
  cfg = config_lib.load(SMOKE, TINY + MODES[mode])
  model_root = tmp_path / "gemma" / "flax" / "tiny" / "1"
  formats.save_kaggle_flax(formats.random_params(cfg.model, seed=3), str(model_root / "tiny-it"))
  shutil.copy(sample_tokenizer_path(), model_root / "tokenizer.model")
  path = tmp_path / "week.yaml"
  write_config(path, cfg, drop=("run_dir",))
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
  common = ["--config", str(path), "--export-reserve", "5s", "--output-limit-gb", str(CAP_GB)]

  # Session 1: stops on its budget (30 s of training, within the clock), far from max_steps.
  out1, log1 = _session(tmp_path, {"gemma": tmp_path / "gemma"},
                        common + ["--deadline", str(time.time() + 600), "--time-budget", "30s"], env)
  s1 = max(per_step(out1 / "run"))
  assert "time budget" in log1 and 0 < s1 < 100000
  size = sum(f.stat().st_size for f in out1.rglob("*") if f.is_file())
  assert size <= CAP_GB * 1e9 and ckpt_lib.open_read_only(str(out1 / "run"))[1] == s1

  # Session 2: session 1's output is a read-only input; resume exactly, then 6 more steps.
  end = s1 + 6
  out2, log2 = _session(tmp_path, {"gemma": tmp_path / "gemma", "my-s1-output": out1},
                        common + ["--resume-from", str(tmp_path / "kaggle" / "input" /
                                                       "my-s1-output" / "run"),
                                  "--deadline", str(time.time() + 600),
                                  f"train.max_steps={end}"], env)
  assert f"resumed from step {s1}" in log2 and "prepare" in log2
  reference = config_lib.load(str(path), [f"run_dir={tmp_path / 'reference'}",
                                          f"train.max_steps={end}",
                                          f"model.init_from={model_root / 'tiny-it'}",
                                          f"data.tokenizer={model_root / 'tokenizer.model'}",
                                          f"data.output_dir={tmp_path / 'reference_data'}"])
  loop.train(reference, progress=False)
  assert per_step(out2 / "run") == per_step(reference.run_dir)  # bitwise, every step
  _, a, _ = weights.load_for_inference(str(out2 / "run"))
  _, b, _ = weights.load_for_inference(reference.run_dir)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))

  # Session 3: a new mix, warm-started from the newest earlier run; its export loads.
  out3, log3 = _session(tmp_path, {"gemma": tmp_path / "gemma", "my-s2-output": out2},
                        common + ["--init-from", "auto", "--session", "s3",
                                  "--deadline", str(time.time() + 600), "train.max_steps=3",
                                  "data.sources.glaive.count=5", "data.eval_fraction=0.2"], env)
  assert "warm start from" in log3 and max(per_step(out3 / "run")) == 3
  exported = formats.load_params(str(out3 / "run" / "export"), cfg.model)
  run_cfg, final, adapters = weights.load_for_inference(str(out3 / "run"))
  if adapters is not None:
    from jax_sft.model import lora as lora_lib  # pylint: disable=import-outside-toplevel
    final = lora_lib.merge(final, adapters, run_cfg.model, run_cfg.lora)
  for x, y in zip(jax.tree.leaves(exported), jax.tree.leaves(final)):
    np.testing.assert_array_equal(np.asarray(x, np.float32), np.asarray(y, np.float32))

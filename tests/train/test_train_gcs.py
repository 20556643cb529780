"""gs:// run dirs end to end, against a GCS emulator running on this machine.

PyPI's gcp-storage-emulator (pure Python) serves the GCS JSON API on loopback; etils.epath
(through gcsfs) and Orbax's TensorStore talk to it as to the real service. (The
fake-gcs-server binary was tried first: it stops answering TensorStore on the third
checkpoint of a run.) The
real `jax-sft` saves a run to gs://bkt/run, resumes it from there on "another machine"
(bitwise against a local run), reads its base weights and its prepared data from gs:// and
exports from the bucket.
"""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from etils import epath

from jax_sft import storage
from jax_sft.model import formats
from jax_sft.train import loop, weights
from helpers import write_config

# The test extra installs it (pyproject.toml); it is not one of the product's dependencies.
emulator = pytest.importorskip("gcp_storage_emulator.server")


@pytest.fixture(scope="module")
def gcs():
  """The emulator, a bucket `bkt`, and the environment that points every client at it."""
  saved = dict(os.environ)
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  server = emulator.create_server("127.0.0.1", port, in_memory=True, default_bucket="bkt")
  server.start()
  url = f"http://127.0.0.1:{port}"
  # gcsfs and google-cloud-storage read STORAGE_EMULATOR_HOST, TensorStore its own variable;
  # epath is told to use gcsfs (with TensorFlow installed it would pick tf.io.gfile, which
  # knows no emulator).
  env = {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url,
         "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator", "EPATH_USE_TF": "false"}
  os.environ.update(env)
  try:
    yield env
  finally:
    server.stop()
    os.environ.clear()
    os.environ.update(saved)


def _jax_sft(env, cache, *args):
  """The real CLI; `cache` is its local cache of bucket files (a new one = a new machine)."""
  proc = subprocess.run([sys.executable, "-m", "jax_sft.cli", *args], capture_output=True,
                        text=True, timeout=600, env=dict(os.environ, **env, JAX_SFT_CACHE=cache))
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return proc.stdout


def _losses(text):
  rows = [json.loads(line) for line in text.splitlines() if line.strip()]
  return {r["step"]: r["loss"] for r in rows if r["split"] == "train"}


@pytest.mark.slow
def test_train_resume_and_export_in_a_bucket(gcs, make_cfg, tmp_path):
  # The emulator ignores GCS's write preconditions (ifGenerationMatch), on which Orbax's
  # OCDBT layout commits its manifest; one Zarr array per parameter needs none. Real GCS
  # takes the default OCDBT layout.
  flat = ["train.schedule=constant", "train.warmup_ratio=0", "checkpoint.every_steps=2",
          "checkpoint.keep=2", "train.max_steps=4", "checkpoint.ocdbt=false"]
  cfg = make_cfg("gcs", *flat, "run_dir=gs://bkt/run", "model.init_from=gs://bkt/base",
                 "data.output_dir=gs://bkt/data")
  # The released base weights live in the bucket too.
  local_base = tmp_path / "base"
  formats.save_kaggle_flax(formats.random_params(cfg.model, seed=5), str(local_base))
  storage.upload(str(local_base), "gs://bkt/base")
  path = tmp_path / "gcs.yaml"
  write_config(path, cfg)

  _jax_sft(gcs, str(tmp_path / "machine1"), "train", str(path), "--no-progress")
  run = epath.Path("gs://bkt/run")
  assert (run / "config.yaml").exists() and (run / "checkpoints" / "4" / "params").exists()
  assert epath.Path("gs://bkt/data/manifest.json").exists()  # prepared here, copied up
  # Another machine: the prepared data and the base weights come down from the bucket.
  out = _jax_sft(gcs, str(tmp_path / "machine2"), "train", str(path), "--no-progress",
                 "--resume", "train.max_steps=6")
  assert "resumed from step 4" in out

  local = make_cfg("local", *flat, "train.max_steps=6", f"model.init_from={local_base}",
                   f"data.output_dir={tmp_path / 'local_data'}")
  loop.train(local, progress=False)
  want = _losses(open(os.path.join(local.run_dir, "metrics.jsonl")).read())
  assert _losses((run / "metrics.jsonl").read_text()) == want  # bitwise, every step

  _jax_sft(gcs, str(tmp_path / "machine2"), "export", "gs://bkt/run", "--format",
           "safetensors", "--out", str(tmp_path / "hf"))
  exported = formats.load_params(str(tmp_path / "hf"), cfg.model)
  _, in_bucket, _ = weights.load_for_inference("gs://bkt/run")
  _, final, _ = weights.load_for_inference(local.run_dir)
  for a, b, c in zip(jax.tree.leaves(exported), jax.tree.leaves(in_bucket), jax.tree.leaves(final)):
    np.testing.assert_array_equal(np.asarray(b), np.asarray(c))  # the run in the bucket
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # its export

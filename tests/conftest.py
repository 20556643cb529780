"""Test setup: 8 simulated CPU devices, set before JAX is imported anywhere."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tests/helpers.py

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# gs:// in tests means the GCS emulator (tests/train/test_train_gcs.py), which gcsfs can be
# pointed at and tf.io.gfile cannot. epath picks its gs:// backend once per process (cached
# on first use), so it is chosen here, before any test touches a gs:// path.
os.environ.setdefault("EPATH_USE_TF", "false")


import numpy as np  # noqa: E402  (after the environment above)
import pytest  # noqa: E402


def close(actual, expected, rel: float, what: str = "") -> None:
  """Asserts max |actual - expected| <= rel * max |expected|.

  The tolerance scales with the magnitude of what is compared (logits of 20 and of 0.2 get
  different absolute bounds), so a test passes on any CPU whose float32 rounding differs,
  and fails on a real difference of more than `rel` of the values' size.
  """
  a, e = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  assert a.shape == e.shape, f"{what} shapes differ: {a.shape} vs {e.shape}"
  scale = float(np.max(np.abs(e))) if e.size else 0.0
  diff = float(np.max(np.abs(a - e))) if e.size else 0.0
  assert diff <= rel * max(scale, np.finfo(np.float32).tiny), (
      f"{what} max |diff| {diff:.3g} > {rel:g} x max |expected| {scale:.3g}"
      f" at {np.unravel_index(np.argmax(np.abs(a - e)), e.shape)}")


@pytest.fixture
def assert_close():
  """`assert_close(actual, expected, rel)`: a tolerance relative to the values' magnitude."""
  return close

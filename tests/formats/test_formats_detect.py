"""load_params / config_from_checkpoint: format detection and dispatch, clear errors."""

import numpy as np
import pytest

from jax_sft.model import formats
from jax_sft.config import ModelConfig


def test_expected_shapes_at_real_size():
  got = formats.expected_shapes(ModelConfig.gemma2_2b())
  assert got["embedder/input_embedding"] == (256128, 2304)
  assert got["layer_25/attn/kv_einsum/w"] == (2, 4, 2304, 256)
  assert got["layer_0/mlp/gating_einsum/w"] == (2, 2304, 9216)
  g3 = formats.expected_shapes(ModelConfig.gemma3_1b())
  assert g3["layer_0/mlp/gating_einsum/w"] == (2, 6912, 1152)
  assert g3["layer_5/attn/_key_norm/scale"] == (256,)
  # Parameter count of Gemma 3 1B (the model card's ~1B, 999,885,952 with the embedding).
  assert sum(int(np.prod(s)) for s in g3.values()) == 999_885_952
  # Gemma 2 2B: the Hub's 2,614,341,888 with 256000 rows, plus Flax's 128 extra rows.
  assert sum(int(np.prod(s)) for s in got.values()) == 2_614_341_888 + 128 * 2304


def test_kaggle_download_layout_and_orbax_has_no_config(tmp_path):
  cfg = ModelConfig.tiny_gemma1()
  params = formats.random_params(cfg)
  # Kaggle: <model>/<variation>/<version>/ holds tokenizer.model and the checkpoint folder.
  formats.save_kaggle_flax(params, str(tmp_path / "gemma-2b-it"))
  (tmp_path / "tokenizer.model").write_bytes(b"x")
  assert formats.detect_format(str(tmp_path)) == "kaggle_flax"
  assert formats.config_from_checkpoint(str(tmp_path)) is None
  loaded = formats.load_params(str(tmp_path), cfg)
  np.testing.assert_array_equal(np.asarray(loaded["final_norm"]["scale"]),
                                params["final_norm"]["scale"])


def test_unknown_directory_and_missing_path(tmp_path):
  (tmp_path / "notes.txt").write_text("hi")
  with pytest.raises(ValueError, match="not a recognised checkpoint"):
    formats.load_params(str(tmp_path), ModelConfig.tiny_gemma1())
  with pytest.raises(FileNotFoundError, match="no such checkpoint"):
    formats.load_params(str(tmp_path / "nope"), ModelConfig.tiny_gemma1())

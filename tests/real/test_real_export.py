"""GGUF out and back in on the real 270M, and `jax-sft generate --raw` on the published file."""

import numpy as np
import pytest

import jax

from jax_sft.cli import main
from jax_sft.model import formats
from jax_sft.model.formats.gguf import open_reader
from jax_sft.model.gemma import Transformer

pytestmark = pytest.mark.slow
gguf = pytest.importorskip("gguf")

KEYS = ["general.architecture", "gemma3.block_count", "gemma3.context_length",
        "gemma3.embedding_length", "gemma3.feed_forward_length", "gemma3.attention.head_count",
        "gemma3.attention.head_count_kv", "gemma3.attention.key_length",
        "gemma3.attention.value_length", "gemma3.attention.layer_norm_rms_epsilon",
        "gemma3.rope.freq_base", "gemma3.attention.sliding_window", "tokenizer.ggml.model",
        "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id",
        "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_space_prefix"]


def _value(field):
  v = field.contents()
  return round(float(v), 9) if isinstance(v, float) else v


def test_export_gguf_round_trip(gguf_path, real_cfg, real_params, tmp_path, capsys,
                                assert_close):
  out = str(tmp_path / "exported.gguf")
  assert main(["export", gguf_path, "--format", "gguf", "--out", out, "--dtype", "f32"]) == 0
  # gguf.GGUFReader itself, through the loader's cache (each parse of 262K pieces is ~15 s).
  theirs, ours = open_reader(gguf_path).fields, open_reader(out).fields
  assert isinstance(open_reader(out), gguf.GGUFReader)
  # The metadata llama.cpp reads is what llama.cpp's own converter wrote for this model.
  assert {k: _value(ours[k]) for k in KEYS} == {k: _value(theirs[k]) for k in KEYS}
  for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type"):
    assert ours[key].contents() == theirs[key].contents(), key
  assert "<start_of_turn>" in ours["tokenizer.chat_template"].contents()
  assert formats.config_from_checkpoint(out) == real_cfg

  tokens = np.asarray([[2, 818, 5279, 529, 7001, 563, 506, 5279, 529, 9079, 563]], np.int32)
  apply = jax.jit(Transformer(real_cfg).apply)
  want = np.asarray(apply({"params": real_params}, tokens))
  got = np.asarray(apply({"params": formats.load_params(out, real_cfg)}, tokens))
  # Matrices round-trip bit for bit in f32; norm scales to one float32 ulp of 1 + w.
  assert_close(got, want, rel=1e-5)


def test_generate_raw_from_the_gguf(gguf_path, capsys):
  # REFERENCE.md: the base model continues "Once upon a time" with ", there was a little girl".
  argv = ["generate", "--checkpoint", gguf_path, "--raw", "--prompt", "Once upon a time",
          "--max-new-tokens", "6"]
  assert main(argv) == 0
  assert capsys.readouterr().out.startswith(", there was a little girl")

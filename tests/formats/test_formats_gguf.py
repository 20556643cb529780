"""GGUF in and out on tiny random models: names against llama.cpp's own map, round trips,
the metadata llama.cpp reads, the chat template, and one clear line for each bad input."""

import dataclasses
import os

import jax
import numpy as np
import pytest

from jax_sft import config as config_lib
from jax_sft.cli import main
from jax_sft.data import gguf_vocab, prepare, template
from jax_sft.model import formats
from jax_sft.model import lora as lora_lib
from jax_sft.model import params as params_lib
from jax_sft.model.gemma import Transformer
from jax_sft.train import loop, weights

gguf = pytest.importorskip("gguf")

ARCH = {"tiny_gemma1": "GEMMA", "tiny_gemma2": "GEMMA2", "tiny_gemma3": "GEMMA3"}

EPS = float(np.finfo(np.float32).eps)  # one ulp of 1.0 in float32


def _vocab(size: int) -> gguf_vocab.Vocab:
  """A made-up SentencePiece-style vocabulary of `size` pieces with Gemma's special ids."""
  pieces = ["<pad>", "<eos>", "<bos>", "<unk>"] + [f"p{i}" for i in range(4, size)]
  types = np.full(size, gguf_vocab.NORMAL, np.int32)
  types[:4] = gguf_vocab.CONTROL
  return gguf_vocab.Vocab(pieces, -np.arange(size, dtype=np.float32), types)


def _params(cfg):
  return formats.random_params(cfg, seed=3)


def _write(tmp_path, cfg, name="m.gguf", dtype="f32", params=None):
  params = params if params is not None else _params(cfg)
  return formats.save_gguf(params, cfg, str(tmp_path / name), _vocab(cfg.vocab_size),
                           dtype=dtype), params


@pytest.mark.parametrize("preset", sorted(ARCH))
def test_table_names_are_llama_cpp_names(preset):
  # llama.cpp's own HF -> GGUF name map (gguf.TensorNameMap) is the oracle for both columns.
  cfg = config_lib.preset(preset)
  tmap = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, ARCH[preset]), cfg.num_layers)
  pairs = 0
  for w in params_lib.weights(cfg):
    for hf, ours in zip(w.column("hf").names, w.column("gguf").names):
      assert tmap.get_name("model." + hf, try_suffixes=(".weight",)) == ours, (w.path, hf)
      pairs += 1
  assert pairs == len(formats.shapes.external_nbytes(cfg, "gguf", 4))


@pytest.mark.parametrize("preset", sorted(ARCH))
def test_round_trip_and_config_from_metadata(tmp_path, preset):
  cfg = config_lib.preset(preset)
  path, params = _write(tmp_path, cfg)
  assert formats.detect_format(path) == "gguf"
  got_cfg = formats.config_from_checkpoint(path)
  assert dataclasses.replace(got_cfg, preset=cfg.preset) == cfg
  back = formats.shapes.flatten(formats.load_params(path, cfg))
  for p, want in formats.shapes.flatten(params).items():
    if p.endswith("/scale"):  # stored as 1 + w in float32: (1 + w) - 1 is w to one ulp of 1 + w
      np.testing.assert_allclose(back[p], want, rtol=EPS, atol=EPS, err_msg=p)  # eps (1 + |w|)
    else:
      np.testing.assert_array_equal(np.asarray(back[p]), want, err_msg=p)


@pytest.mark.parametrize("dtype, rel", [("f16", 2e-3), ("bf16", 1e-2)])
def test_half_precision_round_trip(tmp_path, dtype, rel, assert_close):
  cfg = config_lib.preset("tiny_gemma3")
  path, params = _write(tmp_path, cfg, dtype=dtype)
  kinds = {t.name: t.tensor_type.name for t in gguf.GGUFReader(path).tensors}
  assert kinds["blk.0.attn_q.weight"] == dtype.upper() and kinds["output_norm.weight"] == "F32"
  back = formats.shapes.flatten(formats.load_params(path, cfg))
  for p, want in formats.shapes.flatten(params).items():
    assert_close(back[p], want, rel, p)  # float16 keeps 11 bits, bfloat16 8: within 2^-9, 2^-8


def test_metadata_keys_and_chat_template(tmp_path):
  cfg = config_lib.preset("tiny_gemma3")
  path, _ = _write(tmp_path, cfg)
  fields = gguf.GGUFReader(path).fields
  keys = ["general.architecture", "gemma3.context_length", "gemma3.embedding_length",
          "gemma3.block_count", "gemma3.feed_forward_length", "gemma3.attention.head_count",
          "gemma3.attention.head_count_kv", "gemma3.attention.key_length",
          "gemma3.attention.value_length", "gemma3.attention.layer_norm_rms_epsilon",
          "gemma3.rope.freq_base", "gemma3.attention.sliding_window", "tokenizer.ggml.model",
          "tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type",
          "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
          "tokenizer.ggml.padding_token_id", "tokenizer.ggml.unknown_token_id",
          "tokenizer.chat_template"]
  assert [k for k in keys if k not in fields] == []
  assert fields["gemma3.attention.sliding_window"].contents() == cfg.sliding_window
  assert len(fields["tokenizer.ggml.tokens"].data) == cfg.vocab_size
  jinja2 = pytest.importorskip("jinja2")
  chat = jinja2.Environment().from_string(fields["tokenizer.chat_template"].contents())
  messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why?"}]
  rendered = chat.render(messages=messages, bos_token="<bos>", add_generation_prompt=True)
  assert rendered == "<bos>" + template.render_prompt("Why?", "Be brief.")


def test_logits_survive_gguf_out_and_in(tmp_path, assert_close):
  cfg = config_lib.preset("tiny_gemma2")
  path, params = _write(tmp_path, cfg)
  tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (2, 19)).astype(np.int32)
  apply = jax.jit(Transformer(cfg).apply)
  want = np.asarray(apply({"params": params}, tokens))
  got = np.asarray(apply({"params": formats.load_params(path, cfg)}, tokens))
  assert np.abs(want).max() > 1.0
  # Matrices come back bit for bit, norm scales to one float32 ulp of 1 + w (~1e-7): the
  # logits move by float32 rounding only, far below 1e-5 of their size.
  assert_close(got, want, rel=1e-5)


# --- bad input: one line naming the file, never a traceback -----------------------------------


def _one_line_error(capsys, argv, *needles):
  assert main(argv) == 2
  err = capsys.readouterr().err.strip()
  assert "\n" not in err and "Traceback" not in err, err
  for n in needles:
    assert n in err, err
  return err


def _generate(path, *extra):
  return ["generate", "--checkpoint", path, "--prompt", "hi", "--max-new-tokens", "2", *extra]


@pytest.fixture
def tiny_file(tmp_path):
  path, _ = _write(tmp_path, config_lib.preset("tiny_gemma1"))
  return path


def test_truncated_file(tmp_path, tiny_file, capsys):
  data = open(tiny_file, "rb").read()
  for cut in (16, len(data) // 2):
    bad = tmp_path / f"cut{cut}.gguf"
    bad.write_bytes(data[:cut])
    with pytest.raises(formats.GGUFError, match=str(bad)):
      formats.load_params(str(bad), config_lib.preset("tiny_gemma1"))
  _one_line_error(capsys, _generate(str(bad), "--preset", "tiny_gemma1"), str(bad), "truncated")


def test_corrupted_file(tmp_path, tiny_file, capsys):
  data = bytearray(open(tiny_file, "rb").read())
  bad = tmp_path / "magic.gguf"
  bad.write_bytes(b"XXXX" + bytes(data[4:]))
  _one_line_error(capsys, _generate(str(bad)), str(bad), "not a readable GGUF")
  data[8:16] = (10**12).to_bytes(8, "little")  # tensor count far past the end of the file
  bad = tmp_path / "count.gguf"
  bad.write_bytes(bytes(data))
  _one_line_error(capsys, _generate(str(bad)), str(bad))


def test_unsupported_architecture(tmp_path, capsys):
  path = str(tmp_path / "llama.gguf")
  w = gguf.GGUFWriter(path, "llama")
  w.add_block_count(1)
  w.add_tensor("token_embd.weight", np.zeros((8, 4), np.float32))
  w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
  _one_line_error(capsys, _generate(path), path, "general.architecture is 'llama'")
  with pytest.raises(formats.GGUFError, match="'llama'"):
    formats.load_params(path, config_lib.preset("tiny_gemma1"))


def test_unsupported_tensor_type(tmp_path, capsys):
  cfg = config_lib.preset("tiny_gemma1")
  path = str(tmp_path / "int.gguf")
  w = gguf.GGUFWriter(path, "gemma")
  for key, value in [("block_count", 2), ("embedding_length", 64), ("feed_forward_length", 128),
                     ("attention.head_count", 4), ("attention.head_count_kv", 1),
                     ("attention.key_length", 16)]:
    w.add_uint32(f"gemma.{key}", value)
  w.add_float32("gemma.attention.layer_norm_rms_epsilon", 1e-6)
  for name, thunk in formats.shapes.external_tensors(_params(cfg), cfg, "gguf"):
    array = thunk()
    w.add_tensor(name, array.astype(np.int32) if name == "blk.1.ffn_up.weight" else array)
  w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
  _one_line_error(capsys, _generate(path, "--tokenizer", _sample_spm(tmp_path, 512)), path,
                  "blk.1.ffn_up.weight has type I32")


def _sample_spm(tmp_path, size):
  out = str(tmp_path / f"v{size}.model")
  with open(out, "wb") as f:
    f.write(_vocab(size).to_model_proto())
  return out


def test_tokenizer_that_does_not_match_the_model(tmp_path, tiny_file, capsys):
  spm = _sample_spm(tmp_path, 1024)  # the model has 512 rows
  _one_line_error(capsys, _generate(tiny_file, "--tokenizer", spm), spm, "1024 pieces",
                  "512 embedding rows")
  out = str(tmp_path / "x.gguf")
  _one_line_error(capsys, ["export", tiny_file, "--format", "gguf", "--out", out,
                           "--tokenizer", spm], "1024 pieces")
  assert not os.path.exists(out)


# --- a LoRA run, merged, out as GGUF -------------------------------------------------------

SMOKE = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "smoke.yaml")
TINY_LORA = [
    "model.preset=tiny_gemma3", "model.vocab_size=1024", "model.loss_chunk=64",
    "data.max_seq_len=256", "data.max_target_tokens=200", "data.num_workers=0",
    "train.batch_size=8", "train.max_steps=2", "train.learning_rate=1e-2", "train.eval_every=0",
    "train.eval_batches=0", "train.generations_at_end=0", "eval.at_end=false",
    "eval.during_training_every=0", "train.xla_opt_level=0", "checkpoint.every_steps=2",
    "lora.enabled=true", "lora.rank=4", "mesh.data=1", "mesh.fsdp=-1", "mesh.tensor=1",
]


@pytest.mark.slow
def test_lora_run_exports_merged_gguf(tmp_path, capsys):
  cfg = config_lib.load(SMOKE, TINY_LORA + [f"data.output_dir={tmp_path / 'data'}",
                                            f"run_dir={tmp_path / 'run'}"])
  prepare.prepare(cfg.data, seed=cfg.seed)
  loop.train(cfg, progress=False)
  out = str(tmp_path / "run.gguf")
  assert main(["export", cfg.run_dir, "--format", "gguf", "--out", out]) == 0
  run_cfg, base, adapters = weights.load_for_inference(cfg.run_dir)
  merged = formats.shapes.flatten(lora_lib.merge(base, adapters, run_cfg.model, run_cfg.lora))
  back = formats.shapes.flatten(formats.load_params(out, run_cfg.model))
  for p, want in merged.items():
    if p.endswith("/scale"):  # stored as 1 + w: exact to one ulp of 1 + w, eps (1 + |w|)
      np.testing.assert_allclose(np.asarray(back[p]), np.asarray(want), rtol=EPS, atol=EPS,
                                 err_msg=p)
    else:
      np.testing.assert_array_equal(np.asarray(back[p]), np.asarray(want), err_msg=p)
  q = "layer_0/attn/q_einsum/w"
  assert not np.array_equal(merged[q], formats.shapes.flatten(base)[q])  # LoRA did move it
  # The run's tokenizer (the bundled sample model) travels in the file.
  tokens = gguf.GGUFReader(out).fields["tokenizer.ggml.tokens"]
  assert len(tokens.data) == 1024
  spm = str(tmp_path / "t.model")
  assert main(["export", cfg.run_dir, "--format", "sentencepiece", "--out", spm]) == 0
  assert os.path.getsize(spm) > 0

"""Hugging Face safetensors: HF names and torch Linear semantics, vocab traps, config.json, round trip."""

import json

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P
from safetensors.numpy import load_file, save_file

from jax_sft.model import formats
from jax_sft.config import ModelConfig
from jax_sft.model.formats import shapes


def _same(a, b):
  fa, fb = shapes.flatten(a), shapes.flatten(b)
  assert sorted(fa) == sorted(fb)
  for k in fa:
    np.testing.assert_array_equal(np.asarray(fa[k]), np.asarray(fb[k]), err_msg=k)


@pytest.mark.parametrize("name", ["tiny_gemma1", "tiny_gemma2", "tiny_gemma3"])
def test_round_trip_and_config(tmp_path, name):
  cfg = getattr(ModelConfig, name)()
  params = formats.random_params(cfg, seed=5)
  out = formats.save_safetensors(params, cfg, str(tmp_path))
  _same(formats.load_params(out, cfg), params)
  back = formats.config_from_checkpoint(out)
  for field in ("num_layers", "embed_dim", "num_heads", "num_kv_heads", "head_dim", "mlp_dim",
                "vocab_size", "sliding_window", "attn_softcap", "final_softcap", "qk_norm",
                "post_norms", "gating_layout", "rope_base_local", "rope_base_global"):
    assert getattr(back, field) == getattr(cfg, field), field
  assert back.layer_types() == cfg.layer_types()
  assert back.scale == pytest.approx(cfg.scale)


def test_hf_names_follow_torch_linear_semantics(tmp_path):
  """torch Linear computes x @ W.T; each HF projection must equal our einsum on the same x."""
  cfg = ModelConfig.tiny_gemma2()
  params = formats.random_params(cfg, seed=6)
  formats.save_safetensors(params, cfg, str(tmp_path))
  hf = load_file(str(tmp_path / "model.safetensors"))
  conf = json.load(open(tmp_path / "config.json"))
  assert conf["architectures"] == ["Gemma2ForCausalLM"] and conf["model_type"] == "gemma2"
  assert conf["query_pre_attn_scalar"] == cfg.head_dim and conf["attn_logit_softcapping"] == 50.0
  x = np.random.default_rng(0).standard_normal(cfg.embed_dim).astype(np.float32)
  layer, pre = params["layer_1"], "model.layers.1."
  lin = lambda name, v: v @ hf[pre + name + ".weight"].T
  np.testing.assert_allclose(lin("self_attn.q_proj", x).reshape(cfg.num_heads, cfg.head_dim),
                             np.einsum("D,NDH->NH", x, layer["attn"]["q_einsum"]["w"]), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(lin("self_attn.v_proj", x).reshape(cfg.num_kv_heads, cfg.head_dim),
                             np.einsum("D,KDH->KH", x, layer["attn"]["kv_einsum"]["w"][1]), rtol=1e-5, atol=1e-5)
  heads = np.random.default_rng(1).standard_normal((cfg.num_heads, cfg.head_dim)).astype(np.float32)
  np.testing.assert_allclose(lin("self_attn.o_proj", heads.reshape(-1)),
                             np.einsum("NH,NHD->D", heads, layer["attn"]["attn_vec_einsum"]["w"]), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(lin("mlp.up_proj", x),
                             x @ layer["mlp"]["gating_einsum"]["w"][1], rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(hf[pre + "pre_feedforward_layernorm.weight"], layer["pre_ffw_norm"]["scale"])
  np.testing.assert_array_equal(hf[pre + "post_attention_layernorm.weight"], layer["post_attention_norm"]["scale"])


def test_gemma1_post_attention_layernorm_is_pre_ffw_norm(tmp_path):
  cfg = ModelConfig.tiny_gemma1()
  params = formats.random_params(cfg, seed=7)
  formats.save_safetensors(params, cfg, str(tmp_path))
  hf = load_file(str(tmp_path / "model.safetensors"))
  assert "model.layers.0.pre_feedforward_layernorm.weight" not in hf
  np.testing.assert_array_equal(hf["model.layers.0.post_attention_layernorm.weight"],
                                params["layer_0"]["pre_ffw_norm"]["scale"])


def test_vocab_256000_padded_on_read_trimmed_on_write(tmp_path):
  cfg = ModelConfig.tiny_gemma1()
  cfg.vocab_size, cfg.num_layers = 256128, 1
  cfg.embed_dim, cfg.mlp_dim = 8, 16
  params = formats.random_params(cfg, seed=8)
  params["embedder"]["input_embedding"][256000:] = 0.0
  formats.save_safetensors(params, cfg, str(tmp_path), max_shard_bytes=1 << 20)
  index = json.load(open(tmp_path / "model.safetensors.index.json"))
  assert len(set(index["weight_map"].values())) > 1
  assert json.load(open(tmp_path / "config.json"))["vocab_size"] == 256000
  first = tmp_path / index["weight_map"]["model.embed_tokens.weight"]
  assert load_file(str(first))["model.embed_tokens.weight"].shape == (256000, 8)
  assert formats.config_from_checkpoint(str(tmp_path)).vocab_size == 256128
  _same(formats.load_params(str(tmp_path), cfg), params)


def test_hand_written_hf_file_with_lm_head_and_mismatch(tmp_path):
  cfg = ModelConfig.tiny_gemma3()
  params = formats.random_params(cfg, seed=9)
  formats.save_safetensors(params, cfg, str(tmp_path / "ok"))
  tensors = load_file(str(tmp_path / "ok" / "model.safetensors"))
  # Gemma 3 gating is (2, F, D): gate_proj (F, D) applies as x @ W.T == einsum('D,FD->F').
  x = np.random.default_rng(0).standard_normal(cfg.embed_dim).astype(np.float32)
  np.testing.assert_allclose(x @ tensors["model.layers.0.mlp.gate_proj.weight"].T,
                             np.einsum("D,FD->F", x, params["layer_0"]["mlp"]["gating_einsum"]["w"][0]),
                             rtol=1e-5, atol=1e-5)
  tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"]
  (tmp_path / "tied").mkdir()
  save_file(tensors, str(tmp_path / "tied" / "model.safetensors"))
  _same(formats.load_params(str(tmp_path / "tied" / "model.safetensors"), cfg), params)

  tensors["model.layers.3.self_attn.k_proj.weight"] = np.zeros((32, 64), np.float32)
  save_file(tensors, str(tmp_path / "tied" / "model.safetensors"))
  with pytest.raises(formats.CheckpointMismatch,
                     match=r"k_proj.weight \(our layer_3/attn/kv_einsum/w\).*\(32, 64\).*\(16, 64\)"):
    formats.load_params(str(tmp_path / "tied"), cfg)


def test_sharded_placement(tmp_path):
  cfg = ModelConfig.tiny_gemma2()
  params = formats.random_params(cfg, seed=10)
  formats.save_safetensors(params, cfg, str(tmp_path))
  mesh = jax.make_mesh((8,), ("fsdp",))
  shard = {p: NamedSharding(mesh, P("fsdp") if s[-1] % 8 == 0 and s[0] % 8 == 0 else P())
           for p, s in formats.expected_shapes(cfg).items()}
  loaded = formats.load_params(str(tmp_path), cfg, shardings=shard)
  _same(loaded, params)
  emb = loaded["embedder"]["input_embedding"]
  assert emb.sharding == shard["embedder/input_embedding"]
  assert {s.data.shape for s in emb.addressable_shards} == {(cfg.vocab_size // 8, cfg.embed_dim)}

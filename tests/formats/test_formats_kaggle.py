"""Kaggle Flax (Orbax) checkpoints: Google's flat layout in, sharded restore, writer round trip."""

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from jax_sft.config import ModelConfig
from jax_sft.model import formats
from jax_sft.model.formats import shapes


def _kaggle_tree(params):
  """Google's released layout, written by hand (not by our writer): flat keys, leaf w/scale."""
  flat = {}
  for path, leaf in shapes.flatten(params).items():
    module, name = path.rsplit("/", 1)
    flat.setdefault("transformer/" + module, {})[name] = np.asarray(leaf)
  return flat


def _assert_same(a, b):
  fa, fb = shapes.flatten(a), shapes.flatten(b)
  assert sorted(fa) == sorted(fb)
  for k in fa:
    np.testing.assert_array_equal(np.asarray(fa[k]), np.asarray(fb[k]), err_msg=k)


@pytest.mark.parametrize("name", ["tiny_gemma1", "tiny_gemma3"])
def test_reads_google_flat_layout(tmp_path, name):
  cfg = getattr(ModelConfig, name)()
  params = formats.random_params(cfg, seed=1)
  ocp.PyTreeCheckpointer().save(tmp_path / "ckpt", _kaggle_tree(params))
  loaded = formats.load_params(str(tmp_path / "ckpt"), cfg)
  _assert_same(loaded, params)
  assert jax.tree.leaves(loaded)[0].dtype == jnp.float32


def test_casts_bfloat16_checkpoint_to_param_dtype(tmp_path):
  cfg = ModelConfig.tiny_gemma2()
  params = formats.random_params(cfg, dtype="bfloat16")
  ocp.PyTreeCheckpointer().save(tmp_path / "ckpt", _kaggle_tree(params))
  loaded = formats.load_params(str(tmp_path / "ckpt"), cfg)
  emb = loaded["embedder"]["input_embedding"]
  assert emb.dtype == jnp.float32
  np.testing.assert_array_equal(np.asarray(emb),
                                params["embedder"]["input_embedding"].astype(np.float32))


def test_writer_round_trip_and_plain_orbax_view(tmp_path):
  cfg = ModelConfig.tiny_gemma3()
  params = formats.random_params(cfg, seed=2)
  out = formats.save_kaggle_flax(params, str(tmp_path / "out"))
  _assert_same(formats.load_params(out, cfg), params)
  # What google-deepmind/gemma and tunix see: plain restore gives the flat-key dict.
  raw = ocp.PyTreeCheckpointer().restore(out)
  assert set(raw) == set(_kaggle_tree(params))
  np.testing.assert_array_equal(raw["transformer/layer_0/mlp/gating_einsum"]["w"],
                                params["layer_0"]["mlp"]["gating_einsum"]["w"])
  assert raw["transformer/layer_0/attn/_query_norm"]["scale"].shape == (cfg.head_dim,)
  with pytest.raises(FileExistsError):
    formats.save_kaggle_flax(params, out)


def test_qkv_einsum_variant_is_split(tmp_path):
  cfg = ModelConfig.tiny_gemma1()
  cfg.num_kv_heads = cfg.num_heads  # Gemma 7B: heads == kv heads, one qkv_einsum
  params = formats.random_params(cfg, seed=3)
  tree = _kaggle_tree(params)
  for i in range(cfg.num_layers):
    q = tree.pop(f"transformer/layer_{i}/attn/q_einsum")["w"]
    kv = tree.pop(f"transformer/layer_{i}/attn/kv_einsum")["w"]
    tree[f"transformer/layer_{i}/attn/qkv_einsum"] = {"w": np.concatenate([q[None], kv])}
  ocp.PyTreeCheckpointer().save(tmp_path / "ckpt", tree)
  _assert_same(formats.load_params(str(tmp_path / "ckpt"), cfg), params)


def test_shape_mismatch_names_parameter_and_both_shapes(tmp_path):
  cfg = ModelConfig.tiny_gemma2()
  params = formats.random_params(cfg)
  ocp.PyTreeCheckpointer().save(tmp_path / "ckpt", _kaggle_tree(params))
  wrong = ModelConfig.tiny_gemma2()
  wrong.mlp_dim = 96
  with pytest.raises(formats.CheckpointMismatch,
                     match=r"layer_0/mlp/gating_einsum/w.*\(2, 64, 128\).*\(2, 64, 96\)"):
    formats.load_params(str(tmp_path / "ckpt"), wrong)
  fewer = ModelConfig.tiny_gemma2()
  fewer.num_layers, fewer.attention_types = 2, fewer.attention_types[:2]
  with pytest.raises(formats.CheckpointMismatch, match=r"unexpected 18 parameter\(s\).*layer_2"):
    formats.load_params(str(tmp_path / "ckpt"), fewer)


def test_sharded_restore_places_each_array_on_its_sharding(tmp_path):
  cfg = ModelConfig.tiny_gemma2()
  params = formats.random_params(cfg, seed=4)
  ocp.PyTreeCheckpointer().save(tmp_path / "ckpt", _kaggle_tree(params))
  mesh = jax.make_mesh((4, 2), ("fsdp", "tensor"))
  spec = {"embedder/input_embedding": P("fsdp", "tensor"),
          "attn/q_einsum/w": P("tensor", "fsdp", None),
          "mlp/gating_einsum/w": P(None, "fsdp", "tensor")}

  def sharding_for(path):
    key = next((k for k in spec if path.endswith(k)), None)
    return NamedSharding(mesh, spec[key] if key else P())

  shardings = shapes.unflatten({p: sharding_for(p) for p in formats.expected_shapes(cfg)})
  loaded = formats.load_params(str(tmp_path / "ckpt"), cfg, shardings=shardings)
  _assert_same(loaded, params)
  flat = shapes.flatten(loaded)
  for path, array in flat.items():
    assert array.sharding == sharding_for(path), path
  # Every device holds only its slice: the full embedding was never put on one device.
  emb = flat["embedder/input_embedding"]
  assert {s.data.shape for s in emb.addressable_shards} == {(cfg.vocab_size // 4, cfg.embed_dim // 2)}
  assert len({s.device for s in emb.addressable_shards}) == 8

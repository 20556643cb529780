"""Sharded forward on 8 simulated CPU devices equals the single-device forward."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P

from jax_sft import config as model_config
from jax_sft.model import sharding
from jax_sft.model.gemma import Transformer


def test_logical_axes_cover_every_param_and_adapter():
  for name in ("tiny_gemma1", "tiny_gemma3"):
    cfg = model_config.preset(name)
    lcfg = model_config.LoraConfig(enabled=True, rank=4)
    shapes = jax.eval_shape(Transformer(cfg, lcfg).init, jax.random.key(0), jnp.ones((1, 4), jnp.int32))
    axes = sharding.logical_axes(shapes["params"], cfg)
    assert axes["layer_0"]["attn"]["kv_einsum"]["w"] == ("stack", "kv_heads", "embed", "head_dim")
    gating = axes["layer_0"]["mlp"]["gating_einsum"]["w"]
    assert gating == (("stack", "mlp", "embed") if cfg.gating_layout == "gemma3" else ("stack", "embed", "mlp"))
    lora_axes = sharding.logical_axes(shapes["lora"], cfg)
    assert lora_axes["layer_0"]["attn"]["q_einsum"]["b"] == ("lora_rank", "heads", "head_dim")


def test_unknown_param_is_named():
  with pytest.raises(ValueError, match="layer_0/attn/mystery"):
    sharding.logical_axes({"layer_0": {"attn": {"mystery": {"w": np.zeros((2, 2))}}}},
                          model_config.preset("tiny_gemma1"))


def test_kv_heads_one_falls_back_to_replication():
  mesh = jax.make_mesh((1, 4, 2), ("data", "fsdp", "tensor"), axis_types=(AxisType.Auto,) * 3)
  spec = sharding.spec_for(("stack", "kv_heads", "embed", "head_dim"), (2, 1, 64, 16), mesh)
  assert spec == P(None, None, "fsdp", None)
  spec = sharding.spec_for(("stack", "kv_heads", "embed", "head_dim"), (2, 2, 64, 16), mesh)
  assert spec == P(None, "tensor", "fsdp", None)


def test_sharded_forward_matches_single_device(assert_close):
  assert jax.device_count() == 8
  # kv_heads=2 splits over 'tensor'; two layers (local, global) keep the compile short
  cfg = dataclasses.replace(model_config.preset("tiny_gemma2"), num_layers=2,
                            attention_types=["local", "global"])
  lcfg = model_config.LoraConfig(enabled=True, rank=4)
  model = Transformer(cfg, lcfg)
  tokens = jax.random.randint(jax.random.key(1), (4, 16), 1, cfg.vocab_size)
  variables = model.init(jax.random.key(0), tokens)
  # non-zero B so the adapters contribute to the output
  variables["lora"] = jax.tree.map(lambda x: x + 0.01, variables["lora"])
  want = jax.jit(model.apply)(variables, tokens)

  mesh = jax.make_mesh((2, 2, 2), ("data", "fsdp", "tensor"), axis_types=(AxisType.Auto,) * 3)
  shardings = {k: sharding.named_shardings(v, mesh, cfg) for k, v in variables.items()}
  # PARAM_RULES: the vocab dim over tensor and fsdp together (it divides), embed replicated
  assert shardings["params"]["embedder"]["input_embedding"].spec == P(("tensor", "fsdp"), None)
  placed = jax.device_put(variables, shardings)
  tokens_sharded = jax.device_put(tokens, sharding.batch_sharding(mesh))

  @jax.jit
  def forward(v, t):
    with nn.logical_axis_rules(sharding.flax_rules()):
      return model.apply(v, t)
  with jax.set_mesh(mesh):
    got = forward(placed, tokens_sharded)
  assert len(got.sharding.device_set) == 8
  # reduction order differs across devices: float32 rounding only
  assert_close(got, want, rel=1e-5)

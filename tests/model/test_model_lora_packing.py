"""LoRA: a fresh adapter changes nothing; merged weights equal the adapter. Packing isolation."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_sft import config as model_config
from jax_sft.model import lora as lora_lib
from jax_sft.model.gemma import Transformer


@pytest.fixture(scope="module", params=["tiny_gemma2", "tiny_gemma3"])
def setup(request):
  cfg = model_config.preset(request.param)
  lcfg = model_config.LoraConfig(enabled=True, rank=4, alpha=8.0)
  model = Transformer(cfg, lcfg)
  tokens = jax.random.randint(jax.random.key(1), (2, 12), 1, cfg.vocab_size)
  params, lora = lora_lib.split(jax.jit(model.init)(jax.random.key(0), tokens))
  return cfg, lcfg, model, tokens, params, lora


def test_fresh_adapter_is_exactly_the_base(setup):
  cfg, lcfg, model, tokens, params, lora = setup
  base = jax.jit(Transformer(cfg).apply)({"params": params}, tokens)
  adapted = jax.jit(model.apply)({"params": params, "lora": lora}, tokens)
  assert np.array_equal(np.asarray(base), np.asarray(adapted))


def test_init_lora_matches_model_init(setup):
  cfg, lcfg, model, tokens, params, lora = setup
  fresh = lora_lib.init_lora(jax.random.key(0), cfg, lcfg)
  assert jax.tree.structure(fresh) == jax.tree.structure(lora)
  for path, x in jax.tree_util.tree_flatten_with_path(fresh)[0]:
    assert x.dtype == jnp.float32
    is_b = path[-1].key.endswith("b")
    assert (float(jnp.abs(x).max()) == 0) == is_b, path


def test_merged_equals_adapter(setup, assert_close):
  cfg, lcfg, model, tokens, params, lora = setup
  rng = np.random.default_rng(0)
  trained = jax.tree.map(lambda x: x + rng.normal(0, 0.05, x.shape).astype(np.float32), lora)
  adapted = jax.jit(model.apply)({"params": params, "lora": trained}, tokens)
  base = jax.jit(Transformer(cfg).apply)({"params": params}, tokens)
  assert float(jnp.abs(adapted - base).max()) > 1e-2  # the adapter does something
  merged = lora_lib.merge(params, trained, cfg, lcfg)
  got = jax.jit(Transformer(cfg).apply)({"params": merged}, tokens)
  # logits reach ~60 here: float32 rounding of the merged weights is ~1e-6 relative
  assert_close(got, adapted, rel=1e-5)


def test_targets_select_adapters():
  cfg = model_config.preset("tiny_gemma1")
  lcfg = model_config.LoraConfig(enabled=True, rank=2, targets=["query", "up"])
  lora = lora_lib.init_lora(jax.random.key(0), cfg, lcfg)
  assert set(lora["layer_0"]["attn"]) == {"q_einsum"}
  assert set(lora["layer_0"]["mlp"]["gating_einsum"]) == {"up_a", "up_b"}
  # An unknown target is refused when the config loads, naming the key.
  with pytest.raises(model_config.ConfigError, match="lora.targets.*bogus"):
    model_config.from_dict({"lora": {"targets": ["query", "bogus"]}})


@pytest.mark.parametrize("name", ["tiny_gemma1", "tiny_gemma2", "tiny_gemma3"])
def test_packed_row_equals_examples_alone(name, assert_close):
  cfg = model_config.preset(name)  # sliding window 8 < the longest example
  model = Transformer(cfg)
  lengths = [5, 11, 9]
  rng = np.random.default_rng(0)
  examples = [rng.integers(1, cfg.vocab_size, n).astype(np.int32) for n in lengths]
  L = sum(lengths) + 3  # trailing padding
  tokens = np.zeros((1, L), np.int32)
  positions = np.zeros((1, L), np.int32)
  segments = np.zeros((1, L), np.int32)
  start = 0
  for i, ex in enumerate(examples):
    tokens[0, start:start + len(ex)] = ex
    positions[0, start:start + len(ex)] = np.arange(len(ex))
    segments[0, start:start + len(ex)] = i + 1
    start += len(ex)
  params = jax.jit(model.init)(jax.random.key(0), tokens)["params"]
  apply = jax.jit(model.apply)
  packed = np.asarray(apply({"params": params}, tokens, positions, segments))
  start = 0
  for ex in examples:
    alone = np.asarray(apply({"params": params}, ex[None]))[0]
    assert_close(packed[0, start:start + len(ex)], alone, rel=1e-5)
    start += len(ex)

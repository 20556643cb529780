"""Parameter counts at the released sizes, by jax.eval_shape (nothing is allocated)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_sft import config as model_config
from jax_sft.model.gemma import Transformer


def _count(cfg, lora_cfg=None):
  shapes = jax.eval_shape(Transformer(cfg, lora_cfg).init, jax.random.key(0),
                          jnp.ones((1, 1), jnp.int32))
  return {k: int(sum(np.prod(x.shape) for x in jax.tree.leaves(v))) for k, v in shapes.items()}


# Published sizes, embeddings included (Gemma 1 2B: 2.51B; Gemma 2 2B: 2.61B; Gemma 3 1B: 1.0B).
@pytest.mark.parametrize("name,billions,tol", [("gemma1_2b", 2.506, 0.01), ("gemma2_2b", 2.614, 0.01),
                                               ("gemma3_1b", 1.000, 0.01)])
def test_param_counts(name, billions, tol):
  n = _count(model_config.preset(name))["params"]
  assert abs(n / 1e9 - billions) < tol, n


def test_lora_count_gemma2_2b():
  cfg = model_config.preset("gemma2_2b")
  lcfg = model_config.LoraConfig(enabled=True, rank=16, targets=["query", "kv", "output", "gate", "up", "down"])
  n = _count(cfg, lcfg)["lora"]
  D, F, N, K, H, r = 2304, 9216, 8, 4, 256, 16
  per_layer = r * (D + N * H) + r * (D + 2 * K * H) + r * (N * H + D) + 2 * r * (D + F) + r * (F + D)
  assert n == 26 * per_layer

"""Where a run's starting weights come from: a released checkpoint or a seeded random init.

A LoRA checkpoint stores only adapters plus `base_weights`, a reference this module
resolves again: a checkpoint path (any format jax_sft.model.formats reads) or
"random:SEED" for tiny test models.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp

from jax_sft import config as config_lib

PyTree = Any


def base_reference(cfg: config_lib.Config) -> str:
  """The reference to the base weights this run starts from."""
  path = getattr(cfg.model, "init_from", None)
  return path if path else f"random:{cfg.seed}"


def abstract_params(cfg: config_lib.Config) -> PyTree:
  """Shapes and dtypes of the base params (no memory used)."""
  from jax_sft.model.gemma import Transformer
  model = Transformer(cfg.model)
  tokens = jnp.zeros((1, 1), jnp.int32)
  return jax.eval_shape(
      lambda: model.init(jax.random.PRNGKey(0), tokens, tokens, tokens + 1))["params"]


def random_params(cfg: config_lib.Config, seed: int, shardings: Optional[PyTree] = None):
  """Seeded random base params, created in place with `shardings` (jit out_shardings).

  Training from scratch (tiny configs): the tied embedding is scaled to std 1/sqrt(D) so
  the first logits are O(1) rather than O(sqrt(D)) (a first loss near ln V, not 30).
  """
  from jax_sft.model.gemma import Transformer
  model = Transformer(cfg.model)
  tokens = jnp.zeros((1, 1), jnp.int32)

  def init(rng):
    params = model.init(rng, tokens, tokens, tokens + 1)["params"]
    emb = params["embedder"]["input_embedding"]
    params["embedder"]["input_embedding"] = emb * jnp.asarray(cfg.model.embed_dim**-0.5, emb.dtype)
    return params

  from jax_sft.train.step import compiler_options
  return jax.jit(init, out_shardings=shardings,
                 compiler_options=compiler_options(cfg.train.xla_opt_level))(jax.random.PRNGKey(seed))


def load_base(cfg: config_lib.Config, reference: Optional[str] = None,
              shardings: Optional[PyTree] = None) -> PyTree:
  """The base params named by `reference` (default: the config's), placed by `shardings`."""
  reference = reference or base_reference(cfg)
  if reference.startswith("random:"):
    params = random_params(cfg, int(reference.split(":", 1)[1]), shardings)
  else:
    from jax_sft.model import formats
    # Under LoRA the frozen base is read straight into its storage dtype (no second copy).
    dtype = cfg.lora.base_dtype if cfg.lora.enabled else None
    params = formats.load_params(reference, cfg.model, shardings=shardings, dtype=dtype)
  if cfg.lora.enabled and cfg.lora.base_dtype != "float32":
    # Frozen base weights may live in bfloat16; the adapters stay float32.
    params = jax.tree.map(lambda x: x.astype(cfg.lora.base_dtype), params)
  return params


def init_adapters(cfg: config_lib.Config, seed: int) -> PyTree:
  """Fresh LoRA adapters (B = 0) for `cfg`."""
  from jax_sft.model import lora
  return lora.init_lora(jax.random.PRNGKey(seed + 1), cfg.model, cfg.lora)

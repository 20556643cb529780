"""Where weights come from: a released checkpoint, a training run, or a seeded random init.

A LoRA checkpoint stores only adapters plus `base_weights`, a reference this module
resolves again: a checkpoint path (a released format, or another training run) or
"random:SEED" for tiny test models. `load` is the one entry point for "weights at PATH"
(generate, eval, export, warm starts): a training run's model with its LoRA merged, or
a released checkpoint shaped by the config. Paths may be gs:// URLs: a run is read there by
Orbax; released weights are copied to a local cache first (their readers need files).
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp

from jax_sft import config as config_lib
from jax_sft import storage
from jax_sft.model import formats
from jax_sft.model import lora as lora_lib
from jax_sft.model import params as params_lib
from jax_sft.model.gemma import Transformer
from jax_sft.train import checkpoint as ckpt_lib
from jax_sft.train.step import compiler_options

PyTree = Any


def base_reference(cfg: config_lib.Config) -> str:
  """The reference to the base weights this run starts from."""
  return cfg.model.init_from or f"random:{cfg.seed}"


def base_dtype(cfg: config_lib.Config) -> str:
  """The dtype the base weights are stored in: under LoRA the frozen base may be bfloat16."""
  return str(cfg.lora.base_dtype if cfg.lora.enabled else cfg.model.param_dtype)


def abstract_base(cfg: config_lib.Config) -> PyTree:
  """Shapes and storage dtypes of the base params, from the weight table (no memory used)."""
  dtype = jnp.dtype(base_dtype(cfg))
  return formats.shapes.unflatten({p: jax.ShapeDtypeStruct(s, dtype)
                                   for p, s in params_lib.shapes(cfg.model).items()})


def abstract_adapters(cfg: config_lib.Config) -> PyTree:
  """Shapes of the LoRA adapters (float32)."""
  return jax.eval_shape(lambda: init_adapters(cfg, cfg.seed))


def random_params(cfg: config_lib.Config, seed: int, shardings: Optional[PyTree] = None):
  """Seeded random base params, created in place with `shardings` (jit out_shardings).

  Training from scratch (tiny configs): the tied embedding is scaled to std 1/sqrt(D) so
  the first logits are O(1) rather than O(sqrt(D)) (a first loss near ln V, not 30).
  """
  model = Transformer(cfg.model)
  tokens = jnp.zeros((1, 1), jnp.int32)

  def init(rng):
    params = model.init(rng, tokens, tokens, tokens + 1)["params"]
    emb = params["embedder"]["input_embedding"]
    params["embedder"]["input_embedding"] = emb * jnp.asarray(cfg.model.embed_dim**-0.5, emb.dtype)
    return params

  return jax.jit(init, out_shardings=shardings,
                 compiler_options=compiler_options(cfg.train.xla_opt_level))(jax.random.PRNGKey(seed))


def load_base(cfg: config_lib.Config, reference: Optional[str] = None,
              shardings: Optional[PyTree] = None) -> PyTree:
  """The base params named by `reference` (default: the config's), in their storage dtype,
  placed by `shardings`."""
  reference = reference or base_reference(cfg)
  dtype = base_dtype(cfg)
  if reference.startswith("random:"):
    params = random_params(cfg, int(reference.split(":", 1)[1]), shardings)
  elif ckpt_lib.is_run(reference):
    params = load(reference, cfg.model, shardings)
  else:  # read straight into the storage dtype (no second copy)
    params = formats.load_params(storage.local_copy(reference), cfg.model, shardings=shardings,
                                 dtype=dtype)
  return jax.tree.map(lambda x: x.astype(dtype) if x.dtype != jnp.dtype(dtype) else x, params)


def init_adapters(cfg: config_lib.Config, seed: int) -> PyTree:
  """Fresh LoRA adapters (B = 0) for `cfg`."""
  return lora_lib.init_lora(jax.random.PRNGKey(seed + 1), cfg.model, cfg.lora)


def load_for_inference(path: str, shardings: Optional[PyTree] = None):
  """(Config, params, lora_params_or_None) from a run or checkpoint dir, for
  generate/eval/export. Under LoRA the base weights come from the saved reference."""
  ckpt, step = ckpt_lib.open_read_only(path)
  cfg = ckpt_lib.config_from_checkpoint(ckpt, step)
  meta = ckpt.read_json(step, "meta")
  saved = ckpt.saved_params_metadata(step)
  trainable = ckpt.restore_params(step, saved, shardings if not cfg.lora.enabled else None)
  if not cfg.lora.enabled:
    return cfg, trainable, None
  base = load_base(cfg, meta.get("base_weights"), shardings=shardings)
  return cfg, base, trainable


def load(path: str, model_cfg: config_lib.ModelConfig, shardings: Optional[PyTree] = None):
  """The model at `path`: a training run's (LoRA merged, checked against `model_cfg`) or a
  released checkpoint read as `model_cfg`."""
  if not ckpt_lib.is_run(path):
    return formats.load_params(storage.local_copy(path), model_cfg, shardings)
  run_cfg, params, adapters = load_for_inference(path, shardings)
  if adapters is not None:  # (restored unplaced: as host arrays they follow the base's placement)
    params = lora_lib.merge(params, jax.device_get(adapters), run_cfg.model, run_cfg.lora)
  found = {p: tuple(x.shape) for p, x in formats.shapes.flatten(params).items()}
  formats.check_shapes(found, model_cfg, source=path)
  return params


def model_config_at(path: str) -> Optional[config_lib.ModelConfig]:
  """The ModelConfig the checkpoint at `path` carries (a run's config, HF/Keras config.json)."""
  if ckpt_lib.is_run(path):
    ckpt, step = ckpt_lib.open_read_only(path)
    return ckpt_lib.config_from_checkpoint(ckpt, step).model
  return formats.config_from_checkpoint(storage.local_copy(path))

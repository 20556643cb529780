"""The parameter layout every format maps to: expected shapes, validation, placement.

Paths are '/'-joined keys of our param tree (the Kaggle Flax layout without the leading
`transformer/`), e.g. 'layer_0/attn/q_einsum/w'. Shapes come from ModelConfig alone, so a
checkpoint can be checked before anything is read or the model is built.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jax_sft.model.config import ModelConfig

Params = dict[str, Any]


class CheckpointMismatch(ValueError):
  """A checkpoint whose names or shapes do not match the chosen config."""


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
  """{'/'-joined param path: shape} for `cfg`, in checkpoint order (embedder, layers, final norm)."""
  d, n, k, h, f, v = (cfg.embed_dim, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim,
                      cfg.mlp_dim, cfg.vocab_size)
  if cfg.gating_layout not in ("gemma2", "gemma3"):
    raise ValueError(f"model.gating_layout={cfg.gating_layout!r} is not 'gemma2' or 'gemma3'")
  gating = (2, d, f) if cfg.gating_layout == "gemma2" else (2, f, d)
  shapes = {"embedder/input_embedding": (v, d)}
  for i in range(cfg.num_layers):
    p = f"layer_{i}/"
    shapes[p + "attn/q_einsum/w"] = (n, d, h)
    shapes[p + "attn/kv_einsum/w"] = (2, k, d, h)
    shapes[p + "attn/attn_vec_einsum/w"] = (n, h, d)
    if cfg.qk_norm:
      shapes[p + "attn/_query_norm/scale"] = (h,)
      shapes[p + "attn/_key_norm/scale"] = (h,)
    shapes[p + "mlp/gating_einsum/w"] = gating
    shapes[p + "mlp/linear/w"] = (f, d)
    shapes[p + "pre_attention_norm/scale"] = (d,)
    shapes[p + "pre_ffw_norm/scale"] = (d,)
    if cfg.post_norms:
      shapes[p + "post_attention_norm/scale"] = (d,)
      shapes[p + "post_ffw_norm/scale"] = (d,)
  shapes["final_norm/scale"] = (d,)
  return shapes


def check_shapes(found: Mapping[str, tuple[int, ...]], cfg: ModelConfig, source: str) -> None:
  """Raises CheckpointMismatch naming the first wrong shape, then missing/unexpected names.

  `found` maps our param paths to the shapes a checkpoint holds; `source` names the file.
  """
  want = expected_shapes(cfg)
  preset = f" (preset {cfg.preset})" if cfg.preset else ""
  for path, shape in want.items():
    if path in found and tuple(found[path]) != tuple(shape):
      raise CheckpointMismatch(
          f"{source}: parameter {path!r} has shape {tuple(found[path])} in the checkpoint"
          f" but the config{preset} expects {tuple(shape)}")
  missing = [p for p in want if p not in found]
  unexpected = [p for p in found if p not in want]
  if missing or unexpected:
    parts = []
    if missing:
      parts.append(f"missing {len(missing)} parameter(s), first {missing[:5]}")
    if unexpected:
      parts.append(f"unexpected {len(unexpected)} parameter(s), first {unexpected[:5]}")
    raise CheckpointMismatch(f"{source}: " + "; ".join(parts) + f" for the config{preset}")


def flatten(params: Mapping[str, Any]) -> dict[str, Any]:
  """Nested param dict -> {'a/b/c': leaf}."""
  out = {}
  for key, value in params.items():
    if isinstance(value, Mapping):
      for sub, leaf in flatten(value).items():
        out[f"{key}/{sub}"] = leaf
    else:
      out[key] = value
  return out


def unflatten(flat: Mapping[str, Any]) -> Params:
  """{'a/b/c': leaf} -> nested dict."""
  out: Params = {}
  for path, leaf in flat.items():
    *parents, name = path.split("/")
    node = out
    for p in parents:
      node = node.setdefault(p, {})
    node[name] = leaf
  return out


def sharding_lookup(shardings: Any) -> Callable[[str], jax.sharding.Sharding]:
  """Turns the `shardings` argument of the loaders into path -> Sharding.

  Accepts None (everything on the first device), one Sharding for every parameter,
  or a pytree of Shardings shaped like the params (nested dict or flat '/'-joined dict).
  """
  if shardings is None:
    single = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return lambda path: single
  if isinstance(shardings, jax.sharding.Sharding):
    return lambda path: shardings
  flat = flatten(shardings)

  def lookup(path: str) -> jax.sharding.Sharding:
    if path not in flat:
      raise KeyError(f"shardings has no entry for parameter {path!r}")
    return flat[path]

  return lookup


def resolve_dtype(cfg: ModelConfig, dtype: Any) -> np.dtype:
  """The dtype parameters are cast to: `dtype` if given, else `cfg.param_dtype`."""
  return np.dtype(jnp.dtype(dtype if dtype is not None else cfg.param_dtype))


def place(host_array: np.ndarray, sharding: jax.sharding.Sharding, dtype: np.dtype) -> jax.Array:
  """Puts a host array onto `sharding`, each device receiving only its own slice.

  `jax.make_array_from_callback` asks for one index per addressable shard, so no device
  ever holds the whole array unless its sharding says so.
  """
  host_array = np.asarray(host_array)
  return jax.make_array_from_callback(
      host_array.shape, sharding,
      lambda index: np.ascontiguousarray(host_array[index].astype(dtype, copy=False)))


def random_params(cfg: ModelConfig, seed: int = 0, dtype: Any = None) -> Params:
  """Random host (numpy) params of `cfg`'s shapes, for tests and benchmarks; norms non-zero too."""
  rng = np.random.default_rng(seed)
  dtype = resolve_dtype(cfg, dtype)
  flat = {path: (rng.standard_normal(shape, dtype=np.float32) * 0.5).astype(dtype)
          for path, shape in expected_shapes(cfg).items()}
  return unflatten(flat)

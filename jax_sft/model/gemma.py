"""The Gemma decoder (Gemma 1, 2 and 3 text models) as one Flax Linen module.

    logits_BTV = Transformer(cfg, lora_cfg).apply(
        {'params': params, 'lora': lora}, tokens_BT, positions_BT, segment_ids_BT)

Packed rows: `segment_ids` (0 = padding) keep examples apart, `positions` restart at 0 for
each example. The param tree is Kaggle's Flax checkpoint tree without `transformer/`.
See modules.py for the dimension alphabet.
"""

from __future__ import annotations

import math
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jax_sft.config import GLOBAL, LoraConfig, ModelConfig, Remat
from jax_sft.model import attention as attention_lib
from jax_sft.model import params as params_lib
from jax_sft.model.attention import attention_mask, softcap
from jax_sft.model.modules import Block, RMSNorm

REMAT_POLICIES = {
    Remat.full: None,  # save nothing: recompute the whole layer in the backward pass
    # keep the weight matmuls' outputs, recompute attention scores and elementwise work
    Remat.dots: jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


class Embedder(nn.Module):
  """Tied input/output embedding (V, D)."""

  cfg: ModelConfig

  def setup(self):
    self.input_embedding = self.param(
        "input_embedding", nn.initializers.normal(1.0),
        params_lib.weight(self.cfg, "embedder/input_embedding").shape(self.cfg),
        jnp.dtype(self.cfg.param_dtype))

  def encode(self, tokens_BT):
    """Embedding rows times sqrt(D), the factor cast to the activation dtype first."""
    dtype = jnp.dtype(self.cfg.compute_dtype)
    x_BTD = jnp.take(self.input_embedding, tokens_BT, axis=0).astype(dtype)
    return x_BTD * jnp.asarray(math.sqrt(self.cfg.embed_dim), dtype)

  def decode(self, x_BTD):
    """Float32 logits (before any soft-cap)."""
    return jnp.einsum("BTD,VD->BTV", x_BTD, self.input_embedding.astype(x_BTD.dtype),
                      preferred_element_type=jnp.float32)


def init_cache(cfg: ModelConfig, batch: int, length: int, dtype=None) -> dict:
  """An empty KV cache for `length` positions: per layer k/v [B, S, K, H], plus key metadata."""
  dtype = jnp.dtype(dtype or cfg.compute_dtype)
  shape = (batch, length, cfg.num_kv_heads, cfg.head_dim)
  cache = {f"layer_{i}": {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)}
           for i in range(cfg.num_layers)}
  cache["positions"] = jnp.zeros((batch, length), jnp.int32)
  cache["segment_ids"] = jnp.zeros((batch, length), jnp.int32)  # 0: empty slot
  cache["index"] = jnp.zeros((), jnp.int32)  # where the next tokens are written
  return cache


class Transformer(nn.Module):
  """Gemma decoder. `lora` adds adapters (collection 'lora') on lora.targets."""

  config: ModelConfig
  lora: Optional[LoraConfig] = None

  @nn.compact
  def __call__(self, tokens_BT, positions_BT=None, segment_ids_BT=None, cache=None,
               return_hidden: bool = False, last_only: bool = False):
    """Logits_BTV (float32, final soft-cap applied), or hidden_BTD after the final norm.

    `last_only`: the logits of the last position only, [B, 1, V] (a prefill needs no more:
    with Gemma's 262K vocabulary, all of a 16 x 200 prompt batch's logits are 3.4 GB).

    With `cache` (from init_cache) the tokens are written at cache['index'] and the
    result is (output, new_cache).
    """
    cfg = self.config
    B, T = tokens_BT.shape
    if positions_BT is None:
      positions_BT = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
    if segment_ids_BT is None:
      segment_ids_BT = jnp.ones((B, T), jnp.int32)
    lora = self.lora if self.lora is not None and self.lora.enabled else None

    embedder = Embedder(cfg, name="embedder")
    x_BTD = embedder.encode(tokens_BT)
    x_BTD = nn.with_logical_constraint(x_BTD, ("batch", "length", "embed"))

    if cache is None:
      k_pos_BS, k_seg_BS, index = positions_BT, segment_ids_BT, None
    else:
      index = cache["index"]
      k_pos_BS = jax.lax.dynamic_update_slice_in_dim(cache["positions"], positions_BT, index, 1)
      k_seg_BS = jax.lax.dynamic_update_slice_in_dim(cache["segment_ids"], segment_ids_BT, index, 1)
    # The splash kernel masks inside (segment ids, causal, window): no [B, T, S] mask.
    splash = cache is None and attention_lib.use_splash(cfg, T)
    masks = {w: None if splash else attention_mask(positions_BT, segment_ids_BT, k_pos_BS,
                                                   k_seg_BS, w)
             for w in {None, cfg.sliding_window}}

    block_cls = Block
    if cfg.remat != Remat.none:
      block_cls = nn.remat(Block, policy=REMAT_POLICIES[cfg.remat], prevent_cse=True)

    new_cache = {}
    for i, kind in enumerate(cfg.layer_types()):
      local = kind != GLOBAL
      base = cfg.rope_base_local if local else cfg.rope_base_global
      rope_scale = 1.0 if local else cfg.rope_scale_global
      layer_cache = None if cache is None else cache[f"layer_{i}"]
      window = cfg.sliding_window if local else None
      block = block_cls(cfg, base, lora, rope_scale, window, name=f"layer_{i}")
      x_BTD, new_cache[f"layer_{i}"] = block(
          x_BTD, positions_BT, segment_ids_BT, masks[window], layer_cache, index)
    x_BTD = RMSNorm(jnp.dtype(cfg.param_dtype), name="final_norm")(x_BTD)

    if last_only:
      x_BTD = x_BTD[:, -1:]
    out = x_BTD if return_hidden else softcap(embedder.decode(x_BTD), cfg.final_softcap)
    if cache is None:
      return out
    new_cache.update(positions=k_pos_BS, segment_ids=k_seg_BS, index=index + T)
    return out, new_cache

"""Gemma building blocks: RMSNorm, einsum projections (with LoRA), attention, MLP, block.

Dimension alphabet (einsum strings and array-name suffixes):
  B batch, T query length, S key length, D embed, N heads, K kv heads, G heads per kv head,
  H head dim, F mlp width, V vocab, C stacked weights (k/v, gate/up), r LoRA rank.
Parameter names are those of Kaggle's Flax checkpoints, so they restore without renaming.
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jax_sft.config import LoraConfig, ModelConfig
from jax_sft.model import lora as lora_lib
from jax_sft.model import params as params_lib

# Large negative rather than -inf: a fully masked (padding) row stays finite.
NEG_INF = -2.3819763e38


def softcap(x: jax.Array, cap: Optional[float]) -> jax.Array:
  """tanh(x / cap) * cap, or x when cap is None."""
  return x if cap is None else jnp.tanh(x / cap) * cap


class RMSNorm(nn.Module):
  """x * rsqrt(mean(x^2) + 1e-6) * (1 + scale), computed in float32."""

  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    scale = self.param("scale", nn.initializers.zeros_init(), (x.shape[-1],), self.param_dtype)
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + 1e-6)
    return (normed * (1.0 + scale.astype(jnp.float32))).astype(x.dtype)


class Einsum(nn.Module):
  """A weight `w`, shaped and applied as its row of the weight table says, plus LoRA.

  `spec` is the row (params.Weight); `adapters` the LoRA adapters enabled on it.
  """

  spec: params_lib.Weight
  cfg: ModelConfig
  adapters: tuple[lora_lib.Adapter, ...] = ()
  lora_rank: int = 0
  lora_scale: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    cfg = self.cfg
    dtype = jnp.dtype(cfg.compute_dtype)
    w = self.param("w", nn.initializers.normal(0.02), self.spec.shape(cfg),
                   jnp.dtype(cfg.param_dtype))
    y = jnp.einsum(self.spec.einsum, x, w.astype(dtype))
    for ad in self.adapters:
      a_shape, b_shape = ad.shapes(cfg, self.lora_rank)
      a = self.variable("lora", ad.prefix + "a", lambda s=a_shape: lora_lib.init_a(
          self.make_rng("params"), s)).value
      b = self.variable("lora", ad.prefix + "b", jnp.zeros, b_shape, jnp.float32).value
      delta = jnp.einsum(ad.eq_b, jnp.einsum(ad.eq_a, x, a.astype(dtype)), b.astype(dtype))
      delta = (delta * self.lora_scale).astype(y.dtype)
      y = y + delta if ad.index is None else y.at[ad.index].add(delta)
    return y


def projection(cfg: ModelConfig, path: str, lora: Optional[LoraConfig], name: str) -> Einsum:
  """The Einsum module for the layer weight at `path` (relative to a layer, e.g. 'attn/q_einsum/w')."""
  spec = params_lib.weight(cfg, path)
  if lora is None or not lora.enabled:
    return Einsum(spec, cfg, name=name)
  return Einsum(spec, cfg, lora_lib.adapters(spec, lora.targets), lora.rank, lora.scale,
                name=name)


def rope(x_BTNH: jax.Array, positions_BT: jax.Array, base: float, scale: float = 1.0) -> jax.Array:
  """Rotary embedding, first half / second half of H (google-deepmind/gemma layout)."""
  half = x_BTNH.shape[-1] // 2
  timescale = base ** (2 * jnp.arange(half, dtype=jnp.float32) / x_BTNH.shape[-1])
  angle = positions_BT[..., None, None].astype(jnp.float32) / timescale / scale
  sin, cos = jnp.sin(angle), jnp.cos(angle)
  x1, x2 = jnp.split(x_BTNH.astype(jnp.float32), 2, axis=-1)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x_BTNH.dtype)


def attention_mask(q_pos_BT, q_seg_BT, k_pos_BS, k_seg_BS, window: Optional[int]) -> jax.Array:
  """[B, T, S] bool: same example (segment > 0), causal by position, within the window.

  The window is keras-hub's and gemma's: a key is visible while q_pos - k_pos < window.
  """
  mask = (q_seg_BT[:, :, None] == k_seg_BS[:, None, :]) & (k_seg_BS[:, None, :] != 0)
  delta = q_pos_BT[:, :, None] - k_pos_BS[:, None, :]
  mask &= delta >= 0
  if window is not None:
    mask &= delta < window
  return mask


class Attention(nn.Module):
  """Grouped-query attention with soft-cap, optional QK-norm, RoPE and a KV cache."""

  cfg: ModelConfig
  rope_base: float
  lora: Optional[LoraConfig] = None
  rope_scale: float = 1.0

  @nn.compact
  def __call__(self, x_BTD, positions_BT, mask_BTS, cache: Optional[dict] = None,
               cache_index: Optional[jax.Array] = None):
    cfg = self.cfg
    N, K, H = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    q_BTNH = projection(cfg, "attn/q_einsum/w", self.lora, "q_einsum")(x_BTD)
    k_BSKH, v_BSKH = projection(cfg, "attn/kv_einsum/w", self.lora, "kv_einsum")(x_BTD)
    if cfg.qk_norm:
      pdt = jnp.dtype(cfg.param_dtype)
      q_BTNH = RMSNorm(pdt, name="_query_norm")(q_BTNH)
      k_BSKH = RMSNorm(pdt, name="_key_norm")(k_BSKH)
    q_BTNH = rope(q_BTNH, positions_BT, self.rope_base, self.rope_scale)
    q_BTNH = q_BTNH * jnp.asarray(cfg.scale, q_BTNH.dtype)
    k_BSKH = rope(k_BSKH, positions_BT, self.rope_base, self.rope_scale)

    new_cache = None
    if cache is not None:  # write this step's keys at cache_index, attend to the whole cache
      k_BSKH = jax.lax.dynamic_update_slice_in_dim(cache["k"], k_BSKH.astype(cache["k"].dtype),
                                                   cache_index, axis=1)
      v_BSKH = jax.lax.dynamic_update_slice_in_dim(cache["v"], v_BSKH.astype(cache["v"].dtype),
                                                   cache_index, axis=1)
      new_cache = {"k": k_BSKH, "v": v_BSKH}

    B, T = q_BTNH.shape[:2]
    G = N // K
    q_BTKGH = q_BTNH.reshape(B, T, K, G, H)
    logits_BTKGS = jnp.einsum("BTKGH,BSKH->BTKGS", q_BTKGH, k_BSKH.astype(q_BTNH.dtype))
    logits_BTKGS = softcap(logits_BTKGS.astype(jnp.float32), cfg.attn_softcap)
    logits_BTKGS = jnp.where(mask_BTS[:, :, None, None, :], logits_BTKGS, NEG_INF)
    probs_BTKGS = jax.nn.softmax(logits_BTKGS, axis=-1).astype(v_BSKH.dtype)
    enc_BTNH = jnp.einsum("BTKGS,BSKH->BTKGH", probs_BTKGS, v_BSKH).reshape(B, T, N, H)
    enc_BTNH = enc_BTNH.astype(q_BTNH.dtype)
    out_BTD = projection(cfg, "attn/attn_vec_einsum/w", self.lora, "attn_vec_einsum")(enc_BTNH)
    return out_BTD, new_cache


class FeedForward(nn.Module):
  """gelu_tanh(x W_gate) * (x W_up), then W_down; gate and up stacked in `gating_einsum`."""

  cfg: ModelConfig
  lora: Optional[LoraConfig] = None

  @nn.compact
  def __call__(self, x_BTD):
    cfg = self.cfg
    gate_BTF, up_BTF = projection(cfg, "mlp/gating_einsum/w", self.lora, "gating_einsum")(x_BTD)
    h_BTF = jax.nn.gelu(gate_BTF, approximate=True) * up_BTF
    h_BTF = nn.with_logical_constraint(h_BTF, ("batch", "length", "mlp"))
    return projection(cfg, "mlp/linear/w", self.lora, "linear")(h_BTF)


class Block(nn.Module):
  """One decoder layer: pre-norm attention and MLP, post-norms for Gemma 2/3, residuals."""

  cfg: ModelConfig
  rope_base: float
  lora: Optional[LoraConfig] = None
  rope_scale: float = 1.0

  @nn.compact
  def __call__(self, x_BTD, positions_BT, mask_BTS, cache=None, cache_index=None):
    cfg = self.cfg
    pdt = jnp.dtype(cfg.param_dtype)
    h_BTD = RMSNorm(pdt, name="pre_attention_norm")(x_BTD)
    h_BTD, new_cache = Attention(cfg, self.rope_base, self.lora, self.rope_scale, name="attn")(
        h_BTD, positions_BT, mask_BTS, cache, cache_index)
    if cfg.post_norms:
      h_BTD = RMSNorm(pdt, name="post_attention_norm")(h_BTD)
    x_BTD = x_BTD + h_BTD
    h_BTD = RMSNorm(pdt, name="pre_ffw_norm")(x_BTD)
    h_BTD = FeedForward(cfg, self.lora, name="mlp")(h_BTD)
    if cfg.post_norms:
      h_BTD = RMSNorm(pdt, name="post_ffw_norm")(h_BTD)
    x_BTD = nn.with_logical_constraint(x_BTD + h_BTD, ("batch", "length", "embed"))
    return x_BTD, new_cache

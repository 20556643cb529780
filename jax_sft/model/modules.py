"""Gemma building blocks: RMSNorm, einsum projections (with LoRA), attention, MLP, block.

Dimension alphabet (einsum strings and array-name suffixes):
  B batch, T query length, S key length, D embed, N heads, K kv heads, G heads per kv head,
  H head dim, F mlp width, V vocab, C stacked weights (k/v, gate/up), r LoRA rank,
  X the T x G query rows of one KV head (attention.py stacks them for its matmuls).
Parameter names are those of Kaggle's Flax checkpoints, so they restore without renaming.
"""

from __future__ import annotations

import math
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jax_sft.config import LoraConfig, ModelConfig
from jax_sft.model import attention as attention_lib
from jax_sft.model import lora as lora_lib
from jax_sft.model import params as params_lib
from jax_sft.model.attention import softcap  # noqa: F401  (re-exported: train/grpo_loss.py)

class RMSNorm(nn.Module):
  """x * rsqrt(mean(x^2) + 1e-6) * (1 + scale), computed in float32."""

  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    scale = self.param("scale", nn.initializers.zeros_init(), (x.shape[-1],), self.param_dtype)
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + 1e-6)
    return (normed * (1.0 + scale.astype(jnp.float32))).astype(x.dtype)


def _matmul(eq: str, x: jax.Array, w: jax.Array, flat: bool) -> jax.Array:
  """einsum(eq, x, w); with `flat`, as one 2D matmul [rows, in] @ [in, out].

  XLA:CPU turns the backward of a multi-dimensional einsum (contracting batch and length
  at once for a weight gradient) into full-size transposed copies of the activations; on
  bench-small they took a fifth of a step. Rows = x's leading letters, in = its trailing
  letters that w contracts (w's own dims are reordered to match, a copy of the weight).
  XLA:TPU assigns layouts itself, so TPU programs keep the einsum.
  """
  xs, rest = eq.split(",")
  ws, ys = rest.split("->")
  contract = "".join(c for c in xs if c in ws)
  lead, out = xs[:len(xs) - len(contract)], "".join(c for c in ws if c not in xs)
  if not flat or xs != lead + contract or ys != lead + out:
    return jnp.einsum(eq, x, w)
  w2 = jnp.einsum(f"{ws}->{contract}{out}", w) if ws != contract + out else w
  n_in = math.prod(x.shape[len(lead):])
  y2 = x.reshape(-1, n_in) @ w2.reshape(n_in, -1)
  return y2.reshape(*x.shape[:len(lead)], *w2.shape[len(contract):])


class Einsum(nn.Module):
  """A weight `w`, shaped and applied as its row of the weight table says, plus LoRA.

  `spec` is the row (params.Weight); `adapters` the LoRA adapters enabled on it. A stacked
  weight (a leading C axis: k/v, gate/up) returns a tuple of its C outputs, each from its
  own slice of `w`: the [C, ...] activation is never built, so neither is its pad-and-add
  cotangent (measured on bench-small: those copies cost a LoRA step more than its adapters).
  """

  spec: params_lib.Weight
  cfg: ModelConfig
  adapters: tuple[lora_lib.Adapter, ...] = ()
  lora_rank: int = 0
  lora_scale: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array):
    cfg = self.cfg
    dtype = jnp.dtype(cfg.compute_dtype)
    w = self.param("w", nn.initializers.normal(0.02), self.spec.shape(cfg),
                   jnp.dtype(cfg.param_dtype)).astype(dtype)
    eq, stacked = self.spec.einsum, "C" in self.spec.dims
    flat = attention_lib.target_platform() == "cpu"
    if stacked:
      axis = self.spec.dims.index("C")
      ys = [_matmul(eq.replace("C", ""), x, jnp.take(w, c, axis=axis), flat)
            for c in range(w.shape[axis])]
    else:
      ys = [_matmul(eq, x, w, flat)]
    with jax.named_scope("lora"):  # the adapters' ops, by name in profiles and HLO
      for ad in self.adapters:
        a_shape, b_shape = ad.shapes(cfg, self.lora_rank)
        a = self.variable("lora", ad.prefix + "a", lambda s=a_shape: lora_lib.init_a(
            self.make_rng("params"), s)).value
        b = self.variable("lora", ad.prefix + "b", jnp.zeros, b_shape, jnp.float32).value
        # The scale multiplies the rank-r activations, the smallest array on the way.
        xa = _matmul(ad.eq_a, x, a.astype(dtype), flat) * jnp.asarray(self.lora_scale, dtype)
        if ad.index is not None:  # an adapter on one slice of a stacked weight
          ys[ad.index] = ys[ad.index] + _matmul(ad.eq_b, xa, b.astype(dtype), flat).astype(dtype)
        elif stacked:  # one A shared by every slice, B with the C axis
          axis = ad.b_dims.index("C")
          ys = [y + _matmul(ad.eq_b.replace("C", ""), xa, jnp.take(b, c, axis=axis).astype(dtype),
                            flat).astype(dtype)
                for c, y in enumerate(ys)]
        else:
          ys[0] = ys[0] + _matmul(ad.eq_b, xa, b.astype(dtype), flat).astype(dtype)
    return tuple(ys) if stacked else ys[0]


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


class Attention(nn.Module):
  """Grouped-query attention with soft-cap, optional QK-norm, RoPE and a KV cache.

  With `mask_BTS` the core is XLA's (attention.causal_xla_attention, in query blocks when
  there is no KV cache); without, the splash kernel
  masks by `segment_ids_BT`, causally and within `window` (attention.splash_attention).
  """

  cfg: ModelConfig
  rope_base: float
  lora: Optional[LoraConfig] = None
  rope_scale: float = 1.0
  window: Optional[int] = None

  @nn.compact
  def __call__(self, x_BTD, positions_BT, segment_ids_BT, mask_BTS,
               cache: Optional[dict] = None, cache_index: Optional[jax.Array] = None):
    cfg = self.cfg
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

    if mask_BTS is None:
      enc_BTNH = attention_lib.splash_attention(q_BTNH, k_BSKH, v_BSKH, segment_ids_BT,
                                                self.window, cfg.attn_softcap)
    else:
      blocks = attention_lib.query_blocks(q_BTNH.shape[1]) if cache is None else 1
      enc_BTNH = attention_lib.causal_xla_attention(q_BTNH, k_BSKH, v_BSKH, mask_BTS,
                                                    cfg.attn_softcap, self.window, blocks)
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
  """One decoder layer: pre-norm attention and MLP, post-norms for Gemma 2/3, residuals.

  `mask_BTS` None: splash attention (segment ids, causal, `window`); see Attention.
  """

  cfg: ModelConfig
  rope_base: float
  lora: Optional[LoraConfig] = None
  rope_scale: float = 1.0
  window: Optional[int] = None

  @nn.compact
  def __call__(self, x_BTD, positions_BT, segment_ids_BT, mask_BTS, cache=None,
               cache_index=None):
    cfg = self.cfg
    pdt = jnp.dtype(cfg.param_dtype)
    h_BTD = RMSNorm(pdt, name="pre_attention_norm")(x_BTD)
    h_BTD, new_cache = Attention(cfg, self.rope_base, self.lora, self.rope_scale, self.window,
                                 name="attn")(h_BTD, positions_BT, segment_ids_BT, mask_BTS,
                                              cache, cache_index)
    if cfg.post_norms:
      h_BTD = RMSNorm(pdt, name="post_attention_norm")(h_BTD)
    x_BTD = x_BTD + h_BTD
    h_BTD = RMSNorm(pdt, name="pre_ffw_norm")(x_BTD)
    h_BTD = FeedForward(cfg, self.lora, name="mlp")(h_BTD)
    if cfg.post_norms:
      h_BTD = RMSNorm(pdt, name="post_ffw_norm")(h_BTD)
    x_BTD = nn.with_logical_constraint(x_BTD + h_BTD, ("batch", "length", "embed"))
    return x_BTD, new_cache

"""The attention core: XLA einsums on any backend, or the splash Pallas kernel on TPU.

Both take rotated, scaled queries q_BTNH and keys/values k_BSKH, v_BSKH (see modules.py for
the dimension alphabet) and return the attended values enc_BTNH.

`xla_attention` builds the [B, K, T, G, S] score block with an explicit [B, T, S] mask (by
positions, so it also serves the KV cache). `splash_attention` runs
`jax.experimental.pallas.ops.tpu.splash_attention`: it never holds the score block, skips
the blocks that the causal or sliding-window mask removes, and keeps examples of a packed
row apart with segment ids. Its mask is by index, which equals the XLA mask by position
because the packer writes each example's positions as 0, 1, 2, ... (data/loader.py).
Padding (segment 0) only attends to padding, so real tokens see exactly what they see on
the XLA path; padded positions carry no loss.

`model.attention` chooses: `xla`, `splash`, or `auto` (splash when the devices the step is
compiled for are TPUs, so `jax-sft plan` compiles the kernel through libtpu). On a CPU,
`splash` runs the kernel in Pallas interpret mode (tests/model/test_model_splash.py).
"""

from __future__ import annotations

import functools
import warnings
from typing import Optional

import jax
import jax.numpy as jnp
from jax.experimental.pallas.ops.tpu import splash_attention as splash
from jax.interpreters import pxla
from jax.sharding import Mesh, PartitionSpec

from jax_sft.config import ModelConfig
from jax_sft.config.choices import AttentionImpl
from jax_sft.model import sharding

# Large negative rather than -inf: a fully masked (padding) row stays finite.
NEG_INF = -2.3819763e38
# Splash tiles: the largest of these that divides the sequence (512 is MaxText's default
# for v5e; a kv tile must be a multiple of the 128 lanes).
_BLOCKS = (512, 256, 128)


def softcap(x: jax.Array, cap: Optional[float]) -> jax.Array:
  """tanh(x / cap) * cap, or x when cap is None."""
  return x if cap is None else jnp.tanh(x / cap) * cap


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


def query_blocks(seq_len: int) -> int:
  """How many query blocks causal_xla_attention uses for a training row of `seq_len`:
  blocks of at least 128 queries, at most 8 (bench-small, 512: 4 blocks, 1.06-1.12x the
  LoRA step's tokens/s in one sitting)."""
  n = min(8, seq_len // 128)
  while n > 1 and seq_len % n:
    n -= 1
  return max(n, 1)


def causal_xla_attention(q_BTNH, k_BSKH, v_BSKH, mask_BTS, cap: Optional[float],
                         window: Optional[int], blocks: int) -> jax.Array:
  """xla_attention in `blocks` query blocks, each over the keys it can see by index.

  For training rows only (no KV cache): the packer's layout is causal by index (a key after
  the query is in a later example or later in the same one), so query block i needs keys
  up to its own end, and, with a window, none `window` or more before its start. The score
  blocks shrink to (1 + ... + n) / n^2 of the square (n = 4: 62.5%), in time and memory.
  A fully masked (padding) row averages over its block's keys instead of all of them: no
  real token sees it and it carries no loss.
  """
  T, S = q_BTNH.shape[1], k_BSKH.shape[1]
  if blocks <= 1 or T != S or T % blocks:
    return xla_attention(q_BTNH, k_BSKH, v_BSKH, mask_BTS, cap)
  size, outs = T // blocks, []
  for i in range(blocks):
    t0, t1 = i * size, (i + 1) * size
    k0 = 0 if window is None else max(0, t0 - window + 1)
    outs.append(xla_attention(q_BTNH[:, t0:t1], k_BSKH[:, k0:t1], v_BSKH[:, k0:t1],
                              mask_BTS[:, t0:t1, k0:t1], cap))
  return jnp.concatenate(outs, axis=1)


def xla_attention(q_BTNH, k_BSKH, v_BSKH, mask_BTS, cap: Optional[float]) -> jax.Array:
  """Grouped-query attention over the whole score block; returns enc_BTNH in q's dtype.

  Each KV head's G query heads are stacked with the positions, X = T x G rows, so both
  score matmuls and all four of their gradients are batched over (B, K) and contract one
  dimension: on a CPU a two-dimension contraction (T and G, for dK and dV) costs a
  transposed copy of the [B, K, T, G, S] block each time (measured: 1.4x slower).
  """
  B, T, N, H = q_BTNH.shape
  K = k_BSKH.shape[2]
  G = N // K
  q_BKXH = jnp.swapaxes(q_BTNH.reshape(B, T, K, G, H), 1, 2).reshape(B, K, T * G, H)
  k_BKSH = jnp.swapaxes(k_BSKH, 1, 2).astype(q_BTNH.dtype)
  v_BKSH = jnp.swapaxes(v_BSKH, 1, 2)
  enc_BKXH = _core(q_BKXH, k_BKSH, v_BKSH, mask_BTS, cap)
  enc_BTKGH = jnp.swapaxes(enc_BKXH.reshape(B, K, T, G, H), 1, 2)
  return enc_BTKGH.reshape(B, T, N, H).astype(q_BTNH.dtype)


def _scores(q_BKXH, k_BKSH, mask_BTS, cap):
  """(soft-capped logits [B, K, T, G, S] before the mask, masked row max, row sum of exp)."""
  B, K, X, _ = q_BKXH.shape
  T, S = mask_BTS.shape[1:]
  logits_BKXS = jnp.einsum("BKXH,BKSH->BKXS", q_BKXH, k_BKSH)
  capped_BKTGS = softcap(logits_BKXS.astype(jnp.float32), cap).reshape(B, K, T, X // T, S)
  masked_BKTGS = _mask(capped_BKTGS, mask_BTS)
  max_BKTG1 = jnp.max(masked_BKTGS, axis=-1, keepdims=True)
  sum_BKTG1 = jnp.sum(jnp.exp(masked_BKTGS - max_BKTG1), axis=-1, keepdims=True)
  return capped_BKTGS, max_BKTG1, sum_BKTG1


def _mask(logits_BKTGS, mask_BTS):
  return jnp.where(mask_BTS[:, None, :, None, :], logits_BKTGS, NEG_INF)


def _probs(capped_BKTGS, mask_BTS, max_BKTG1, sum_BKTG1) -> jax.Array:
  B, K, T, G, S = capped_BKTGS.shape
  probs_BKTGS = jnp.exp(_mask(capped_BKTGS, mask_BTS) - max_BKTG1) / sum_BKTG1
  return probs_BKTGS.reshape(B, K, T * G, S)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _core(q_BKXH, k_BKSH, v_BKSH, mask_BTS, cap):
  """softmax(mask(softcap(q k^T))) v, with a backward pass that keeps one score block.

  Autodiff would keep four [B, K, T, G, S] blocks per layer for the backward pass (the
  tanh, the masked logits, the exponentials, the probabilities: 1.0 of bench-small's
  2.9 GiB at the peak). This keeps the soft-capped logits and two numbers per row, and the
  backward pass rebuilds the probabilities from them with one exp (the flash-attention
  backward pass, over the whole block). A rematerialized core would keep none, but
  XLA:CPU drops optimization barriers and merges the recomputation back into the forward
  pass, so on a CPU remat keeps all four.
  """
  capped_BKTGS, max_BKTG1, sum_BKTG1 = _scores(q_BKXH, k_BKSH, mask_BTS, cap)
  probs_BKXS = _probs(capped_BKTGS, mask_BTS, max_BKTG1, sum_BKTG1)
  return jnp.einsum("BKXS,BKSH->BKXH", probs_BKXS.astype(v_BKSH.dtype), v_BKSH)


def _core_fwd(q_BKXH, k_BKSH, v_BKSH, mask_BTS, cap):
  capped_BKTGS, max_BKTG1, sum_BKTG1 = _scores(q_BKXH, k_BKSH, mask_BTS, cap)
  probs_BKXS = _probs(capped_BKTGS, mask_BTS, max_BKTG1, sum_BKTG1)
  enc_BKXH = jnp.einsum("BKXS,BKSH->BKXH", probs_BKXS.astype(v_BKSH.dtype), v_BKSH)
  # The log of the sum, not the sum: XLA:CPU fuses the forward pass's broadcast of the sum
  # into its reduction, and a saved sum would keep that [B, K, T, G, S] broadcast alive.
  return enc_BKXH, (q_BKXH, k_BKSH, v_BKSH, mask_BTS, capped_BKTGS, max_BKTG1,
                    jnp.log(sum_BKTG1))


def _after(x: jax.Array, g: jax.Array) -> jax.Array:
  """x, made to depend on g (x + 0 * g[0]). XLA:CPU drops optimization barriers, and would
  merge the backward pass's rebuilt probabilities with the forward pass's (CSE) or compute
  them before the loss: either way the block would stay live across the whole step."""
  return x + (g.reshape(-1)[0] * 0).astype(x.dtype)


def _core_bwd(cap, residuals, d_enc_BKXH):
  q_BKXH, k_BKSH, v_BKSH, mask_BTS, capped_BKTGS, max_BKTG1, log_sum_BKTG1 = residuals
  B, K, T, G, S = capped_BKTGS.shape
  # exp((l - max) - log sum): a fully masked (padding) row gets 1/S, as in the forward pass.
  probs_BKXS = jnp.exp(_mask(capped_BKTGS, mask_BTS) - _after(max_BKTG1, d_enc_BKXH)
                       - log_sum_BKTG1).reshape(B, K, T * G, S)
  d_v_BKSH = jnp.einsum("BKXS,BKXH->BKSH", probs_BKXS.astype(v_BKSH.dtype), d_enc_BKXH)
  d_probs_BKXS = jnp.einsum("BKXH,BKSH->BKXS", d_enc_BKXH, v_BKSH,
                            preferred_element_type=jnp.float32)
  # softmax: p * (dp - sum(p dp)); soft-cap: d(c tanh(z / c))/dz = 1 - (l / c)^2.
  d_logits_BKXS = probs_BKXS * (
      d_probs_BKXS - jnp.sum(probs_BKXS * d_probs_BKXS, axis=-1, keepdims=True))
  if cap is not None:
    tanh_BKXS = _after(capped_BKTGS.reshape(probs_BKXS.shape) / cap, d_enc_BKXH)
    d_logits_BKXS = d_logits_BKXS * (1.0 - jnp.square(tanh_BKXS))
  # Masked logits are constants (NEG_INF): no gradient, even in a fully masked row.
  keep_BKXS = jnp.broadcast_to(mask_BTS[:, None, :, None, :], (B, K, T, G, S)).reshape(
      probs_BKXS.shape)
  d_logits_BKXS = jnp.where(keep_BKXS, d_logits_BKXS, 0.0).astype(q_BKXH.dtype)
  d_q_BKXH = jnp.einsum("BKXS,BKSH->BKXH", d_logits_BKXS, k_BKSH)
  d_k_BKSH = jnp.einsum("BKXS,BKXH->BKSH", d_logits_BKXS, q_BKXH)
  return d_q_BKXH, d_k_BKSH, d_v_BKSH.astype(v_BKSH.dtype), None


_core.defvjp(_core_fwd, _core_bwd)


def _current_mesh() -> Optional[Mesh]:
  """The mesh the step is being traced under (`with mesh:` in train/step.py), or None."""
  with warnings.catch_warnings():  # the `with mesh:` context is deprecated in JAX 0.8+
    warnings.simplefilter("ignore", DeprecationWarning)
    mesh = pxla.thread_resources.env.physical_mesh
  return None if mesh.empty else mesh


def target_platform() -> str:
  """'tpu', 'cpu', ...: the platform of the devices this step is compiled for."""
  mesh = _current_mesh()
  return mesh.devices.flat[0].platform if mesh is not None else jax.default_backend()


def block_size(seq_len: int) -> Optional[int]:
  """The splash tile for this sequence length, or None when no tile divides it."""
  return next((b for b in _BLOCKS if seq_len % b == 0), None)


def use_splash(cfg: ModelConfig, seq_len: int) -> bool:
  """Whether the training path (no KV cache) runs the splash kernel for this config.

  `auto`: on TPU when the sequence is a multiple of 128. `splash` insists (an error if the
  sequence cannot be tiled); off a TPU it runs in interpret mode.
  """
  if cfg.attention == AttentionImpl.xla:
    return False
  tiles = block_size(seq_len) is not None
  if cfg.attention == AttentionImpl.splash:
    if not tiles:
      raise ValueError(f"model.attention=splash needs a sequence length that is a multiple of"
                       f" 128 (data.max_seq_len={seq_len}); use model.attention=auto or xla")
    return True
  return tiles and target_platform() == "tpu"


def _kernel(num_heads: int, seq_len: int, window: Optional[int], cap: Optional[float],
            interpret: bool):
  """The splash kernel for one shard: `num_heads` query heads, causal or windowed mask."""
  shape = (seq_len, seq_len)
  if window is None or window >= seq_len:
    mask = splash.CausalMask(shape)
  else:  # key k visible from query q while q - (window - 1) <= k <= q
    mask = splash.LocalMask(shape, window_size=(window - 1, 0), offset=0)
  b = block_size(seq_len)
  blocks = splash.BlockSizes(block_q=b, block_kv=b, block_kv_compute=b, block_q_dkv=b,
                             block_kv_dkv=b, block_kv_dkv_compute=b, block_q_dq=b,
                             block_kv_dq=b)
  return splash.make_splash_mha(splash.MultiHeadMask([mask] * num_heads), block_sizes=blocks,
                                head_shards=1, q_seq_shards=1, attn_logits_soft_cap=cap,
                                interpret=interpret)


def _specs(mesh: Mesh, q_shape, k_shape) -> tuple[PartitionSpec, PartitionSpec, PartitionSpec]:
  """shard_map specs (q, k/v, segment ids) from the activation rules (sharding.RULES).

  Heads are split only where query and key heads split alike (or there is one KV head),
  so every shard keeps whole groups of query heads with their KV head.
  """
  q_spec = sharding.spec_for(("batch", "length", "heads", "head_dim"), q_shape, mesh)
  k_spec = sharding.spec_for(("batch", "length", "kv_heads", "head_dim"), k_shape, mesh)
  if q_spec[2] != k_spec[2] and k_shape[2] > 1:
    q_spec = PartitionSpec(q_spec[0], None, None, None)
    k_spec = PartitionSpec(k_spec[0], None, None, None)
  return q_spec, k_spec, PartitionSpec(q_spec[0], None)


def splash_attention(q_BTNH, k_BSKH, v_BSKH, segment_ids_BT, window: Optional[int],
                     cap: Optional[float], *, interpret: Optional[bool] = None) -> jax.Array:
  """Causal (or sliding-window) attention by the splash kernel; returns enc_BTNH.

  segment_ids_BT: the packing's example ids (0 = padding). Runs per shard under shard_map
  when a mesh is active (a Pallas kernel is not partitioned by XLA). `interpret` defaults
  to True off a TPU.
  """
  if interpret is None:
    interpret = target_platform() != "tpu"
  dtype = q_BTNH.dtype

  def per_shard(q_BTNH, k_BSKH, v_BSKH, seg_BT):
    kernel = _kernel(q_BTNH.shape[2], q_BTNH.shape[1], window, cap, interpret)
    q_BNTH = jnp.swapaxes(q_BTNH, 1, 2)
    k_BKSH = jnp.swapaxes(k_BSKH.astype(dtype), 1, 2)
    v_BKSH = jnp.swapaxes(v_BSKH.astype(dtype), 1, 2)
    seg = splash.SegmentIds(q=seg_BT, kv=seg_BT)
    enc_BNTH = jax.vmap(kernel)(q_BNTH, k_BKSH, v_BKSH, segment_ids=seg)
    return jnp.swapaxes(enc_BNTH, 1, 2)

  mesh = _current_mesh()
  if mesh is None:
    return per_shard(q_BTNH, k_BSKH, v_BSKH, segment_ids_BT)
  q_spec, k_spec, seg_spec = _specs(mesh, q_BTNH.shape, k_BSKH.shape)
  return jax.shard_map(per_shard, mesh=mesh, in_specs=(q_spec, k_spec, k_spec, seg_spec),
                       out_specs=q_spec, check_vma=False)(q_BTNH, k_BSKH, v_BSKH,
                                                          segment_ids_BT)

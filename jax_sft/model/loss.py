"""Next-token cross-entropy from the final hidden states, without [B, T, V] float32 logits.

`chunked_cross_entropy` walks the sequence in chunks of `chunk` positions (all rows at once,
so a batch sharding stays intact). Its backward pass is fused into the forward one: while
the chunk's logits are live, the gradient of the loss with respect to them is
    dz = mask * (softmax(l) - onehot(target)) * (1 - tanh(z / cap)^2)      (l = softcap(z))
and is folded straight into d hidden (dz @ E) and d embedding (dz^T @ h). The backward pass
then only scales those by the incoming cotangent: three matmuls over [chunk, V] instead of
the four that a rematerialized autodiff chunk costs, and one elementwise sweep fewer.
Chunks whose loss_mask is all zero (prompt-only stretches) are skipped with lax.cond.
Measurements: docs/model.md ("Loss").
"""

from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp

# With a soft-cap the logits lie in [-cap, cap], so `cap` itself is a safe logsumexp
# stabiliser (no max pass) while exp(-2 * cap) stays a normal float32.
_CAP_AS_STABILISER = 40.0


def _logsumexp_terms(z_XV: jax.Array, cap: Optional[float]):
  """(logits, tanh or None, exp(logits - stab), logsumexp) of raw logits z."""
  if cap is None:
    l_XV, t_XV = z_XV, None
  else:
    t_XV = jnp.tanh(z_XV / cap)
    l_XV = t_XV * cap
  if cap is not None and cap <= _CAP_AS_STABILISER:
    stab_X = jnp.full(z_XV.shape[:-1], cap, jnp.float32)
  else:
    stab_X = jax.lax.stop_gradient(jnp.max(l_XV, axis=-1))
  e_XV = jnp.exp(l_XV - stab_X[..., None])
  sum_X = jnp.sum(e_XV, axis=-1)
  return l_XV, t_XV, e_XV, sum_X, stab_X + jnp.log(sum_X)


def _chunk(h_BCD, emb_VD, tgt_BC, mask_BC, cap, grads: bool, grad_emb: bool):
  """Loss sum of one chunk and, if `grads`, d loss / d h and d loss / d embedding."""
  z_BCV = jnp.einsum("BCD,VD->BCV", h_BCD, emb_VD, preferred_element_type=jnp.float32)
  l_BCV, t_BCV, e_BCV, sum_BC, lse_BC = _logsumexp_terms(z_BCV, cap)
  target_logit_BC = jnp.take_along_axis(l_BCV, tgt_BC[..., None], axis=-1)[..., 0]
  loss = jnp.sum(mask_BC * (lse_BC - target_logit_BC))
  if not grads:
    return loss, None, None
  # d loss / d logits, then through the soft-cap: d l / d z = 1 - tanh^2.
  dl_BCV = e_BCV * (mask_BC / sum_BC)[..., None]
  onehot_BCV = jax.lax.broadcasted_iota(jnp.int32, dl_BCV.shape, 2) == tgt_BC[..., None]
  dl_BCV = jnp.where(onehot_BCV, dl_BCV - mask_BC[..., None], dl_BCV)
  dz_BCV = dl_BCV if t_BCV is None else dl_BCV * (1.0 - jnp.square(t_BCV))
  dz_BCV = dz_BCV.astype(h_BCD.dtype)
  dh_BCD = jnp.einsum("BCV,VD->BCD", dz_BCV, emb_VD, preferred_element_type=jnp.float32)
  demb_VD = None
  if grad_emb:
    demb_VD = jnp.einsum("BCV,BCD->VD", dz_BCV, h_BCD, preferred_element_type=jnp.float32)
  return loss, dh_BCD, demb_VD


def _scan_chunks(h_nBCD, emb_VD, tgt_nBC, mask_nBC, cap, grads: bool, grad_emb: bool):
  """Sum of losses over chunks; with grads, also stacked dh and summed d embedding."""
  B, C, D = h_nBCD.shape[1:]
  V = emb_VD.shape[0]

  def body(carry, xs):
    loss_acc, demb_acc = carry
    h_BCD, tgt_BC, mask_BC = xs

    def compute(_):
      loss, dh, demb = _chunk(h_BCD, emb_VD, tgt_BC, mask_BC, cap, grads, grad_emb)
      return loss, (dh if grads else jnp.zeros((0,))), (demb if grad_emb else jnp.zeros((0,)))

    def skip(_):  # nothing to learn here: no logits at all
      return (jnp.zeros((), jnp.float32),
              jnp.zeros((B, C, D), jnp.float32) if grads else jnp.zeros((0,)),
              jnp.zeros((V, D), jnp.float32) if grad_emb else jnp.zeros((0,)))

    loss, dh, demb = jax.lax.cond(jnp.any(mask_BC > 0), compute, skip, None)
    return (loss_acc + loss, demb_acc + demb), dh

  init = (jnp.zeros((), jnp.float32), jnp.zeros((V, D) if grad_emb else (0,), jnp.float32))
  (loss, demb), dh = jax.lax.scan(body, init, (h_nBCD, tgt_nBC, mask_nBC))
  return loss, dh, demb


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _fused_loss(h_nBCD, emb_VD, tgt_nBC, mask_nBC, cap):
  return _scan_chunks(h_nBCD, emb_VD, tgt_nBC, mask_nBC, cap, False, False)[0]


def _fused_loss_fwd(h, emb, tgt, mask, cap):
  # symbolic_zeros: `.perturbed` tells whether the embedding is being differentiated
  # (it is not when only LoRA adapters train), so its [V, D] gradient can be skipped.
  grad_emb = emb.perturbed
  loss, dh, demb = _scan_chunks(h.value, emb.value, tgt.value, mask.value, cap, True, grad_emb)
  # Residuals in the inputs' dtypes (bfloat16 on TPU halves what waits for the backward).
  return loss, (dh.astype(h.value.dtype), demb.astype(emb.value.dtype))


def _fused_loss_bwd(cap, res, g):
  dh, demb = res
  d_emb = None if demb.shape == (0,) else (g * demb).astype(demb.dtype)
  return (g * dh).astype(dh.dtype), d_emb, None, None


_fused_loss.defvjp(_fused_loss_fwd, _fused_loss_bwd, symbolic_zeros=True)


def full_cross_entropy(hidden_BTD, embedding_VD, targets_BT, loss_mask_BT, *, final_softcap=None):
  """(loss_sum, token_count) from full [B, T, V] logits, by plain autodiff (the reference)."""
  z_BTV = jnp.einsum("BTD,VD->BTV", hidden_BTD, embedding_VD, preferred_element_type=jnp.float32)
  l_BTV = z_BTV if final_softcap is None else jnp.tanh(z_BTV / final_softcap) * final_softcap
  lse_BT = jax.nn.logsumexp(l_BTV, axis=-1)
  target_BT = jnp.take_along_axis(l_BTV, targets_BT[..., None], axis=-1)[..., 0]
  mask_BT = loss_mask_BT.astype(jnp.float32)
  return jnp.sum(mask_BT * (lse_BT - target_BT)), jnp.sum(mask_BT)


def chunked_cross_entropy(hidden_BTD, embedding_VD, targets_BT, loss_mask_BT, *, chunk: int,
                          final_softcap: Optional[float] = None):
  """(loss_sum, token_count): summed masked next-token loss and the number of masked-in tokens.

  hidden_BTD: final-norm output; embedding_VD: the tied embedding. chunk = positions per
  chunk (0: one pass over full logits). Divide loss_sum by token_count for the mean.
  """
  if chunk <= 0:
    return full_cross_entropy(hidden_BTD, embedding_VD, targets_BT, loss_mask_BT,
                              final_softcap=final_softcap)
  B, T, D = hidden_BTD.shape
  pad = (-T) % chunk
  mask_BT = loss_mask_BT.astype(jnp.float32)
  if pad:  # padded positions carry mask 0: they add nothing and get zero gradient
    hidden_BTD = jnp.pad(hidden_BTD, ((0, 0), (0, pad), (0, 0)))
    targets_BT = jnp.pad(targets_BT, ((0, 0), (0, pad)))
    mask_BT = jnp.pad(mask_BT, ((0, 0), (0, pad)))
  n = (T + pad) // chunk
  h_nBCD = hidden_BTD.reshape(B, n, chunk, D).swapaxes(0, 1)
  tgt_nBC = targets_BT.astype(jnp.int32).reshape(B, n, chunk).swapaxes(0, 1)
  mask_nBC = mask_BT.reshape(B, n, chunk).swapaxes(0, 1)
  loss = _fused_loss(h_nBCD, embedding_VD, tgt_nBC, mask_nBC, final_softcap)
  return loss, jnp.sum(mask_BT)

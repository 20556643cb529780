"""GRPO's arithmetic: group-normalized advantages and the clipped policy-ratio loss with a KL
penalty, over completion tokens only (Shao et al. 2024, DeepSeekMath, eq. 3).

    A_i = (r_i - mean(r_group)) / (std(r_group) + eps)                 per completion
    ratio_t = exp(logp_t - old_logp_t)                                 per completion token
    pg_t = -min(ratio_t * A, clip(ratio_t, 1 - epsilon, 1 + epsilon) * A)
    kl_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1                  (Schulman's k3, >= 0)
    loss = mean over completions of [ sum_t mask_t (pg_t + beta kl_t) / sum_t mask_t ]

`std` is the population standard deviation of the group (ddof 0). A group whose rewards
are all equal has advantages 0: it teaches nothing and only the KL term acts on it.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from jax_sft.model.modules import softcap

ADV_EPS = 1e-4


def group_advantages(rewards: np.ndarray, group: int, eps: float = ADV_EPS) -> np.ndarray:
  """[n] rewards of n/group consecutive groups -> their group-normalized advantages [n]."""
  r = np.asarray(rewards, np.float64).reshape(-1, group)
  adv = (r - r.mean(axis=1, keepdims=True)) / (r.std(axis=1, keepdims=True) + eps)
  return adv.reshape(-1).astype(np.float32)


def token_logprobs(hidden_BTD: jax.Array, embedding_VD: jax.Array, targets_BT: jax.Array,
                   final_softcap: Optional[float], chunk: int) -> jax.Array:
  """log p(target) at every position [B, T], float32, from the final hidden states.

  Computed `chunk` positions at a time under jax.checkpoint, so neither pass holds more
  than one [B, chunk, V] block of logits (the vocabulary is 256K).
  """
  B, T, D = hidden_BTD.shape
  chunk = T if chunk <= 0 else min(chunk, T)
  pad = (-T) % chunk
  if pad:
    hidden_BTD = jnp.pad(hidden_BTD, ((0, 0), (0, pad), (0, 0)))
    targets_BT = jnp.pad(targets_BT, ((0, 0), (0, pad)))
  n = (T + pad) // chunk

  @jax.checkpoint
  def one(h_BCD, tgt_BC):
    z_BCV = jnp.einsum("BCD,VD->BCV", h_BCD, embedding_VD.astype(h_BCD.dtype),
                       preferred_element_type=jnp.float32)
    l_BCV = softcap(z_BCV, final_softcap)
    picked_BC = jnp.take_along_axis(l_BCV, tgt_BC[..., None], axis=-1)[..., 0]
    return picked_BC - jax.nn.logsumexp(l_BCV, axis=-1)

  h_nBCD = hidden_BTD.reshape(B, n, chunk, D).swapaxes(0, 1)
  t_nBC = targets_BT.astype(jnp.int32).reshape(B, n, chunk).swapaxes(0, 1)
  logp_nBC = jax.lax.map(lambda xs: one(*xs), (h_nBCD, t_nBC))
  return logp_nBC.swapaxes(0, 1).reshape(B, n * chunk)[:, :T]


def grpo_loss(logp_BT: jax.Array, old_logp_BT: jax.Array, ref_logp_BT: jax.Array,
              advantages_B: jax.Array, mask_BT: jax.Array, *, epsilon: float,
              beta: float) -> tuple[jax.Array, dict]:
  """(loss, metrics): the clipped objective plus beta * KL, averaged per completion.

  `mask_BT` marks completion tokens (the stop marker included); prompt and padding
  positions contribute nothing. Metrics: mean KL per token, the share of tokens whose
  ratio was clipped, the mean ratio.
  """
  mask = mask_BT.astype(jnp.float32)
  ratio = jnp.exp(logp_BT - old_logp_BT)
  adv = advantages_B[:, None]
  unclipped = ratio * adv
  clipped = jnp.clip(ratio, 1.0 - epsilon, 1.0 + epsilon) * adv
  pg = -jnp.minimum(unclipped, clipped)
  delta = ref_logp_BT - logp_BT
  kl = jnp.exp(delta) - delta - 1.0
  per_token = pg + beta * kl
  tokens_B = jnp.maximum(mask.sum(axis=1), 1.0)
  loss = jnp.mean((per_token * mask).sum(axis=1) / tokens_B)
  total = jnp.maximum(mask.sum(), 1.0)
  was_clipped = (clipped < unclipped).astype(jnp.float32)  # min() took the clipped side
  metrics = {"kl": (kl * mask).sum() / total, "clip_fraction": (was_clipped * mask).sum() / total,
             "ratio": (ratio * mask).sum() / total}
  return loss, metrics

"""The XLA attention core's hand-written backward pass equals autodiff of a plain attention.

attention.xla_attention keeps one score block per layer and rebuilds the probabilities in
its backward pass (a custom VJP). The oracle here is written the textbook way (KV heads
repeated to the query heads, jax.nn.softmax, autodiff for the gradients), so a slip in the
soft-cap's derivative, the softmax's or the grouping would show. Padding rows (every key
masked) get a non-zero cotangent too: the forward pass gives them the uniform 1/S.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_sft import config as config_lib
from jax_sft.model import attention
from jax_sft.model.gemma import Transformer
from jax_sft.model.loss import chunked_cross_entropy

REL = 2e-5  # float32 throughout; the two paths sum in different orders


def _oracle(q_BTNH, k_BSKH, v_BSKH, mask_BTS, cap):
  G = q_BTNH.shape[2] // k_BSKH.shape[2]
  k_BSNH = jnp.repeat(k_BSKH, G, axis=2)
  v_BSNH = jnp.repeat(v_BSKH, G, axis=2)
  logits_BNTS = jnp.einsum("btnh,bsnh->bnts", q_BTNH, k_BSNH,
                           precision=jax.lax.Precision.HIGHEST)
  if cap is not None:
    logits_BNTS = cap * jnp.tanh(logits_BNTS / cap)
  logits_BNTS = jnp.where(mask_BTS[:, None], logits_BNTS, -1e30)
  probs_BNTS = jax.nn.softmax(logits_BNTS, axis=-1)
  return jnp.einsum("bnts,bsnh->btnh", probs_BNTS, v_BSNH, precision=jax.lax.Precision.HIGHEST)


@pytest.mark.parametrize("heads,kv_heads,window,cap", [
    (4, 2, 24, 5.0),     # Gemma 2: grouped KV heads, a small soft-cap (tanh far from linear)
    (4, 1, None, None),  # Gemma 3: one KV head, no soft-cap
    (2, 2, None, 50.0),
])
def test_custom_backward_equals_autodiff_of_plain_attention(heads, kv_heads, window, cap,
                                                            assert_close):
  rng = np.random.default_rng(0)
  B, T, H = 2, 64, 16
  q = jnp.asarray(rng.normal(size=(B, T, heads, H)) * 2, jnp.float32)
  k = jnp.asarray(rng.normal(size=(B, T, kv_heads, H)), jnp.float32)
  v = jnp.asarray(rng.normal(size=(B, T, kv_heads, H)), jnp.float32)
  seg = np.ones((B, T), np.int32)
  seg[0, 40:] = 2   # a second packed example
  seg[1, 50:] = 0   # padding: those queries see no key at all
  pos = np.concatenate([np.arange(40), np.arange(24)])[None].repeat(B, 0).astype(np.int32)
  pos[1, 50:] = np.arange(14)
  mask = attention.attention_mask(pos, seg, pos, seg, window)
  assert not bool(jnp.any(mask[1, 50:]))  # the padding rows are fully masked
  w_out = jnp.asarray(rng.normal(size=(B, T, heads, H)), jnp.float32)

  ours = lambda q, k, v: attention.xla_attention(q, k, v, mask, cap)
  plain = lambda q, k, v: _oracle(q, k, v, mask, cap)
  assert_close(ours(q, k, v), plain(q, k, v), REL, "forward")
  loss = lambda fn: (lambda q, k, v: jnp.sum(fn(q, k, v) * w_out))
  g_ours = jax.grad(loss(ours), argnums=(0, 1, 2))(q, k, v)
  g_plain = jax.grad(loss(plain), argnums=(0, 1, 2))(q, k, v)
  for name, a, e in zip("qkv", g_ours, g_plain):
    assert_close(a, e, REL, f"d{name}")
  # The check can fail: without the soft-cap's derivative dq is far off.
  if cap is not None:
    no_cap_grad = jax.grad(loss(lambda q, k, v: _oracle(q, k, v, mask, None)))(q, k, v)
    err = np.max(np.abs(np.asarray(g_ours[0]) - np.asarray(no_cap_grad)))
    assert err > 100 * REL * np.max(np.abs(np.asarray(g_plain[0])))


def test_train_step_keeps_one_score_block_per_layer(monkeypatch):
  """XLA's own temp size for a 4-layer model's loss and gradients: with the custom backward,
  at least two score blocks per layer fewer than with autodiff of the same core."""
  cfg = config_lib.preset("tiny_gemma2")
  cfg.num_layers, cfg.loss_chunk = 4, 64
  B, T = 2, 512
  model = Transformer(cfg)
  tokens = jnp.ones((B, T), jnp.int32)
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), tokens[:, :8]))["params"]

  def temp():
    def loss(p):
      h = model.apply({"params": p}, tokens, return_hidden=True)
      total, n = chunked_cross_entropy(h, p["embedder"]["input_embedding"], tokens,
                                       jnp.ones((B, T)), chunk=cfg.loss_chunk,
                                       final_softcap=cfg.final_softcap)
      return total / n
    return jax.jit(jax.grad(loss)).lower(params).compile().memory_analysis().temp_size_in_bytes

  monkeypatch.setattr(attention, "query_blocks", lambda seq_len: 1)  # whole [T, T] blocks
  ours = temp()
  monkeypatch.setattr(attention, "_core", attention._core.fun)  # plain autodiff
  autodiff = temp()
  block = B * cfg.num_heads * T * T * 4
  assert autodiff - ours > 2 * cfg.num_layers * block, (autodiff, ours, block)


@pytest.mark.parametrize("window", [None, 20])
def test_query_blocks_equal_the_whole_square_on_real_rows(window, assert_close):
  """causal_xla_attention (4 query blocks, each over the keys it can see by index) equals
  xla_attention over the whole square, forward and gradients, on packed rows with padding;
  with a window, the first key a block keeps is visible from its first query (tight)."""
  rng = np.random.default_rng(1)
  B, T, N, K, H, blocks = 2, 64, 4, 2, 8, 4
  q = jnp.asarray(rng.normal(size=(B, T, N, H)) * 2, jnp.float32)
  k = jnp.asarray(rng.normal(size=(B, T, K, H)), jnp.float32)
  v = jnp.asarray(rng.normal(size=(B, T, K, H)), jnp.float32)
  seg = np.ones((B, T), np.int32)
  seg[0, 40:] = 2
  seg[1, 58:] = 0
  pos = np.zeros((B, T), np.int32)
  for b in range(B):
    for t in range(1, T):
      pos[b, t] = pos[b, t - 1] + 1 if seg[b, t] == seg[b, t - 1] else 0
  mask = attention.attention_mask(pos, seg, pos, seg, window)
  if window is not None:
    t0 = 3 * T // blocks
    assert bool(jnp.any(mask[:, t0, t0 - window + 1])) and not bool(jnp.any(mask[:, t0, :t0 - window + 1]))
  real = jnp.asarray(seg > 0)[:, :, None, None]
  w_out = jnp.asarray(rng.normal(size=(B, T, N, H)), jnp.float32)
  whole = lambda q, k, v: attention.xla_attention(q, k, v, mask, 5.0)
  blocked = lambda q, k, v: attention.causal_xla_attention(q, k, v, mask, 5.0, window, blocks)
  assert_close(jnp.where(real, blocked(q, k, v), 0), jnp.where(real, whole(q, k, v), 0), REL,
               "forward")
  loss = lambda fn: (lambda q, k, v: jnp.sum(jnp.where(real, fn(q, k, v) * w_out, 0)))
  for name, a, e in zip("qkv", jax.grad(loss(blocked), argnums=(0, 1, 2))(q, k, v),
                        jax.grad(loss(whole), argnums=(0, 1, 2))(q, k, v)):
    assert_close(a, e, REL, f"d{name}")
  assert attention.query_blocks(512) == 4 and attention.query_blocks(100) == 1

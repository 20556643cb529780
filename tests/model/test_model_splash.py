"""The splash attention kernel (Pallas, run in interpret mode on this CPU) equals XLA's path.

Forward and gradients, for Gemma 2's layout (grouped KV heads, attention soft-cap, a
sliding window) and Gemma 3's (one KV head, no soft-cap, a window short enough that whole
blocks are skipped), on packed rows with padding; then a whole model and a train step's
loss under the 8-device mesh, where the kernel runs per shard under shard_map.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_sft import config as config_lib
from jax_sft.config import GLOBAL, LOCAL
from jax_sft.model import attention
from jax_sft.model import sharding
from jax_sft.model.gemma import Transformer
from jax_sft.model.loss import chunked_cross_entropy

# Float32 on both paths; the kernel sums in another order (blocks, online softmax).
REL = 2e-5


def _packed_segments(rows: int, length: int, rng) -> np.ndarray:
  """Example ids 1, 2, ... of random lengths, then padding (0) at the end of each row."""
  out = np.zeros((rows, length), np.int32)
  for r in range(rows):
    pos, seg = 0, 1
    end = length - int(rng.integers(0, length // 4))
    while pos < end:
      n = min(int(rng.integers(length // 8, length // 2)), end - pos)
      out[r, pos:pos + n] = seg
      pos, seg = pos + n, seg + 1
  return out


def _positions(seg_BT: np.ndarray) -> np.ndarray:
  """0, 1, 2, ... within each example, as the packer writes them."""
  pos = np.zeros_like(seg_BT)
  for r in range(seg_BT.shape[0]):
    for t in range(1, seg_BT.shape[1]):
      pos[r, t] = pos[r, t - 1] + 1 if seg_BT[r, t] == seg_BT[r, t - 1] else 0
  return pos


@pytest.mark.parametrize("heads,kv_heads,window,cap,length", [
    (4, 2, 100, 5.0, 256),    # Gemma 2: grouped KV heads, soft-cap (small: tanh far from linear)
    (4, 1, 128, None, 384),   # Gemma 3: MQA; block (2, 0) lies outside the window: skipped
    (2, 2, None, 50.0, 256),  # a global layer
])
def test_splash_equals_xla_forward_and_gradients(heads, kv_heads, window, cap, length,
                                                 assert_close):
  rng = np.random.default_rng(0)
  B, H = 2, 16
  q = jnp.asarray(rng.normal(size=(B, length, heads, H)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(B, length, kv_heads, H)), jnp.float32)
  v = jnp.asarray(rng.normal(size=(B, length, kv_heads, H)), jnp.float32)
  seg_BT = _packed_segments(B, length, rng)
  pos_BT = _positions(seg_BT)
  mask = attention.attention_mask(pos_BT, seg_BT, pos_BT, seg_BT, window)
  real_BT1 = jnp.asarray(seg_BT > 0)[:, :, None, None]  # padding's outputs differ by design
  w_out = jnp.asarray(rng.normal(size=(B, length, heads, H)), jnp.float32)

  def loss(fn, q, k, v):
    return jnp.sum(jnp.where(real_BT1, fn(q, k, v) * w_out, 0.0))

  xla = lambda q, k, v: attention.xla_attention(q, k, v, mask, cap)
  spl = lambda q, k, v: attention.splash_attention(q, k, v, jnp.asarray(seg_BT), window, cap,
                                                   interpret=True)
  real = np.asarray(real_BT1)[..., 0, 0]
  assert_close(np.asarray(spl(q, k, v))[real], np.asarray(xla(q, k, v))[real], REL, "forward")
  g_xla = jax.grad(lambda *a: loss(xla, *a), argnums=(0, 1, 2))(q, k, v)
  g_spl = jax.grad(lambda *a: loss(spl, *a), argnums=(0, 1, 2))(q, k, v)
  for name, a, e in zip("qkv", g_spl, g_xla):
    assert_close(a, e, REL, f"d{name}")
  # The test can fail: a window one shorter changes the result far beyond the tolerance.
  if window is not None:
    off = attention.splash_attention(q, k, v, jnp.asarray(seg_BT), window - 1, cap,
                                     interpret=True)
    diff = np.max(np.abs(np.asarray(off)[real] - np.asarray(xla(q, k, v))[real]))
    assert diff > 100 * REL * np.max(np.abs(np.asarray(xla(q, k, v))))


def test_model_and_loss_with_splash_equal_xla_on_a_2x2x2_mesh(assert_close):
  """Tiny Gemma 2 (a local layer, window 64, and a global one; soft-caps) on packed rows: the loss
  and every parameter's gradient, with the kernel per shard (batch over data x fsdp, heads
  over tensor)."""
  rng = np.random.default_rng(1)
  B, T = 4, 256
  seg_BT = _packed_segments(B, T, rng)
  batch = {"inputs": rng.integers(1, 512, (B, T)).astype(np.int32),
           "targets": rng.integers(1, 512, (B, T)).astype(np.int32),
           "segment_ids": seg_BT, "positions": _positions(seg_BT),
           "loss_mask": (seg_BT > 0).astype(np.float32)}
  mesh = jax.make_mesh((2, 2, 2), ("data", "fsdp", "tensor"),
                       axis_types=(jax.sharding.AxisType.Auto,) * 3)

  def make(impl):
    cfg = config_lib.preset("tiny_gemma2")
    cfg.num_layers, cfg.attention_types = 2, [LOCAL, GLOBAL]
    cfg.sliding_window, cfg.loss_chunk, cfg.attention = 64, 64, impl
    return cfg, Transformer(cfg)

  cfg, model = make("xla")
  params = model.init(jax.random.key(0), batch["inputs"][:1, :8])["params"]

  def loss_and_grads(impl):
    cfg, model = make(impl)

    def loss(p, b):
      with mesh, nn.logical_axis_rules(sharding.flax_rules()):
        h = model.apply({"params": p}, b["inputs"], b["positions"], b["segment_ids"],
                        return_hidden=True)
        total, n = chunked_cross_entropy(h, p["embedder"]["input_embedding"], b["targets"],
                                         b["loss_mask"], chunk=cfg.loss_chunk,
                                         final_softcap=cfg.final_softcap)
        return total / n
    return jax.jit(jax.value_and_grad(loss))(params, batch)

  (l_xla, g_xla), (l_spl, g_spl) = loss_and_grads("xla"), loss_and_grads("splash")
  assert_close(l_spl, l_xla, REL, "loss")
  for (path, a), e in zip(jax.tree_util.tree_leaves_with_path(g_spl), jax.tree.leaves(g_xla)):
    assert_close(a, e, 1e-4, jax.tree_util.keystr(path))

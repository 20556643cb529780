"""The fused chunked loss equals plain full-logit cross-entropy, values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jax_sft.model.loss import chunked_cross_entropy


def _data(B=2, T=37, D=16, V=300):
  k = jax.random.split(jax.random.key(0), 4)
  h = jax.random.normal(k[0], (B, T, D))
  emb = jax.random.normal(k[1], (V, D))
  tgt = jax.random.randint(k[2], (B, T), 0, V)
  mask = (jax.random.uniform(k[3], (B, T)) > 0.3).astype(jnp.float32)
  return h, emb, tgt, mask.at[:, :17].set(0)  # a prompt: the first chunks are skipped


def _optax_reference(h, emb, tgt, mask, cap):
  """An oracle we did not write: optax's integer-label cross-entropy on full logits."""
  logits = jnp.einsum("BTD,VD->BTV", h, emb)
  if cap is not None:
    logits = jnp.tanh(logits / cap) * cap
  return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits, tgt) * mask)


@pytest.mark.parametrize("cap", [None, 3.0, 60.0])  # 60 > 40: the max-stabilised branch
@pytest.mark.parametrize("chunk", [0, 8])
def test_matches_optax_values_and_grads(cap, chunk, assert_close):
  h, emb, tgt, mask = _data()
  ours = lambda h, e: chunked_cross_entropy(h, e, tgt, mask, chunk=chunk, final_softcap=cap)[0]
  ref = lambda h, e: _optax_reference(h, e, tgt, mask, cap)
  (v1, g1), (v2, g2) = (jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(h, emb) for f in (ours, ref))
  np.testing.assert_allclose(v1, v2, rtol=1e-5)
  for a, b in zip(g1, g2):
    assert_close(a, b, rel=1e-5)
  assert float(jnp.abs(g1[0][:, :17]).max()) == 0  # masked positions get no gradient


def test_count_and_frozen_embedding(assert_close):
  h, emb, tgt, mask = _data()
  loss, count = chunked_cross_entropy(h, emb, tgt, mask, chunk=8, final_softcap=30.0)
  assert float(count) == float(mask.sum())
  # Gradient for hidden only (LoRA: embedding frozen) equals the full one's hidden part.
  f = lambda h, e: chunked_cross_entropy(h, e, tgt, mask, chunk=8, final_softcap=30.0)[0]
  gh = jax.jit(jax.grad(f))(h, emb)
  gh_ref = jax.grad(lambda h: _optax_reference(h, emb, tgt, mask, 30.0))(h)
  assert_close(gh, gh_ref, rel=1e-5)

"""Rematerialization changes memory, not numbers: gradients equal the no-remat ones."""

import dataclasses

import jax
import jax.numpy as jnp

from jax_sft import config as model_config
from jax_sft.model.gemma import Transformer
from jax_sft.model.loss import chunked_cross_entropy


def test_remat_policies_give_the_same_gradients(assert_close):
  base = dataclasses.replace(model_config.preset("tiny_gemma2"), num_layers=2,
                             attention_types=["local", "global"])
  tokens = jax.random.randint(jax.random.key(1), (2, 12), 1, base.vocab_size)
  params = jax.jit(Transformer(base).init)(jax.random.key(0), tokens)["params"]

  def grads(remat):
    model = Transformer(dataclasses.replace(base, remat=remat))

    def loss(p):
      h = model.apply({"params": p}, tokens, return_hidden=True)
      return chunked_cross_entropy(h, p["embedder"]["input_embedding"], jnp.roll(tokens, -1, 1),
                                   jnp.ones(tokens.shape), chunk=4, final_softcap=base.final_softcap)[0]
    return jax.jit(jax.grad(loss))(params)

  want = grads("none")
  for remat in ("full", "dots"):
    for a, b in zip(jax.tree.leaves(grads(remat)), jax.tree.leaves(want)):
      assert_close(a, b, rel=1e-5)

"""The compact (bfloat16) train state: unbiased stochastic rounding, and updates that stick."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jax_sft.train import precision


def test_stochastic_rounding_is_unbiased_where_nearest_is_not():
  x = jnp.full((200_000,), 1.0 + 2**-10, jnp.float32)  # 1/8 of a bfloat16 ulp above 1
  sr = np.asarray(precision.stochastic_round(x, jnp.bfloat16, jax.random.key(0)), np.float32)
  assert set(np.unique(sr)) == {1.0, 1.0 + 2**-7}  # only the two neighbours
  # Binomial(200000, 1/8): the share of round-ups is 0.125 +- 0.0007 (one sigma).
  assert abs(np.mean(sr == 1.0 + 2**-7) - 0.125) < 0.005
  assert float(x.astype(jnp.bfloat16).astype(jnp.float32)[0]) == 1.0  # nearest loses it
  # Values exactly representable are unchanged; inf and nan pass through.
  exact = jnp.array([0.0, -2.0, 3.5, jnp.inf, -jnp.inf], jnp.float32)
  np.testing.assert_array_equal(
      np.asarray(precision.stochastic_round(exact, jnp.bfloat16, jax.random.key(1)), np.float32),
      np.asarray(exact))


def test_small_updates_accumulate_only_with_stochastic_rounding():
  # 400 SGD steps of 1e-4 on weights near 0.5 (bf16 ulp there: 2^-9 ~ 2e-3): each update
  # is under half an ulp. Float32 moves by 0.04; round-to-nearest never moves.
  tx = optax.sgd(1e-4)
  params = {"w": jnp.full((4096,), 0.5, jnp.bfloat16)}
  grads = {"w": jnp.full((4096,), -1.0, jnp.float32)}
  state = {True: (params, tx.init(params)), False: (params, tx.init(params))}
  key = jax.random.key(0)
  for step in range(400):
    for sr in (True, False):
      state[sr] = precision.apply_update(tx, grads, *state[sr], jax.random.fold_in(key, step), sr)
  mean = {sr: float(np.mean(np.asarray(state[sr][0]["w"], np.float32))) for sr in state}
  assert mean[False] == 0.5
  assert abs(mean[True] - 0.54) < 0.002, mean
  assert state[True][0]["w"].dtype == jnp.bfloat16

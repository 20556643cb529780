"""A compact train state: 16-bit master weights and Adam moments, updated with stochastic rounding.

A float32 state of Gemma 2 2B (weights and two Adam moments) is 31 GB, over Kaggle's
20 GB of output, so full SFT could not continue across sessions. Stored in bfloat16 it is
15.7 GB. Rounding each update to nearest would lose it: at lr 2e-5 most updates are smaller
than half a bfloat16 ulp of the weight they change. Stochastic rounding keeps them in
expectation: the update is applied in float32 and the result rounded up or down at random,
with probability given by its distance to each neighbour (Zamirai et al., "Revisiting
BFloat16 Training", 2020). The random bits come from the train state's RNG, so a resumed
run is bitwise the same as an uninterrupted one.

Example: 1 + 2^-10 is an eighth of a bfloat16 ulp (2^-7) above 1.0. Round-to-nearest gives
1.0 every time; `stochastic_round` gives 1 + 2^-7 one time in eight, so the mean over many
draws is 1 + 2^-10 (tests/train/test_train_precision.py).

Select it with `model.param_dtype: bfloat16` (the master weights, hence the Adam moments);
`train.stochastic_rounding: false` rounds to nearest instead, to see what that costs.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

PyTree = Any
_LOW = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


def is_low(x) -> bool:
  """True for a 16-bit floating array (one that needs stochastic rounding to be updated)."""
  return jnp.dtype(x.dtype) in _LOW


def any_low(tree: PyTree) -> bool:
  return any(is_low(x) for x in jax.tree.leaves(tree))


def stochastic_round(x: jax.Array, dtype, key: jax.Array) -> jax.Array:
  """float32 `x` rounded to bfloat16 up or down at random, unbiased: E[result] = x."""
  if jnp.dtype(dtype) != jnp.dtype(jnp.bfloat16):
    return x.astype(dtype)  # float16 has a different layout: plain rounding
  bits = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
  noise = jax.random.bits(key, x.shape, jnp.uint32) & jnp.uint32(0xFFFF)
  rounded = (bits + noise) & jnp.uint32(0xFFFF0000)  # carry into the kept bits, then cut
  finite = jnp.isfinite(x)
  out = jax.lax.bitcast_convert_type(rounded, jnp.float32)
  return jnp.where(finite, out, x).astype(jnp.bfloat16)


def _round_like(tree32: PyTree, like: PyTree, key: jax.Array) -> PyTree:
  """Each float32 leaf back to its `like` leaf's dtype; 16-bit ones stochastically."""
  leaves, treedef = jax.tree.flatten(tree32)
  like_leaves = jax.tree.leaves(like)
  keys = jax.random.split(key, max(len(leaves), 1))
  out = [stochastic_round(x, ref.dtype, k) if is_low(ref) else x.astype(ref.dtype)
         for x, ref, k in zip(leaves, like_leaves, keys)]
  return jax.tree.unflatten(treedef, out)


def _upcast(tree: PyTree) -> PyTree:
  return jax.tree.map(lambda x: x.astype(jnp.float32) if is_low(x) else x, tree)


def apply_update(tx: optax.GradientTransformation, grads32: PyTree, params: PyTree,
                 opt_state: PyTree, key: jax.Array, stochastic: bool) -> tuple[PyTree, PyTree]:
  """(new params, new optimizer state) in the dtypes they are stored in.

  A float32 state is updated as optax does. A 16-bit one is updated in float32 (gradients,
  moments, weights) and stored back with stochastic rounding (or, with `stochastic` off,
  round-to-nearest, kept to show what it costs).
  """
  if not (any_low(params) or any_low(opt_state)):
    updates, new_opt = tx.update(grads32, opt_state, params)
    return optax.apply_updates(params, updates), new_opt
  params32, opt32 = _upcast(params), _upcast(opt_state)
  updates, new_opt32 = tx.update(grads32, opt32, params32)
  new_params32 = optax.apply_updates(params32, updates)
  if not stochastic:
    cast = lambda t, like: jax.tree.map(lambda x, r: x.astype(r.dtype), t, like)
    return cast(new_params32, params), cast(new_opt32, opt_state)
  k_params, k_opt = jax.random.split(key)
  return _round_like(new_params32, params, k_params), _round_like(new_opt32, opt_state, k_opt)

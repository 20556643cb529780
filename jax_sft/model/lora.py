"""LoRA adapters beside the frozen Gemma weights, derived from the weight table.

Adapters live in the variable collection 'lora', at the same path as the weight they
adapt: lora['layer_0']['attn']['q_einsum'] = {'a': (D, r), 'b': (r, N, H)}. The MLP's
stacked gating weight gets one adapter per half: {'gate_a', 'gate_b', 'up_a', 'up_b'}.
As in google-deepmind/gemma `gemma/peft`, the adapter's two einsums are derived from the
weight's own (params.py): weight dims shared with the input go to A, the others to B:
  'BTD,NDH->BTNH'  ->  'BTD,Dr->BTr' then 'BTr,rNH->BTNH'.
B starts at zero, so a fresh adapter leaves the model's output exactly unchanged.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jax_sft.config import LoraConfig, ModelConfig
from jax_sft.model import params as params_lib

PyTree = Any


@dataclasses.dataclass(frozen=True)
class Adapter:
  """One low-rank adapter on (a slice of) a weight."""

  target: str  # lora.targets name
  prefix: str  # variable names prefix + "a", prefix + "b"
  index: Optional[int]  # slice of the weight's leading C axis, or None for all of it
  eq: str  # the base einsum it adapts (for a slice: without the C letter)
  w_dims: str  # the adapted weight's letters (for a slice: without C)

  def _split(self):
    lhs, y = self.eq.split("->")
    x, w = lhs.split(",")
    return x, w, y

  @property
  def a_dims(self) -> str:
    x, w, _ = self._split()
    return "".join(c for c in w if c in x) + "r"

  @property
  def b_dims(self) -> str:
    x, w, _ = self._split()
    return "r" + "".join(c for c in w if c not in x)

  @property
  def eq_a(self) -> str:
    x, w, _ = self._split()
    return f"{x},{self.a_dims}->{self.mid}"

  @property
  def eq_b(self) -> str:
    return f"{self.mid},{self.b_dims}->{self._split()[2]}"

  @property
  def mid(self) -> str:
    x, w, _ = self._split()
    return "".join(c for c in x if c not in w) + "r"

  @property
  def merge_eq(self) -> str:
    return f"{self.a_dims},{self.b_dims}->{self.w_dims}"

  def shapes(self, cfg: ModelConfig, rank: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    sizes = dict(params_lib.dims(cfg), r=rank)
    return tuple(sizes[c] for c in self.a_dims), tuple(sizes[c] for c in self.b_dims)

  def axes(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
    names = params_lib.AXIS_NAMES
    return tuple(names[c] for c in self.a_dims), tuple(names[c] for c in self.b_dims)


def _drop_leading(eq: str) -> str:
  """The einsum for one slice of the weight's leading axis ('BTD,CDF->CBTF' -> 'BTD,DF->BTF')."""
  lhs, y = eq.split("->")
  x, w = lhs.split(",")
  return f"{x},{w[1:]}->{y.replace(w[0], '')}"


def adapters(w: params_lib.Weight, targets=None) -> tuple[Adapter, ...]:
  """The adapters weight `w` carries, restricted to `targets` (None: all it can carry)."""
  out = []
  for target, prefix, index in w.lora:
    if targets is not None and target not in targets:
      continue
    eq = w.einsum if index is None else _drop_leading(w.einsum)
    out.append(Adapter(target, prefix, index, eq, w.dims if index is None else w.dims[1:]))
  return tuple(out)


def init_a(rng: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """A ~ N(0, 1/fan_in) in float32 (fan_in = every dim but the rank)."""
  return jax.random.normal(rng, shape, jnp.float32) / math.sqrt(math.prod(shape[:-1]))


def _module_path(w: params_lib.Weight) -> list[str]:
  return w.path.split("/")[:-1]  # drop the leaf name `w`


def init_lora(rng: jax.Array, model_cfg: ModelConfig, lora_cfg: LoraConfig) -> PyTree:
  """A fresh adapter tree (collection 'lora'): A random, B zero, all float32.

  Each A draws from `rng` folded with a hash of its path, so an adapter's values do not
  depend on which other targets are enabled.
  """
  tree: dict = {}
  for w in params_lib.weights(model_cfg):
    for ad in adapters(w, lora_cfg.targets):
      a_shape, b_shape = ad.shapes(model_cfg, lora_cfg.rank)
      node = tree
      for k in _module_path(w):
        node = node.setdefault(k, {})
      key = jax.random.fold_in(rng, zlib.crc32(f"{w.path}:{ad.prefix}".encode()))
      node[ad.prefix + "a"] = init_a(key, a_shape)
      node[ad.prefix + "b"] = jnp.zeros(b_shape, jnp.float32)
  return tree


def axes_of(model_cfg: ModelConfig, path: str) -> tuple[str, ...]:
  """Logical axes of the adapter variable at `path` (e.g. 'layer_0/mlp/gating_einsum/up_b')."""
  module, name = path.rsplit("/", 1)
  w = params_lib.weight(model_cfg, module + "/w")
  for ad in adapters(w):
    if name in (ad.prefix + "a", ad.prefix + "b"):
      return ad.axes()[0 if name.endswith("a") else 1]
  raise KeyError(f"no LoRA adapter {path!r}")


def split(variables: dict) -> tuple[Any, Any]:
  """(params, lora) from a variables dict such as `model.init(...)` returns."""
  return variables["params"], variables.get("lora", {})


def _get(tree: dict, keys: list[str]) -> Optional[dict]:
  for k in keys:
    if not isinstance(tree, dict) or k not in tree:
      return None
    tree = tree[k]
  return tree


def merge(params: PyTree, lora: PyTree, model_cfg: ModelConfig, lora_cfg: LoraConfig) -> PyTree:
  """Base params with every adapter folded in: w += (alpha/rank) * A.B, in w's dtype."""
  out = jax.tree.map(lambda x: x, params)  # a fresh tree; leaves are shared until replaced
  for w in params_lib.weights(model_cfg):
    found = _get(lora, _module_path(w))
    if not found:
      continue
    keys = _module_path(w)
    base = _get(params, keys)["w"]
    new_w = base.astype(jnp.float32)
    for ad in adapters(w):
      if ad.prefix + "a" not in found:
        continue
      delta = lora_cfg.scale * jnp.einsum(
          ad.merge_eq, found[ad.prefix + "a"].astype(jnp.float32),
          found[ad.prefix + "b"].astype(jnp.float32), precision=jax.lax.Precision.HIGHEST)
      new_w = new_w + delta if ad.index is None else new_w.at[ad.index].add(delta)
    _get(out, keys)["w"] = new_w.astype(base.dtype)
  return out


def count(lora: PyTree) -> int:
  """Number of adapter parameters."""
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(lora)))

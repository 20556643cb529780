"""LoRA adapters beside the frozen Gemma weights.

Adapters live in the variable collection 'lora', at the same path as the weight they
adapt: lora['layer_0']['attn']['q_einsum'] = {'a': (D, r), 'b': (r, N, H)}. The MLP's
stacked gating weight gets one adapter per half: {'gate_a', 'gate_b', 'up_a', 'up_b'}.
As in google-deepmind/gemma `gemma/peft`, the adapter's two einsums are derived from the
base one: weight dims shared with the input go to A, the others to B:
  'BTD,NDH->BTNH'  ->  'BTD,Dr->BTr' then 'BTr,rNH->BTNH'.
B starts at zero, so a fresh adapter leaves the model's output exactly unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jax_sft.model.config import LoraConfig, ModelConfig

TARGETS = ("query", "kv", "output", "gate", "up", "down")
# Base weight path (relative to a layer) -> the adapter parts it carries:
# (target name, variable-name prefix, index into the weight's leading axis or None).
WEIGHT_PARTS = {
    ("attn", "q_einsum"): (("query", "", None),),
    ("attn", "kv_einsum"): (("kv", "", None),),
    ("attn", "attn_vec_einsum"): (("output", "", None),),
    ("mlp", "gating_einsum"): (("gate", "gate_", 0), ("up", "up_", 1)),
    ("mlp", "linear"): (("down", "", None),),
}


def lora_einsums(eq: str, w_shape: tuple[int, ...], rank: int):
  """(eq_a, eq_b, a_shape, b_shape, merge_eq) for the base einsum `x,w->y` with weight w_shape."""
  lhs, y_str = eq.replace(" ", "").split("->")
  x_str, w_str = lhs.split(",")
  if "r" in eq:
    raise ValueError(f"einsum {eq!r} already uses the LoRA rank letter 'r'")
  if len(w_str) != len(w_shape):
    raise ValueError(f"einsum {eq!r} does not match weight shape {w_shape}")
  dims = dict(zip(w_str, w_shape))
  in_str = "".join(c for c in w_str if c in x_str)
  out_str = "".join(c for c in w_str if c not in x_str)
  mid_str = "".join(c for c in x_str if c not in w_str) + "r"
  a_str, b_str = in_str + "r", "r" + out_str
  return (f"{x_str},{a_str}->{mid_str}", f"{mid_str},{b_str}->{y_str}",
          tuple(dims[c] for c in in_str) + (rank,), (rank,) + tuple(dims[c] for c in out_str),
          f"{a_str},{b_str}->{w_str}")


def init_a(rng: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """A ~ N(0, 1/fan_in) in float32 (fan_in = every dim but the rank)."""
  return jax.random.normal(rng, shape, jnp.float32) / math.sqrt(math.prod(shape[:-1]))


def validate(lora_cfg: LoraConfig) -> None:
  """Raise naming the bad entry if lora.targets holds an unknown name."""
  bad = [t for t in lora_cfg.targets if t not in TARGETS]
  if bad:
    raise ValueError(f"lora.targets has unknown {bad}; known: {list(TARGETS)}")
  if lora_cfg.rank <= 0:
    raise ValueError(f"lora.rank must be positive, got {lora_cfg.rank}")


def init_lora(rng: jax.Array, model_cfg: ModelConfig, lora_cfg: LoraConfig) -> dict:
  """A fresh adapter tree (collection 'lora'): A random, B zero, all float32.

  Runs the model's own init under jit and keeps only the 'lora' collection, so XLA drops
  the base weights' initialisation and the shapes cannot drift from the model's.
  """
  from jax_sft.model.gemma import Transformer  # gemma imports this module
  validate(lora_cfg)
  model = Transformer(model_cfg, lora_cfg)
  tokens = jnp.zeros((1, 1), jnp.int32)

  @jax.jit
  def _init(rng):
    return model.init(rng, tokens, tokens, tokens + 1)["lora"]
  return _init(rng)


def split(variables: dict) -> tuple[Any, Any]:
  """(params, lora) from a variables dict such as `model.init(...)` returns."""
  return variables["params"], variables.get("lora", {})


def _layer_weight_eqs(model_cfg: ModelConfig) -> dict[tuple[str, str], str]:
  gating = "BTD,CDF->CBTF" if model_cfg.gating_layout == "gemma2" else "BTD,CFD->CBTF"
  return {("attn", "q_einsum"): "BTD,NDH->BTNH", ("attn", "kv_einsum"): "BSD,CKDH->CBSKH",
          ("attn", "attn_vec_einsum"): "BTNH,NHD->BTD", ("mlp", "gating_einsum"): gating,
          ("mlp", "linear"): "BTF,FD->BTD"}


def drop_leading(eq: str) -> str:
  """The einsum for one slice of the weight's leading axis ('BTD,CDF->CBTF' -> 'BTD,DF->BTF')."""
  lhs, y = eq.split("->")
  x, w = lhs.split(",")
  c = w[0]
  return f"{x},{w[1:]}->{y.replace(c, '')}"


def merge(params: dict, lora: dict, model_cfg: ModelConfig, lora_cfg: LoraConfig) -> dict:
  """Base params with every adapter folded in: w += (alpha/rank) * A.B, in w's dtype."""
  out = jax.tree.map(lambda x: x, params)  # a fresh tree; leaves are shared until replaced
  eqs = _layer_weight_eqs(model_cfg)
  for layer_name, layer_lora in lora.items():
    for (group, weight), parts in WEIGHT_PARTS.items():
      adapter = layer_lora.get(group, {}).get(weight)
      if not adapter:
        continue
      w = params[layer_name][group][weight]["w"]
      new_w = w.astype(jnp.float32)
      for _, prefix, index in parts:
        if prefix + "a" not in adapter:
          continue
        eq = eqs[(group, weight)] if index is None else drop_leading(eqs[(group, weight)])
        w_shape = w.shape if index is None else w.shape[1:]
        *_, merge_eq = lora_einsums(eq, w_shape, lora_cfg.rank)
        delta = lora_cfg.scale * jnp.einsum(
            merge_eq, adapter[prefix + "a"].astype(jnp.float32), adapter[prefix + "b"].astype(jnp.float32),
            precision=jax.lax.Precision.HIGHEST)
        new_w = new_w + delta if index is None else new_w.at[index].add(delta)
      out[layer_name][group][weight] = {"w": new_w.astype(w.dtype)}
  return out


def count(lora: dict) -> int:
  """Number of adapter parameters."""
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(lora)))

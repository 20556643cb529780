"""The one description of Gemma's weights: every other place derives from this table.

Each row (`Weight`) is one parameter of our tree (the Kaggle Flax layout without
`transformer/`): its path, its dimensions as letters of the model's alphabet (which give
its shape from the config and its logical axes for sharding), the einsum that applies it
(which gives the LoRA adapters' shapes and axes), and one column per external format: the
tensor name(s) there and the layout as an einops pattern `ours -> theirs`, read backwards
on the way in. A weight stored as several tensors (k and v, gate and up) is split along
its leading `C` axis, one name per slice; llama.cpp stores RMSNorm scales as `1 + w`.

The Gemma 1/2/3 differences (QK-norm, post norms, the gating layout, HF's norm names)
are decided here and nowhere else:

    >>> [w.path for w in weights(ModelConfig.tiny_gemma1())][:3]
    ['embedder/input_embedding', 'layer_0/attn/q_einsum/w', 'layer_0/attn/kv_einsum/w']
    >>> weight(ModelConfig.tiny_gemma3(), 'layer_0/mlp/gating_einsum/w').shape(ModelConfig.tiny_gemma3())
    (2, 96, 64)
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from typing import Optional

import einops
import numpy as np

from jax_sft.config import GatingLayout, ModelConfig

# Letter -> logical axis name (sharding rules in sharding.py map these onto the mesh).
AXIS_NAMES = {"V": "vocab", "D": "embed", "N": "heads", "K": "kv_heads", "H": "head_dim",
              "F": "mlp", "C": "stack", "r": "lora_rank"}
FORMATS = ("hf", "gguf", "keras")
# HF (and llama.cpp's GGUF, converted from HF) keep the tokenizer's 256000 rows of Gemma 1/2,
# where the Flax checkpoints pad the embedding to 256128.
_EXTERNAL_VOCAB = {256128: 256000}


def dims(cfg: ModelConfig) -> dict[str, int]:
  """Size of each dimension letter under `cfg`."""
  return {"V": cfg.vocab_size, "D": cfg.embed_dim, "N": cfg.num_heads, "K": cfg.num_kv_heads,
          "H": cfg.head_dim, "F": cfg.mlp_dim, "C": 2}


def external_vocab(cfg: ModelConfig) -> int:
  """Embedding rows in HF and GGUF files (256000 for a 256128-row Flax Gemma 1/2)."""
  return _EXTERNAL_VOCAB.get(cfg.vocab_size, cfg.vocab_size)


@dataclasses.dataclass(frozen=True)
class External:
  """Where one of our weights lives in another format."""

  names: tuple[str, ...]  # one tensor, or one per slice of our leading C axis
  pattern: str = ""  # einops `ours -> theirs` (per slice); "" = the same layout
  offset: float = 0.0  # added on the way out, subtracted on the way in


@dataclasses.dataclass(frozen=True)
class Weight:
  """One parameter of the model and every way it is stored."""

  path: str  # in our tree, e.g. "layer_0/attn/q_einsum/w"
  dims: str  # dimension letters, e.g. "NDH"
  einsum: str = ""  # how the model applies it, e.g. "BTD,NDH->BTNH" ("" for norms, embedding)
  lora: tuple[tuple[str, str, Optional[int]], ...] = ()  # (target, variable prefix, C slice)
  hf: Optional[External] = None
  gguf: Optional[External] = None
  keras: Optional[External] = None

  def shape(self, cfg: ModelConfig) -> tuple[int, ...]:
    d = dims(cfg)
    return tuple(d[c] for c in self.dims)

  @property
  def axes(self) -> tuple[str, ...]:
    """Logical axis names, one per dimension."""
    return tuple(AXIS_NAMES[c] for c in self.dims)

  @property
  def is_norm(self) -> bool:
    return self.path.endswith("/scale")

  def column(self, fmt: str) -> External:
    ext = getattr(self, fmt)
    if ext is None:
      raise ValueError(f"parameter {self.path!r} has no {fmt} name")
    return ext


def _hf_gguf_keras(hf: str | tuple[str, ...], gguf: str | tuple[str, ...],
                   keras: str | tuple[str, ...], pattern: str = "", keras_pattern: str = "",
                   norm: bool = False) -> dict[str, External]:
  """The three external columns of one row; HF and GGUF share the layout (llama.cpp
  converts from HF), Keras keeps Google's (mostly ours)."""
  as_tuple = lambda x: (x,) if isinstance(x, str) else x
  return {"hf": External(as_tuple(hf), pattern),
          "gguf": External(as_tuple(gguf), pattern, 1.0 if norm else 0.0),
          "keras": External(as_tuple(keras), keras_pattern)}


def _norm(path: str, hf: str, gguf: str, keras: str, letter: str = "D") -> Weight:
  return Weight(path, letter, **_hf_gguf_keras(hf, gguf, keras, norm=True))


def layer_weights(cfg: ModelConfig) -> tuple[Weight, ...]:
  """The weights of one decoder layer, paths relative to it, names with `{i}` for the index."""
  hf, gg, ke = "layers.{i}.", "blk.{i}.", "decoder_block_{i}/"
  gemma1 = not cfg.post_norms
  rows = [
      Weight("attn/q_einsum/w", "NDH", "BTD,NDH->BTNH", (("query", "", None),),
             **_hf_gguf_keras(hf + "self_attn.q_proj.weight", gg + "attn_q.weight",
                              ke + "attention/query_dense", "N D H -> (N H) D")),
      Weight("attn/kv_einsum/w", "CKDH", "BSD,CKDH->CBSKH", (("kv", "", None),),
             **_hf_gguf_keras((hf + "self_attn.k_proj.weight", hf + "self_attn.v_proj.weight"),
                              (gg + "attn_k.weight", gg + "attn_v.weight"),
                              (ke + "attention/key_dense", ke + "attention/value_dense"),
                              "K D H -> (K H) D")),
      Weight("attn/attn_vec_einsum/w", "NHD", "BTNH,NHD->BTD", (("output", "", None),),
             **_hf_gguf_keras(hf + "self_attn.o_proj.weight", gg + "attn_output.weight",
                              ke + "attention/output_dense", "N H D -> D (N H)")),
  ]
  if cfg.qk_norm:
    rows += [_norm("attn/_query_norm/scale", hf + "self_attn.q_norm.weight",
                   gg + "attn_q_norm.weight", ke + "attention/query_norm", "H"),
             _norm("attn/_key_norm/scale", hf + "self_attn.k_norm.weight",
                   gg + "attn_k_norm.weight", ke + "attention/key_norm", "H")]
  # Gate and up are one stacked weight: (2, D, F) in Gemma 1/2, (2, F, D) in Gemma 3.
  g3 = cfg.gating_layout == GatingLayout.gemma3
  gating_dims = "CFD" if g3 else "CDF"
  rows += [
      Weight("mlp/gating_einsum/w", gating_dims, f"BTD,{gating_dims}->CBTF",
             (("gate", "gate_", 0), ("up", "up_", 1)),
             **_hf_gguf_keras((hf + "mlp.gate_proj.weight", hf + "mlp.up_proj.weight"),
                              (gg + "ffn_gate.weight", gg + "ffn_up.weight"),
                              (ke + "gating_ffw", ke + "gating_ffw_2"),
                              "F D -> F D" if g3 else "D F -> F D",
                              "F D -> D F" if g3 else "")),
      Weight("mlp/linear/w", "FD", "BTF,FD->BTD", (("down", "", None),),
             **_hf_gguf_keras(hf + "mlp.down_proj.weight", gg + "ffn_down.weight",
                              ke + "ffw_linear", "F D -> D F")),
      _norm("pre_attention_norm/scale", hf + "input_layernorm.weight", gg + "attn_norm.weight",
            ke + "pre_attention_norm"),
      # Gemma 1 in HF calls its pre-MLP norm `post_attention_layernorm`.
      _norm("pre_ffw_norm/scale",
            hf + ("post_attention_layernorm" if gemma1 else "pre_feedforward_layernorm") + ".weight",
            gg + "ffn_norm.weight", ke + "pre_ffw_norm"),
  ]
  if cfg.post_norms:
    rows += [_norm("post_attention_norm/scale", hf + "post_attention_layernorm.weight",
                   gg + "post_attention_norm.weight", ke + "post_attention_norm"),
             _norm("post_ffw_norm/scale", hf + "post_feedforward_layernorm.weight",
                   gg + "post_ffw_norm.weight", ke + "post_ffw_norm")]
  return tuple(rows)


def _in_layer(w: Weight, i: int) -> Weight:
  def fmt(ext):
    return None if ext is None else dataclasses.replace(
        ext, names=tuple(n.format(i=i) for n in ext.names))
  return dataclasses.replace(w, path=f"layer_{i}/{w.path}", hf=fmt(w.hf), gguf=fmt(w.gguf),
                             keras=fmt(w.keras))


def weights(cfg: ModelConfig) -> tuple[Weight, ...]:
  """Every weight of the model, in checkpoint order (embedding, layers, final norm)."""
  return _weights(_key(cfg))


def _key(cfg: ModelConfig) -> tuple:
  return (cfg.num_layers, cfg.qk_norm, cfg.post_norms, str(cfg.gating_layout))


@functools.lru_cache(maxsize=64)
def _weights(key: tuple) -> tuple[Weight, ...]:
  num_layers, qk_norm, post_norms, gating = key
  cfg = ModelConfig(num_layers=num_layers, qk_norm=qk_norm, post_norms=post_norms,
                    gating_layout=GatingLayout(gating))
  rows = [Weight("embedder/input_embedding", "VD",
                 **_hf_gguf_keras("embed_tokens.weight", "token_embd.weight", "token_embedding"))]
  per_layer = layer_weights(cfg)
  for i in range(num_layers):
    rows += [_in_layer(w, i) for w in per_layer]
  rows.append(_norm("final_norm/scale", "norm.weight", "output_norm.weight",
                    "final_normalization"))
  return tuple(rows)


def by_path(cfg: ModelConfig) -> dict[str, Weight]:
  """{path: Weight} of every weight."""
  return {w.path: w for w in weights(cfg)}


def weight(cfg: ModelConfig, path: str) -> Weight:
  """The row for `path` (a full path, or one relative to a layer)."""
  table = by_path(cfg)
  if path in table:
    return table[path]
  for w in layer_weights(cfg):
    if w.path == path:
      return w
  raise KeyError(f"no parameter {path!r} in the model")


def shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
  """{path: shape} of every weight (nothing is allocated)."""
  return {w.path: w.shape(cfg) for w in weights(cfg)}


def count(cfg: ModelConfig) -> int:
  """Number of parameters."""
  return sum(math.prod(s) for s in shapes(cfg).values())


# --- external layouts ---------------------------------------------------------------------


def _sides(pattern: str) -> tuple[str, str]:
  ours, theirs = (p.strip() for p in pattern.split("->"))
  return ours, theirs


def _side_shape(side: str, sizes: dict[str, int]) -> tuple[int, ...]:
  """Shape of one side of an einops pattern, e.g. '(N H) D' -> (N*H, D)."""
  out = []
  for group in re.findall(r"\([^)]*\)|\S", side):
    letters = group.strip("()").split()
    out.append(math.prod(sizes[c] for c in letters))
  return tuple(out)


def external_shapes(w: Weight, fmt: str, cfg: ModelConfig) -> tuple[tuple[int, ...], ...]:
  """The shape of each of `w`'s tensors in format `fmt` (one per name)."""
  ext = w.column(fmt)
  sizes = dims(cfg)
  if w.dims[0] == "V" and fmt in ("hf", "gguf"):
    sizes["V"] = external_vocab(cfg)
  slice_dims = w.dims[1:] if len(ext.names) > 1 else w.dims
  if ext.pattern:
    shape = _side_shape(_sides(ext.pattern)[1], sizes)
  else:
    shape = tuple(sizes[c] for c in slice_dims)
  return (shape,) * len(ext.names)


def to_external(w: Weight, fmt: str, array, cfg: ModelConfig) -> list:
  """Our array of `w` as its tensors in `fmt` (numpy in, numpy out)."""
  ext = w.column(fmt)
  array = np.asarray(array)
  if w.dims[0] == "V" and fmt in ("hf", "gguf"):
    array = array[:external_vocab(cfg)]
  parts = list(array) if len(ext.names) > 1 else [array]
  if ext.pattern:
    parts = [einops.rearrange(p, ext.pattern) for p in parts]
  if ext.offset:
    parts = [p + np.asarray(ext.offset, p.dtype) for p in parts]
  return parts


def from_external(w: Weight, fmt: str, arrays, cfg: ModelConfig):
  """`w`'s tensors in `fmt` as our array (numpy); pads or trims the vocabulary to ours."""
  ext = w.column(fmt)
  parts = [np.asarray(a) for a in arrays]
  if ext.offset:
    parts = [p - np.asarray(ext.offset, p.dtype) for p in parts]
  if ext.pattern:
    ours, theirs = _sides(ext.pattern)
    sizes = dims(cfg)
    used = {c: sizes[c] for c in ours.split() if c in theirs and "(" in theirs}
    parts = [einops.rearrange(p, f"{theirs} -> {ours}", **used) for p in parts]
  array = np.stack(parts) if len(ext.names) > 1 else parts[0]
  if w.dims[0] == "V" and array.shape[0] != cfg.vocab_size:
    rows = cfg.vocab_size
    array = (array[:rows] if array.shape[0] > rows else
             np.concatenate([array, np.zeros((rows - array.shape[0],) + array.shape[1:], array.dtype)]))
  return array

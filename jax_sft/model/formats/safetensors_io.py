"""Hugging Face Gemma safetensors (Gemma 1/2/3 text models): read into our tree, write with config.json.

HF stores torch Linear weights as (out, in): q_proj (N*H, D), k_proj/v_proj (K*H, D),
o_proj (D, N*H), gate_proj/up_proj (F, D), down_proj (D, F). RMSNorm weights are the raw
`scale` of `x * (1 + scale)` (transformers' GemmaRMSNorm, Gemma2RMSNorm, Gemma3RMSNorm all
compute `(1.0 + self.weight)`), so norms copy across unchanged.
Traps: Gemma 1's `post_attention_layernorm` is our `pre_ffw_norm` (Gemma 2/3 have four
norms with their own names); HF Gemma 1/2 keep 256000 embedding rows where Flax keeps
256128 (rows padded with zeros on read, trimmed on write); Gemma 3 multimodal configs say
262208 where the text model has 262144.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from jax_sft.model.config import GLOBAL, LOCAL, ModelConfig
from jax_sft.model.formats import shapes

# (HF rows, Flax rows): the embedding is padded or trimmed between these, nothing else.
VOCAB_PAIRS = {256000: 256128, 262208: 262144}
_PREFIXES = ("model.", "language_model.model.", "model.language_model.")
_IGNORED = ("lm_head.weight",)  # tied to the embedding in every Gemma


def family(cfg: ModelConfig) -> str:
  """'gemma3' (QK-norm), 'gemma2' (post norms) or 'gemma' (neither): which HF model class fits."""
  if cfg.qk_norm:
    return "gemma3"
  return "gemma2" if cfg.post_norms else "gemma"


def _norm_names(cfg: ModelConfig) -> dict[str, str]:
  """Our per-layer norm module -> HF's name for it."""
  if family(cfg) == "gemma":
    return {"pre_attention_norm": "input_layernorm", "pre_ffw_norm": "post_attention_layernorm"}
  return {"pre_attention_norm": "input_layernorm", "post_attention_norm": "post_attention_layernorm",
          "pre_ffw_norm": "pre_feedforward_layernorm", "post_ffw_norm": "post_feedforward_layernorm"}


# --- reading ----------------------------------------------------------------------


def find_files(path: str) -> list[str]:
  """The safetensors files of a HF model directory (or one file)."""
  path = os.fspath(path)
  if os.path.isfile(path):
    return [path]
  index = os.path.join(path, "model.safetensors.index.json")
  if os.path.exists(index):
    with open(index) as f:
      names = sorted(set(json.load(f)["weight_map"].values()))
    return [os.path.join(path, n) for n in names]
  files = sorted(glob.glob(os.path.join(path, "*.safetensors")))
  if not files:
    raise FileNotFoundError(f"{path}: no *.safetensors files")
  return files


class _Tensors:
  """Lazy name -> tensor access over several safetensors files, names without the model prefix."""

  def __init__(self, files: list[str]):
    self.where: dict[str, tuple[str, str]] = {}
    for file in files:
      with safe_open(file, framework="np") as f:
        for name in f.keys():
          short = next((name[len(p):] for p in _PREFIXES if name.startswith(p)), name)
          self.where[short] = (file, name)

  def shape(self, name: str) -> tuple[int, ...]:
    file, full = self.where[name]
    with safe_open(file, framework="np") as f:
      return tuple(f.get_slice(full).get_shape())

  def get(self, name: str) -> np.ndarray:
    file, full = self.where[name]
    with safe_open(file, framework="np") as f:
      return f.get_tensor(full)


def _builders(cfg: ModelConfig) -> dict[str, tuple[list[str], Callable[..., np.ndarray], Callable]]:
  """Our path -> (HF names, host transform HF -> ours, shape of ours given HF shapes)."""
  n, k, h, d = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.embed_dim
  g3 = cfg.gating_layout == "gemma3"

  def heads(rows: int) -> int:  # HF packs (heads * H) rows; -1 makes a bad count visible
    return rows // h if rows % h == 0 else -1

  def vocab(rows: int) -> int:  # a known HF/Flax vocab pair counts as the config's size
    return cfg.vocab_size if VOCAB_PAIRS.get(rows) == cfg.vocab_size else rows

  b = {"embedder/input_embedding": (["embed_tokens.weight"], lambda e: e,
                                    lambda s: (vocab(s[0][0]), s[0][1])),
       "final_norm/scale": (["norm.weight"], lambda w: w, lambda s: s[0])}
  for i in range(cfg.num_layers):
    p, hf = f"layer_{i}/", f"layers.{i}."
    b[p + "attn/q_einsum/w"] = (
        [hf + "self_attn.q_proj.weight"],
        lambda w: w.reshape(n, h, w.shape[1]).transpose(0, 2, 1),
        lambda s: (heads(s[0][0]), s[0][1], h))
    b[p + "attn/kv_einsum/w"] = (
        [hf + "self_attn.k_proj.weight", hf + "self_attn.v_proj.weight"],
        lambda kw, vw: np.stack([x.reshape(k, h, x.shape[1]).transpose(0, 2, 1) for x in (kw, vw)]),
        lambda s: (2 if s[0] == s[1] else -1, heads(s[0][0]), s[0][1], h))
    b[p + "attn/attn_vec_einsum/w"] = (
        [hf + "self_attn.o_proj.weight"],
        lambda w: w.T.reshape(n, h, w.shape[0]),
        lambda s: (heads(s[0][1]), h, s[0][0]))
    if cfg.qk_norm:
      b[p + "attn/_query_norm/scale"] = ([hf + "self_attn.q_norm.weight"], lambda w: w, lambda s: s[0])
      b[p + "attn/_key_norm/scale"] = ([hf + "self_attn.k_norm.weight"], lambda w: w, lambda s: s[0])
    b[p + "mlp/gating_einsum/w"] = (
        [hf + "mlp.gate_proj.weight", hf + "mlp.up_proj.weight"],
        (lambda gw, uw: np.stack([gw, uw])) if g3 else (lambda gw, uw: np.stack([gw.T, uw.T])),
        (lambda s: (2,) + s[0]) if g3 else (lambda s: (2, s[0][1], s[0][0])))
    b[p + "mlp/linear/w"] = ([hf + "mlp.down_proj.weight"], lambda w: w.T, lambda s: s[0][::-1])
    for ours, theirs in _norm_names(cfg).items():
      b[p + ours + "/scale"] = ([hf + theirs + ".weight"], lambda w: w, lambda s: s[0])
  return b


def load_safetensors(path: str, cfg: ModelConfig, shardings: Any = None,
                     dtype: Any = None) -> shapes.Params:
  """Reads HF Gemma safetensors (a directory, sharded index, or one file) into our param tree.

  One parameter at a time is read to host memory, converted, cast to `dtype` (default
  `cfg.param_dtype`) and placed slice by slice on its sharding. Raises CheckpointMismatch
  naming the first parameter whose HF tensors do not fit `cfg`.
  """
  source = os.fspath(path)
  tensors = _Tensors(find_files(source))
  builders = _builders(cfg)
  used = {name for names, _, _ in builders.values() for name in names}
  unexpected = sorted(n for n in tensors.where if n not in used and n not in _IGNORED)
  found = {}
  for ours, (names, _, shape_of) in builders.items():
    if all(nm in tensors.where for nm in names):
      found[ours] = tuple(int(x) for x in shape_of([tensors.shape(nm) for nm in names]))
    else:
      missing = [nm for nm in names if nm not in tensors.where]
      if any(nm in tensors.where for nm in names):
        raise shapes.CheckpointMismatch(f"{source}: {ours!r} needs HF tensors {missing} too")
  if unexpected:
    found.update({f"(HF) {n}": tensors.shape(n) for n in unexpected})
  shapes.check_shapes(found, cfg, source=source)
  if "lm_head.weight" in tensors.where:
    _check_tied(tensors, source)

  sharding_of = shapes.sharding_lookup(shardings)
  dtype = shapes.resolve_dtype(cfg, dtype)
  flat = {}
  for ours, (names, convert, _) in builders.items():
    host = convert(*[tensors.get(nm) for nm in names])
    if ours == "embedder/input_embedding" and host.shape[0] < cfg.vocab_size:
      host = np.concatenate([host, np.zeros((cfg.vocab_size - host.shape[0], host.shape[1]),
                                            host.dtype)])
    elif ours == "embedder/input_embedding" and host.shape[0] > cfg.vocab_size:
      host = host[: cfg.vocab_size]
    flat[ours] = shapes.place(host, sharding_of(ours), dtype)
    del host
  return shapes.unflatten(flat)


def _check_tied(tensors: _Tensors, source: str) -> None:
  """Gemma ties lm_head to the embedding; an lm_head that differs would be silently lost."""
  rows = {}
  for name in ("lm_head.weight", "embed_tokens.weight"):
    file, full = tensors.where[name]
    with safe_open(file, framework="np") as f:
      rows[name] = f.get_slice(full)[:256]
  if not np.array_equal(rows["lm_head.weight"], rows["embed_tokens.weight"]):
    raise shapes.CheckpointMismatch(
        f"{source}: lm_head.weight differs from embed_tokens.weight; Gemma ties them and"
        " this loader has nowhere to put an untied output projection")


# --- config.json ------------------------------------------------------------------


def config_from_hf(hf: dict) -> ModelConfig:
  """A ModelConfig from a HF Gemma/Gemma2/Gemma3 text config.json dict (Flax vocab sizes)."""
  hf = hf.get("text_config", hf)
  kind = hf.get("model_type", "")
  if kind not in ("gemma", "gemma2", "gemma3_text", "gemma3"):
    raise ValueError(f"config.json: model_type {kind!r} is not a Gemma 1/2/3 text model")
  layers = int(hf["num_hidden_layers"])
  head_dim = int(hf.get("head_dim") or hf["hidden_size"] // hf["num_attention_heads"])
  qpas = hf.get("query_pre_attn_scalar")
  vocab = int(hf["vocab_size"])
  cfg = ModelConfig(
      num_layers=layers, embed_dim=int(hf["hidden_size"]),
      num_heads=int(hf["num_attention_heads"]),
      num_kv_heads=int(hf.get("num_key_value_heads", hf["num_attention_heads"])),
      head_dim=head_dim, mlp_dim=int(hf["intermediate_size"]),
      vocab_size=VOCAB_PAIRS.get(vocab, vocab),
      query_scale=None if qpas in (None, head_dim) else float(qpas) ** -0.5)
  eps = float(hf.get("rms_norm_eps", 1e-6))
  if abs(eps - 1e-6) > 1e-12:
    raise ValueError(f"config.json: rms_norm_eps={eps}; the model implements 1e-6")
  if kind == "gemma":
    cfg.rope_base_local = cfg.rope_base_global = float(hf.get("rope_theta", 10_000.0))
    return cfg
  cfg.post_norms = True
  cfg.sliding_window = hf.get("sliding_window")
  cfg.attn_softcap = hf.get("attn_logit_softcapping")
  cfg.final_softcap = hf.get("final_logit_softcapping")
  layer_types = hf.get("layer_types")
  if kind == "gemma2":
    cfg.rope_base_local = cfg.rope_base_global = float(hf.get("rope_theta", 10_000.0))
    default = [LOCAL if i % 2 == 0 else GLOBAL for i in range(layers)]
  else:
    cfg.qk_norm, cfg.gating_layout = True, "gemma3"
    cfg.rope_base_global = float(hf.get("rope_theta", 1_000_000.0))
    cfg.rope_base_local = float(hf.get("rope_local_base_freq", 10_000.0))
    scaling = hf.get("rope_scaling") or {}
    cfg.rope_scale_global = float(scaling.get("factor", 1.0))
    pattern = int(hf.get("sliding_window_pattern", 6))
    default = [GLOBAL if (i + 1) % pattern == 0 else LOCAL for i in range(layers)]
  cfg.attention_types = ([LOCAL if t == "sliding_attention" else GLOBAL for t in layer_types]
                         if layer_types else default)
  return cfg


def config_to_hf(cfg: ModelConfig, torch_dtype: str) -> dict:
  """HF config.json for `cfg`: GemmaForCausalLM, Gemma2ForCausalLM or Gemma3ForCausalLM."""
  fam = family(cfg)
  hf_vocab = {v: k for k, v in VOCAB_PAIRS.items()}.get(cfg.vocab_size, cfg.vocab_size)
  if fam == "gemma3":
    hf_vocab = cfg.vocab_size  # the 1B text model keeps 262144 rows on the Hub too
  types = cfg.layer_types()
  out = {
      "hidden_size": cfg.embed_dim, "intermediate_size": cfg.mlp_dim,
      "num_attention_heads": cfg.num_heads, "num_key_value_heads": cfg.num_kv_heads,
      "head_dim": cfg.head_dim, "num_hidden_layers": cfg.num_layers, "vocab_size": hf_vocab,
      "rms_norm_eps": 1e-6, "hidden_act": "gelu_pytorch_tanh",
      "hidden_activation": "gelu_pytorch_tanh", "tie_word_embeddings": True,
      "attention_bias": False, "attention_dropout": 0.0, "max_position_embeddings": 8192,
      "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2, "torch_dtype": torch_dtype,
      "query_pre_attn_scalar": cfg.scale ** -2,
  }
  if fam == "gemma":
    if LOCAL in types or cfg.attn_softcap or cfg.final_softcap:
      raise ValueError("config has sliding windows or soft-caps, which GemmaForCausalLM lacks")
    out.update(architectures=["GemmaForCausalLM"], model_type="gemma",
               rope_theta=cfg.rope_base_global)
    return out
  out.update(sliding_window=cfg.sliding_window, attn_logit_softcapping=cfg.attn_softcap,
             final_logit_softcapping=cfg.final_softcap,
             layer_types=["sliding_attention" if t == LOCAL else "full_attention" for t in types])
  if fam == "gemma2":
    out.update(architectures=["Gemma2ForCausalLM"], model_type="gemma2",
               rope_theta=cfg.rope_base_global, cache_implementation="hybrid")
  else:
    out.update(architectures=["Gemma3ForCausalLM"], model_type="gemma3_text",
               rope_theta=cfg.rope_base_global, rope_local_base_freq=cfg.rope_base_local,
               sliding_window_pattern=_pattern(types),
               rope_scaling=(None if cfg.rope_scale_global == 1.0 else
                             {"rope_type": "linear", "factor": cfg.rope_scale_global}))
  return out


def _pattern(types: list[str]) -> int:
  """Gemma 3's `sliding_window_pattern` (a global layer every N), for readers without layer_types."""
  globals_ = [i for i, t in enumerate(types) if t == GLOBAL]
  return globals_[0] + 1 if globals_ else len(types) + 1


# --- writing ----------------------------------------------------------------------


def to_hf_tensors(params: shapes.Params, cfg: ModelConfig) -> dict[str, Callable[[], np.ndarray]]:
  """HF tensor name -> thunk producing it from `params` (one tensor on host at a time)."""
  flat = shapes.flatten(params)
  shapes.check_shapes({p: tuple(x.shape) for p, x in flat.items()}, cfg, source="params")
  n, k, h, d = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.embed_dim
  g3 = cfg.gating_layout == "gemma3"
  host = lambda p: np.asarray(jax.device_get(flat[p]))
  hf_vocab = config_to_hf(cfg, "float32")["vocab_size"]
  out = {"model.embed_tokens.weight": lambda: host("embedder/input_embedding")[:hf_vocab],
         "model.norm.weight": lambda: host("final_norm/scale")}
  for i in range(cfg.num_layers):
    p, hf = f"layer_{i}/", f"model.layers.{i}."
    out[hf + "self_attn.q_proj.weight"] = (
        lambda p=p: host(p + "attn/q_einsum/w").transpose(0, 2, 1).reshape(n * h, d))
    for j, name in enumerate(("k_proj", "v_proj")):
      out[hf + f"self_attn.{name}.weight"] = (
          lambda p=p, j=j: host(p + "attn/kv_einsum/w")[j].transpose(0, 2, 1).reshape(k * h, d))
    out[hf + "self_attn.o_proj.weight"] = (
        lambda p=p: host(p + "attn/attn_vec_einsum/w").reshape(n * h, d).T)
    if cfg.qk_norm:
      out[hf + "self_attn.q_norm.weight"] = lambda p=p: host(p + "attn/_query_norm/scale")
      out[hf + "self_attn.k_norm.weight"] = lambda p=p: host(p + "attn/_key_norm/scale")
    for j, name in enumerate(("gate_proj", "up_proj")):
      out[hf + f"mlp.{name}.weight"] = (
          lambda p=p, j=j: host(p + "mlp/gating_einsum/w")[j] if g3
          else host(p + "mlp/gating_einsum/w")[j].T)
    out[hf + "mlp.down_proj.weight"] = lambda p=p: host(p + "mlp/linear/w").T
    for ours, theirs in _norm_names(cfg).items():
      out[hf + theirs + ".weight"] = lambda p=p, ours=ours: host(p + ours + "/scale")
  return out


def save_safetensors(params: shapes.Params, cfg: ModelConfig, out_dir: str, *,
                     dtype: Any = None, max_shard_bytes: int = 4 << 30) -> str:
  """Writes `params` (LoRA merged) as HF safetensors + config.json in `out_dir`; returns it.

  Files above `max_shard_bytes` are split into `model-0000i-of-0000n.safetensors` with
  `model.safetensors.index.json`, building one file's tensors at a time on the host.
  """
  os.makedirs(out_dir, exist_ok=True)
  thunks = to_hf_tensors(params, cfg)
  leaf = shapes.flatten(params)["final_norm/scale"]
  np_dtype = np.dtype(jnp.dtype(dtype if dtype is not None else leaf.dtype))
  sizes = {name: _nbytes(params, cfg, name, np_dtype) for name in thunks}
  groups, current, used = [], [], 0
  for name in thunks:
    if current and used + sizes[name] > max_shard_bytes:
      groups.append(current)
      current, used = [], 0
    current.append(name)
    used += sizes[name]
  groups.append(current)

  files = (["model.safetensors"] if len(groups) == 1 else
           [f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors" for i in range(len(groups))])
  weight_map = {}
  for file, names in zip(files, groups):
    tensors = {nm: np.ascontiguousarray(thunks[nm]().astype(np_dtype)) for nm in names}
    save_file(tensors, os.path.join(out_dir, file), metadata={"format": "pt"})
    weight_map.update({nm: file for nm in names})
    del tensors
  if len(files) > 1:
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
      json.dump({"metadata": {"total_size": sum(sizes.values())}, "weight_map": weight_map},
                f, indent=2)
  with open(os.path.join(out_dir, "config.json"), "w") as f:
    json.dump(config_to_hf(cfg, str(np_dtype)), f, indent=2)
  return out_dir


def _nbytes(params, cfg, name, np_dtype) -> int:
  """Size in bytes of HF tensor `name` (computed from the config, nothing is materialized)."""
  n, k, h, d, f = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.embed_dim, cfg.mlp_dim
  if name.endswith("embed_tokens.weight"):
    count = config_to_hf(cfg, "float32")["vocab_size"] * d
  elif name.endswith(("q_proj.weight", "o_proj.weight")):
    count = n * h * d
  elif name.endswith(("k_proj.weight", "v_proj.weight")):
    count = k * h * d
  elif name.endswith(("gate_proj.weight", "up_proj.weight", "down_proj.weight")):
    count = f * d
  elif name.endswith(("q_norm.weight", "k_norm.weight")):
    count = h
  else:
    count = d
  return count * np_dtype.itemsize

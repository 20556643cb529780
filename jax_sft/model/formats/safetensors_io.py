"""Hugging Face Gemma safetensors (Gemma 1/2/3 text models): read into our tree, write with config.json.

Names and layouts are the weight table's `hf` column (jax_sft.model.params): torch Linear
weights are (out, in), RMSNorm weights the raw `scale` of `x * (1 + scale)` (transformers'
GemmaRMSNorm, Gemma2RMSNorm, Gemma3RMSNorm all compute `(1.0 + self.weight)`). This module
only finds, lists, reads and writes the files, and maps config.json to ModelConfig.
Traps: HF Gemma 1/2 keep 256000 embedding rows where Flax keeps 256128 (padded on read,
trimmed on write); Gemma 3 multimodal configs say 262208 where the text model has 262144.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Any

import jax.numpy as jnp
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from jax_sft.config import GLOBAL, LOCAL, GatingLayout, ModelConfig
from jax_sft.model.formats import shapes

# (HF rows, Flax rows) in config.json's vocab_size.
VOCAB_PAIRS = {256000: 256128, 262208: 262144}
_PREFIXES = ("model.", "language_model.model.", "model.language_model.")
_IGNORED = ("lm_head.weight",)  # tied to the embedding in every Gemma


def family(cfg: ModelConfig) -> str:
  """'gemma3' (QK-norm), 'gemma2' (post norms) or 'gemma' (neither): which HF model class fits."""
  if cfg.qk_norm:
    return "gemma3"
  return "gemma2" if cfg.post_norms else "gemma"


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

  def names(self) -> set[str]:
    return set(self.where)

  def shape(self, name: str) -> tuple[int, ...]:
    file, full = self.where[name]
    with safe_open(file, framework="np") as f:
      return tuple(f.get_slice(full).get_shape())

  def get(self, name: str) -> np.ndarray:
    file, full = self.where[name]
    with safe_open(file, framework="np") as f:
      return f.get_tensor(full)


def load_safetensors(path: str, cfg: ModelConfig, shardings: Any = None,
                     dtype: Any = None) -> shapes.Params:
  """Reads HF Gemma safetensors (a directory, sharded index, or one file) into our param tree.

  One parameter at a time is read to host memory, converted, cast to `dtype` (default
  `cfg.param_dtype`) and placed slice by slice on its sharding. Raises CheckpointMismatch
  naming the first parameter whose HF tensors do not fit `cfg`.
  """
  source = os.fspath(path)
  tensors = _Tensors(find_files(source))
  shapes.check_external(tensors, cfg, "hf", source, ignored=_IGNORED)
  if "lm_head.weight" in tensors.where:
    _check_tied(tensors, source)
  return shapes.read_external(tensors, cfg, "hf", source, shardings, dtype, checked=True)


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
    cfg.qk_norm, cfg.gating_layout = True, GatingLayout.gemma3
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


def save_safetensors(params: shapes.Params, cfg: ModelConfig, out_dir: str, *,
                     dtype: Any = None, max_shard_bytes: int = 4 << 30) -> str:
  """Writes `params` (LoRA merged) as HF safetensors + config.json in `out_dir`; returns it.

  Files above `max_shard_bytes` are split into `model-0000i-of-0000n.safetensors` with
  `model.safetensors.index.json`, building one file's tensors at a time on the host.
  """
  os.makedirs(out_dir, exist_ok=True)
  thunks = dict(shapes.external_tensors(params, cfg, "hf"))
  leaf = shapes.flatten(params)["final_norm/scale"]
  np_dtype = np.dtype(jnp.dtype(str(dtype) if dtype is not None else leaf.dtype))
  sizes = shapes.external_nbytes(cfg, "hf", np_dtype.itemsize)
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
    tensors = {"model." + nm: np.ascontiguousarray(thunks[nm]().astype(np_dtype)) for nm in names}
    save_file(tensors, os.path.join(out_dir, file), metadata={"format": "pt"})
    weight_map.update({"model." + nm: file for nm in names})
    del tensors
  if len(files) > 1:
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
      json.dump({"metadata": {"total_size": sum(sizes.values())}, "weight_map": weight_map},
                f, indent=2)
  with open(os.path.join(out_dir, "config.json"), "w") as f:
    json.dump(config_to_hf(cfg, str(np_dtype)), f, indent=2)
  return out_dir

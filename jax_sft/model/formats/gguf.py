"""llama.cpp's GGUF (Gemma 1/2/3 text models): read and dequantize into our tree, write one file.

Names and layouts are the weight table's `gguf` column (jax_sft.model.params): llama.cpp
converts from HF, so arrays are (out, in) as in HF and RMSNorm scales are stored as
`1 + scale` in float32; Gemma's q/k are not permuted (NEOX RoPE, as in HF). `gguf` (llama.cpp's
own Python package, the `real` extra) lists the tensors over a memory map and
`gguf.quants.dequantize` turns one quantized tensor at a time into float32, so the model is
never held twice in host memory. The model config comes from the metadata; two facts are
not in it and follow llama.cpp (`src/llama-model.cpp`): the query scale is head_dim^-0.5
(embed/heads for the 27B models) and the local layers are `i % 2 == 0` in Gemma 2,
`i % 6 < 5` in Gemma 3, with a local RoPE base of 10K.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np

from jax_sft.config import GLOBAL, LOCAL, GatingLayout, ModelConfig
from jax_sft.model import params as params_lib
from jax_sft.model.formats import shapes

ARCHITECTURES = ("gemma", "gemma2", "gemma3")
# Tensor types gguf.quants.dequantize turns into float32 (checked on this file's tensors
# before anything is read); integer and unknown types are refused by name.
READABLE_TYPES = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K",
                  "Q4_K", "Q5_K", "Q6_K")
WRITE_DTYPES = {"f32": "F32", "float32": "F32", "f16": "F16", "float16": "F16",
                "bf16": "BF16", "bfloat16": "BF16"}
_LAYERS_27B = {"gemma2": 46, "gemma3": 62}  # llama.cpp scales their queries by embed/heads

# Gemma's chat template (text turns; a system message goes first in the user turn, as
# jax_sft.data.template.render_prompt does): what llama.cpp, Ollama and LM Studio apply.
CHAT_TEMPLATE = (
    "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}{%- else -%}{%- set first_user_prefix = '' -%}"
    "{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}")


class GGUFError(ValueError):
  """A .gguf file jax_sft cannot read: the message names the file and what is wrong."""


def _gguf():
  """llama.cpp's `gguf` package, or one clear line on how to get it."""
  try:
    import gguf  # optional heavy dependency: only GGUF users install the `real` extra
  except ImportError:
    raise GGUFError("reading or writing .gguf needs llama.cpp's `gguf` package:"
                    " pip install -e \".[real]\"") from None
  return gguf


def open_reader(path: str):
  """A `gguf.GGUFReader` over `path` (memory-mapped); GGUFError naming the file if it is
  not a readable GGUF (wrong magic, truncated, corrupted offsets). The last two files'
  readers are kept, since parsing a 262K-piece vocabulary takes ~15 s and config and
  weights both need it (export reads one file and writes another)."""
  path = os.fspath(path)
  st = os.stat(path)
  return _open_reader(os.path.abspath(path), st.st_size, st.st_mtime_ns, path)


@functools.lru_cache(maxsize=2)
def _open_reader(abspath: str, size: int, mtime_ns: int, path: str):
  del abspath, mtime_ns  # the cache key: a rewritten file is read again
  gguf = _gguf()
  try:
    return gguf.GGUFReader(path)
  except (ValueError, IndexError, KeyError, OverflowError, TypeError, UnicodeDecodeError) as e:
    raise GGUFError(f"{path}: not a readable GGUF file ({size} bytes; {type(e).__name__}:"
                    f" {str(e).splitlines()[0][:160] if str(e) else 'no detail'});"
                    " truncated or corrupted?") from None


def metadata(reader) -> dict[str, Any]:
  """{key: value} of the file's scalar and string metadata (arrays left out)."""
  out = {}
  for key, field in reader.fields.items():
    if len(field.types) == 1:
      value = field.contents()
      out[key] = value.item() if hasattr(value, "item") else value
  return out


def config_from_gguf(path: str, reader=None) -> ModelConfig:
  """A ModelConfig from the GGUF's metadata (architectures gemma, gemma2, gemma3)."""
  reader = reader if reader is not None else open_reader(path)
  meta = metadata(reader)
  arch = meta.get("general.architecture")
  if arch not in ARCHITECTURES:
    raise GGUFError(f"{path}: general.architecture is {arch!r}; jax_sft reads {ARCHITECTURES}")

  def key(name, default=None):
    value = meta.get(f"{arch}.{name}", default)
    if value is None:
      raise GGUFError(f"{path}: metadata key {arch}.{name} is missing")
    return value

  layers, embed, heads = int(key("block_count")), int(key("embedding_length")), int(key("attention.head_count"))
  head_dim = int(key("attention.key_length", embed // heads))
  eps = float(key("attention.layer_norm_rms_epsilon", 1e-6))
  if abs(eps - 1e-6) > 1e-9:
    raise GGUFError(f"{path}: {arch}.attention.layer_norm_rms_epsilon={eps}; the model implements 1e-6")
  embd = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
  if embd is None:
    raise GGUFError(f"{path}: no token_embd.weight tensor")
  vocab = int(embd.shape[-1])  # ggml lists dims innermost first: (embed, vocab)
  cfg = ModelConfig(num_layers=layers, embed_dim=embed, num_heads=heads,
                    num_kv_heads=int(key("attention.head_count_kv", heads)), head_dim=head_dim,
                    mlp_dim=int(key("feed_forward_length")),
                    vocab_size=256128 if vocab == 256000 else vocab)
  base = float(key("rope.freq_base", 10_000.0))
  if arch == "gemma":
    cfg.rope_base_local = cfg.rope_base_global = base
    return cfg
  cfg.post_norms = True
  cfg.sliding_window = int(key("attention.sliding_window"))
  if layers == _LAYERS_27B[arch]:
    cfg.query_scale = (embed // heads) ** -0.5
  if arch == "gemma2":
    cfg.rope_base_local = cfg.rope_base_global = base
    cfg.attn_softcap = meta.get("gemma2.attn_logit_softcapping")
    cfg.final_softcap = meta.get("gemma2.final_logit_softcapping")
    cfg.attention_types = [LOCAL if i % 2 == 0 else GLOBAL for i in range(layers)]
    return cfg
  cfg.qk_norm, cfg.gating_layout = True, GatingLayout.gemma3
  cfg.rope_base_local, cfg.rope_base_global = 10_000.0, base
  cfg.rope_scale_global = float(meta.get("gemma3.rope.scaling.factor", 1.0) or 1.0)
  cfg.attention_types = [LOCAL if i % 6 < 5 else GLOBAL for i in range(layers)]
  if vocab == 262144 and layers == 18 and embed == 640:
    cfg.preset = "gemma3_270m"
  return cfg


class GGUFTensors:
  """The GGUF's tensors by their llama.cpp names, shapes in numpy order, dequantized to float32."""

  def __init__(self, reader, source: str):
    self.source = source
    self.tensors = {t.name: t for t in reader.tensors}
    for t in self.tensors.values():
      if t.tensor_type.name not in READABLE_TYPES:
        raise GGUFError(f"{source}: tensor {t.name} has type {t.tensor_type.name};"
                        f" jax_sft reads {', '.join(READABLE_TYPES)}")

  def names(self) -> set[str]:
    return set(self.tensors)

  def shape(self, name: str) -> tuple[int, ...]:
    return tuple(int(d) for d in reversed(self.tensors[name].shape))

  def get(self, name: str) -> np.ndarray:
    gguf = _gguf()
    t = self.tensors[name]
    try:
      array = gguf.quants.dequantize(t.data, t.tensor_type)
    except (ValueError, NotImplementedError) as e:
      raise GGUFError(f"{self.source}: tensor {name} ({t.tensor_type.name}) could not be"
                      f" dequantized: {e}") from None
    return array.reshape(self.shape(name))


def load_gguf(path: str, cfg: ModelConfig, shardings: Any = None,
              dtype: Any = None) -> shapes.Params:
  """Reads a GGUF file into our param tree, one tensor at a time: dequantized to float32 on
  the host, converted through the table's gguf column, cast to `dtype` (default
  `cfg.param_dtype`) and placed on its sharding. Raises GGUFError / CheckpointMismatch naming
  the file and the first problem."""
  source = os.fspath(path)
  reader = open_reader(source)
  arch = metadata(reader).get("general.architecture")
  if arch not in ARCHITECTURES:
    raise GGUFError(f"{source}: general.architecture is {arch!r}; jax_sft reads {ARCHITECTURES}")
  tensors = GGUFTensors(reader, source)
  return shapes.read_external(tensors, cfg, "gguf", source, shardings, dtype,
                              ignored=("output.weight",))


# --- writing --------------------------------------------------------------------------------


def _architecture(cfg: ModelConfig) -> str:
  if cfg.qk_norm:
    return "gemma3"
  return "gemma2" if cfg.post_norms else "gemma"


def _check_writable(cfg: ModelConfig, arch: str) -> None:
  """The facts a GGUF cannot say must be the ones llama.cpp assumes for `arch`."""
  types = cfg.layer_types()
  want = {"gemma": [GLOBAL] * cfg.num_layers,
          "gemma2": [LOCAL if i % 2 == 0 else GLOBAL for i in range(cfg.num_layers)],
          "gemma3": [LOCAL if i % 6 < 5 else GLOBAL for i in range(cfg.num_layers)]}[arch]
  if types != want:
    raise GGUFError(f"model.attention_types {types} is not llama.cpp's {arch} layer pattern")
  scale = ((cfg.embed_dim // cfg.num_heads) ** -0.5 if cfg.num_layers == _LAYERS_27B.get(arch)
           else cfg.head_dim ** -0.5)
  if abs(cfg.scale - scale) > 1e-9:
    raise GGUFError(f"model.query_scale {cfg.scale} is not llama.cpp's {arch} scale {scale}")
  if arch == "gemma3" and cfg.rope_base_local != 10_000.0:
    raise GGUFError("model.rope_base_local must be 10000 for llama.cpp's gemma3")
  if arch == "gemma" and cfg.rope_base_local != cfg.rope_base_global:
    raise GGUFError("model.rope_base_local differs from rope_base_global; gemma has one base")


def save_gguf(params: shapes.Params, cfg: ModelConfig, out: str, vocab, *,
              dtype: str = "f32", name: str = "jax_sft") -> str:
  """Writes `params` (LoRA merged) as one GGUF file at `out` with the model's metadata, the
  tokenizer `vocab` (a jax_sft.data.gguf_vocab.Vocab) and Gemma's chat template; returns `out`.

  Matrices are written as `dtype` (f32, f16 or bf16), norms in float32 with llama.cpp's
  `+1` (as its converter does); one tensor at a time is built on the host.
  """
  gguf = _gguf()
  if str(dtype) not in WRITE_DTYPES:
    raise GGUFError(f"--dtype {dtype!r} is not one of {sorted(set(WRITE_DTYPES))}")
  qtype = gguf.GGMLQuantizationType[WRITE_DTYPES[str(dtype)]]
  arch = _architecture(cfg)
  _check_writable(cfg, arch)
  if len(vocab.pieces) != params_lib.external_vocab(cfg):
    raise GGUFError(f"the tokenizer has {len(vocab.pieces)} pieces but the model's embedding"
                    f" has {params_lib.external_vocab(cfg)} rows")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  w = gguf.GGUFWriter(out, arch)
  w.add_name(name)
  w.add_file_type({"F32": 0, "F16": 1, "BF16": 32}[qtype.name])
  w.add_context_length(32768 if arch == "gemma3" else 8192)
  w.add_embedding_length(cfg.embed_dim)
  w.add_block_count(cfg.num_layers)
  w.add_feed_forward_length(cfg.mlp_dim)
  w.add_head_count(cfg.num_heads)
  w.add_head_count_kv(cfg.num_kv_heads)
  w.add_key_length(cfg.head_dim)
  w.add_value_length(cfg.head_dim)
  w.add_layer_norm_rms_eps(1e-6)
  w.add_rope_freq_base(cfg.rope_base_global)
  if arch != "gemma":
    w.add_sliding_window(cfg.sliding_window)
  if arch == "gemma2":
    w.add_attn_logit_softcapping(cfg.attn_softcap or 0.0)
    w.add_final_logit_softcapping(cfg.final_softcap or 0.0)
  if arch == "gemma3" and cfg.rope_scale_global != 1.0:
    w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
    w.add_rope_scaling_factor(cfg.rope_scale_global)
  vocab.add_to(w)
  w.add_chat_template(CHAT_TEMPLATE)
  # Tensor infos first (shapes come from the table), then the data one tensor at a time,
  # so the file is written without holding the whole model on the host.
  thunks = list(shapes.external_tensors(params, cfg, "gguf"))
  sizes = {n: s for wt in params_lib.weights(cfg)
           for n, s in zip(wt.column("gguf").names, params_lib.external_shapes(wt, "gguf", cfg))}
  kinds = {}
  for tensor_name, _ in thunks:
    shape = sizes[tensor_name]
    kind = gguf.GGMLQuantizationType.F32 if len(shape) == 1 else qtype
    kinds[tensor_name] = kind
    byte_shape = gguf.quants.quant_shape_to_byte_shape(shape, kind)
    w.add_tensor_info(tensor_name, byte_shape, np.uint8, int(np.prod(byte_shape)), raw_dtype=kind)
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_ti_data_to_file()
  for tensor_name, thunk in thunks:
    w.write_tensor_data(_encode(gguf, thunk(), kinds[tensor_name]))
  w.close()
  return out


def _encode(gguf, array: np.ndarray, kind) -> np.ndarray:
  """One tensor's bytes as `kind` (F32, F16 or BF16), as a uint8 array."""
  array = np.ascontiguousarray(array, np.float32)
  if kind.name == "F32":
    return array.view(np.uint8)
  if kind.name == "F16":
    return array.astype(np.float16).view(np.uint8)
  return gguf.quants.quantize(array, kind)


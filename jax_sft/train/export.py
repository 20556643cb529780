"""A model, LoRA merged, in a format others load: Kaggle Flax Orbax, HF safetensors or one GGUF
file (llama.cpp, Ollama, LM Studio) with the tokenizer and Gemma's chat template; or the
SentencePiece tokenizer rebuilt from a GGUF.

The source is a training run (its config gives the model and `data.tokenizer`) or released
weights in any format jax_sft reads that carry their config (a `.gguf`, HF or Keras).
"""

from __future__ import annotations

import os
import shutil
from typing import Optional

import jax

from jax_sft.config import ModelConfig
from jax_sft.data import gguf_vocab
from jax_sft.data.tokenizer import resolve_path
from jax_sft.model import formats
from jax_sft.model import lora as lora_lib
from jax_sft.train import checkpoint as ckpt_lib
from jax_sft.train import weights

FORMATS = ("flax", "safetensors", "gguf", "sentencepiece")
# --dtype spellings -> numpy names; GGUF takes f32, f16 or bf16.
DTYPES = {"f32": "float32", "float32": "float32", "f16": "float16", "float16": "float16",
          "bf16": "bfloat16", "bfloat16": "bfloat16"}
_GGUF_DTYPES = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}


def _source(path: str, tokenizer: Optional[str]) -> tuple[ModelConfig, dict, str]:
  """(model config, params with LoRA merged, tokenizer path) of a run or released weights."""
  if ckpt_lib.is_run(path):
    cfg, params, adapters = weights.load_for_inference(path)
    if adapters is not None:
      params = lora_lib.merge(params, adapters, cfg.model, cfg.lora)
    return cfg.model, params, tokenizer if tokenizer is not None else cfg.data.tokenizer
  model_cfg = formats.config_from_checkpoint(path)
  if model_cfg is None:
    raise ValueError(f"{path}: neither a training run nor released weights that carry their"
                     " config (.gguf, HF config.json, Keras preset)")
  default_tok = path if path.endswith(".gguf") else ""
  return (model_cfg, formats.load_params(path, model_cfg),
          tokenizer if tokenizer is not None else default_tok)


def _vocab(tokenizer: str) -> gguf_vocab.Vocab:
  """The GGUF vocabulary of a tokenizer path (a .gguf, a SentencePiece model or its dir)."""
  if tokenizer.endswith(".gguf"):
    return gguf_vocab.Vocab.from_gguf(tokenizer)
  return gguf_vocab.Vocab.from_sentencepiece(resolve_path(tokenizer))


def export(path: str, fmt: str, out: str, dtype: Optional[str] = None,
           tokenizer: Optional[str] = None) -> str:
  """Writes the model at `path` (LoRA merged) to `out` as `fmt`; returns `out`.

  `dtype`: f32/f16/bf16 (or float32/...), default as trained (GGUF: f32). `tokenizer`
  overrides the run's `data.tokenizer` (GGUF metadata, `sentencepiece`).
  """
  if fmt not in FORMATS:
    raise ValueError(f"export format {fmt!r} is not one of {FORMATS}")
  if dtype is not None and dtype not in DTYPES:
    raise ValueError(f"--dtype {dtype!r} is not one of {sorted(DTYPES)}")
  dtype = DTYPES.get(dtype) if dtype else None
  if fmt == "sentencepiece":
    return _export_tokenizer(path, out, tokenizer)
  model_cfg, params, tok = _source(path, tokenizer)
  params = jax.device_get(params)
  if fmt == "flax":
    formats.save_kaggle_flax(params, out, dtype=dtype)
  elif fmt == "safetensors":
    formats.save_safetensors(params, model_cfg, out, dtype=dtype)
  else:
    vocab = _vocab(tok)
    gguf_vocab.check_fits(len(vocab.pieces), model_cfg.vocab_size, tok or "the sample tokenizer")
    formats.save_gguf(params, model_cfg, out, vocab, dtype=_GGUF_DTYPES[dtype or "float32"],
                      name=os.path.basename(os.path.normpath(path)))
  return out


def _export_tokenizer(path: str, out: str, tokenizer: Optional[str]) -> str:
  """Writes the SentencePiece model of `path` (a .gguf, or a run's tokenizer) to `out`."""
  if tokenizer is None:
    tokenizer = path if path.endswith(".gguf") else None
  if tokenizer is None and ckpt_lib.is_run(path):
    ckpt, step = ckpt_lib.open_read_only(path)
    tokenizer = ckpt_lib.config_from_checkpoint(ckpt, step).data.tokenizer
  if tokenizer is None:
    raise ValueError(f"{path}: pass a .gguf, a training run or --tokenizer")
  if tokenizer.endswith(".gguf"):
    return gguf_vocab.spm_path(tokenizer, out)
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  shutil.copyfile(resolve_path(tokenizer), out)
  return out

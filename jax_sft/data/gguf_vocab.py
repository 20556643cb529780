"""Gemma's SentencePiece tokenizer rebuilt from a GGUF file's vocabulary, and back.

A GGUF (`tokenizer.ggml.model = llama`) carries the SentencePiece vocabulary as three
arrays (pieces, scores, token types, numbered as SentencePiece's piece types) plus the
special ids. `spm_path(gguf)` builds the equivalent `tokenizer.model` (a BPE ModelProto,
identity normalizer, byte fallback, no dummy prefix), caches it under a user-writable
folder keyed by a hash of that vocabulary, and returns its path, so the rest of the
pipeline loads an ordinary SentencePiece model. Three things llama.cpp's converter changed
are undone (checked against the published Gemma 3 ids in tests/real):

- whitespace-run pieces (Gemma 3 ids 138-167) are stored with real spaces, because
  llama.cpp matches user-defined pieces on the raw text; SentencePiece matches them after
  turning spaces into "▁" (U+2581), so they are stored with "▁" here;
- `<unk>` is stored as a control token; SentencePiece needs exactly one unknown piece;
- control pieces (`<start_of_turn>`, `<mask>`, `<unusedN>`) stay control: SentencePiece
  never produces them from text (jax_sft.data.tokenizer splits the turn markers out itself).

`Vocab.from_sentencepiece` reads a `.model` the other way, for writing a GGUF.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import tempfile
from typing import Optional

import numpy as np
from sentencepiece import sentencepiece_model_pb2 as spm_pb2

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6  # both numberings
SPACE = "\u2581"  # SentencePiece's escaped space


class VocabError(ValueError):
  """A tokenizer that cannot be built or does not fit the model: names the file."""


@dataclasses.dataclass
class Vocab:
  """A SentencePiece vocabulary as GGUF stores it (real spaces in user-defined pieces)."""

  pieces: list[str]
  scores: np.ndarray  # float32, one per piece
  types: np.ndarray  # int32, SentencePiece/GGUF token types
  bos_id: int = 2
  eos_id: int = 1
  unk_id: int = 3
  pad_id: int = 0
  add_bos: bool = True
  add_space_prefix: bool = False

  def to_model_proto(self) -> bytes:
    """The serialized SentencePiece ModelProto of this vocabulary (see the module doc)."""
    m = spm_pb2.ModelProto()
    for i, (piece, score, kind) in enumerate(zip(self.pieces, self.scores, self.types)):
      kind = int(kind)
      if i == self.unk_id:
        kind = UNKNOWN
      elif kind == UNKNOWN:
        kind = CONTROL  # only one unknown piece may exist
      if kind == USER_DEFINED:
        piece = piece.replace(" ", SPACE)
      m.pieces.add(piece=piece, score=float(score), type=kind)
    t = m.trainer_spec
    t.model_type = spm_pb2.TrainerSpec.BPE
    t.vocab_size = len(self.pieces)
    t.byte_fallback = bool((np.asarray(self.types) == BYTE).any())
    t.unk_id, t.bos_id, t.eos_id, t.pad_id = self.unk_id, self.bos_id, self.eos_id, self.pad_id
    # SentencePiece finds bos/eos/pad by these names, not by the ids above.
    t.unk_piece, t.bos_piece = self.pieces[self.unk_id], self.pieces[self.bos_id]
    t.eos_piece, t.pad_piece = self.pieces[self.eos_id], self.pieces[self.pad_id]
    t.allow_whitespace_only_pieces = True
    t.split_digits = True
    n = m.normalizer_spec
    n.name = "identity"
    n.add_dummy_prefix = self.add_space_prefix
    n.remove_extra_whitespaces = False
    n.escape_whitespaces = True
    return m.SerializeToString()

  @classmethod
  def from_sentencepiece(cls, path: str) -> "Vocab":
    """The vocabulary of a SentencePiece `.model` file, in GGUF's conventions."""
    m = spm_pb2.ModelProto()
    with open(path, "rb") as f:
      m.ParseFromString(f.read())
    pieces = [p.piece.replace(SPACE, " ") if p.type == USER_DEFINED else p.piece for p in m.pieces]
    t = m.trainer_spec
    return cls(pieces, np.array([p.score for p in m.pieces], np.float32),
               np.array([p.type for p in m.pieces], np.int32),
               bos_id=t.bos_id, eos_id=t.eos_id, unk_id=t.unk_id, pad_id=max(t.pad_id, 0),
               add_space_prefix=m.normalizer_spec.add_dummy_prefix)

  @classmethod
  def from_gguf(cls, path: str) -> "Vocab":
    """The vocabulary stored in a GGUF file's `tokenizer.ggml.*` metadata (the last file's
    is kept: parsing 262K pieces takes ~15 s)."""
    st = os.stat(path)
    return _from_gguf(os.path.abspath(path), st.st_size, st.st_mtime_ns)

  @classmethod
  def _read_gguf(cls, path: str) -> "Vocab":
    try:
      import gguf  # optional heavy dependency: only GGUF users install the `real` extra
    except ImportError:
      raise VocabError(f"{path}: reading a .gguf tokenizer needs llama.cpp's `gguf` package:"
                       " pip install -e \".[real]\"") from None
    try:
      fields = gguf.GGUFReader(path).fields
    except (ValueError, IndexError, KeyError, OverflowError, TypeError) as e:
      raise VocabError(f"{path}: not a readable GGUF file ({type(e).__name__}); truncated or"
                       " corrupted?") from None
    kind = _scalar(fields, "tokenizer.ggml.model")
    if kind != "llama":
      raise VocabError(f"{path}: tokenizer.ggml.model is {kind!r}; only SentencePiece ('llama')"
                       " vocabularies are supported")
    tokens = fields["tokenizer.ggml.tokens"]
    pieces = [bytes(tokens.parts[i]).decode("utf-8") for i in tokens.data]
    arrays = {}
    for key in ("scores", "token_type"):
      field = fields.get(f"tokenizer.ggml.{key}")
      if field is None or len(field.data) != len(pieces):
        raise VocabError(f"{path}: tokenizer.ggml.{key} is missing or not one per token")
      arrays[key] = np.concatenate([field.parts[i] for i in field.data])
    return cls(pieces, arrays["scores"].astype(np.float32), arrays["token_type"].astype(np.int32),
               bos_id=int(_scalar(fields, "tokenizer.ggml.bos_token_id", 2)),
               eos_id=int(_scalar(fields, "tokenizer.ggml.eos_token_id", 1)),
               unk_id=int(_scalar(fields, "tokenizer.ggml.unknown_token_id", 3)),
               pad_id=int(_scalar(fields, "tokenizer.ggml.padding_token_id", 0)),
               add_bos=bool(_scalar(fields, "tokenizer.ggml.add_bos_token", True)),
               add_space_prefix=bool(_scalar(fields, "tokenizer.ggml.add_space_prefix", False)))

  def add_to(self, writer) -> None:
    """Writes this vocabulary as `tokenizer.ggml.*` metadata with a `gguf.GGUFWriter`."""
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(self.pieces)
    writer.add_token_scores([float(s) for s in self.scores])
    writer.add_token_types([int(t) for t in self.types])
    writer.add_bos_token_id(self.bos_id)
    writer.add_eos_token_id(self.eos_id)
    writer.add_unk_token_id(self.unk_id)
    writer.add_pad_token_id(self.pad_id)
    writer.add_add_bos_token(self.add_bos)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(self.add_space_prefix)


@functools.lru_cache(maxsize=1)
def _from_gguf(path: str, size: int, mtime_ns: int) -> Vocab:
  del size, mtime_ns  # the cache key: a rewritten file is read again
  return Vocab._read_gguf(path)


def _scalar(fields, key: str, default=None):
  field = fields.get(key)
  if field is None:
    return default
  value = field.contents()
  return value.item() if hasattr(value, "item") else value


def cache_dir() -> str:
  """Where built tokenizers are kept: $JAX_SFT_CACHE, else $XDG_CACHE_HOME or ~/.cache, /jax_sft."""
  root = os.environ.get("JAX_SFT_CACHE") or os.path.join(
      os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "jax_sft")
  return os.path.join(root, "tokenizers")


def file_digest(path: str) -> str:
  """sha256 (hex, first 16) of a file's bytes, read 1 MiB at a time (~0.4 s for 250 MB)."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    while chunk := f.read(1 << 20):
      h.update(chunk)
  return h.hexdigest()[:16]


def spm_path(gguf_path: str, out: Optional[str] = None) -> str:
  """The SentencePiece model built from `gguf_path`'s vocabulary: written to `out` if given,
  else found or written in `cache_dir()` under the file's hash; returns its path.

  Keyed by the file's hash rather than the vocabulary's because parsing a GGUF's 262K-piece
  metadata takes ~15 s, and a cache hit should not.
  """
  if not os.path.isfile(gguf_path):
    raise FileNotFoundError(f"tokenizer not found: {gguf_path}")
  target = out or os.path.join(cache_dir(), f"gguf-{file_digest(gguf_path)}.model")
  if out is None and os.path.exists(target):
    return target
  vocab = Vocab.from_gguf(gguf_path)
  folder = os.path.dirname(os.path.abspath(target))
  os.makedirs(folder, exist_ok=True)
  # Written beside the target and renamed: a concurrent reader never sees half a file.
  fd, tmp = tempfile.mkstemp(dir=folder, suffix=".model.tmp")
  with os.fdopen(fd, "wb") as f:
    f.write(vocab.to_model_proto())
  os.replace(tmp, target)
  return target


def check_fits(tokenizer_size: int, model_vocab: int, tokenizer_path: str) -> None:
  """Raises VocabError naming the tokenizer unless its ids fit the model's embedding rows
  exactly (or the Flax padding of 256000 to 256128)."""
  if tokenizer_size != model_vocab and (tokenizer_size, model_vocab) != (256000, 256128):
    raise VocabError(f"{tokenizer_path}: the tokenizer has {tokenizer_size} pieces but the model"
                     f" has {model_vocab} embedding rows; use the model's own tokenizer")

"""SentencePiece tokenizer that maps Gemma's turn markers to their single control ids.

SentencePiece does not parse control symbols out of text, so `encode` splits the text on
the special strings itself and looks their ids up; everything in between goes through
SentencePiece (with byte fallback in Gemma's and the sample model, so any text round-trips).
"""

from __future__ import annotations

import os
import re
from typing import Sequence

import sentencepiece as spm

from jax_sft.data import gguf_vocab
from jax_sft.data import template

# Strings encoded as one id each when the model has them as pieces.
SPECIAL_STRINGS = (template.START_OF_TURN, template.END_OF_TURN) + template.TAGS


def sample_tokenizer_path() -> str:
  """Path of the bundled sample tokenizer (vocab 1024, Gemma's special ids and turn markers)."""
  return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "samples", "tokenizer.model")


def resolve_path(path: str) -> str:
  """A tokenizer.model path from a file, a Kaggle model dir, a Keras preset dir or a .gguf
  (the SentencePiece model rebuilt from its vocabulary, cached) ("" = sample)."""
  if not path:
    return sample_tokenizer_path()
  if path.endswith(".gguf"):
    return gguf_vocab.spm_path(path)
  if os.path.isdir(path):
    for rel in ("tokenizer.model", "assets/tokenizer/vocabulary.spm", "vocabulary.spm"):
      if os.path.exists(os.path.join(path, rel)):
        return os.path.join(path, rel)
    raise FileNotFoundError(f"no tokenizer.model or assets/tokenizer/vocabulary.spm under {path}")
  if not os.path.exists(path):
    raise FileNotFoundError(f"tokenizer not found: {path}")
  return path


class Tokenizer:
  """Lazily loaded SentencePiece model; picklable (reloads in the worker process)."""

  def __init__(self, path: str = ""):
    self.path = resolve_path(path)
    self._sp = None

  def __getstate__(self):
    return {"path": self.path, "_sp": None}

  @property
  def sp(self) -> spm.SentencePieceProcessor:
    if self._sp is None:
      sp = spm.SentencePieceProcessor()
      sp.Load(self.path)
      self._sp = sp
      # Only the special strings this model has as pieces are split out.
      self._special = {s: sp.PieceToId(s) for s in SPECIAL_STRINGS
                       if sp.PieceToId(s) != sp.unk_id()}
      self._special_by_id = {i: s for s, i in self._special.items()}
      self._skip = {sp.bos_id(), sp.eos_id(), sp.pad_id()}
      self._split_re = re.compile("(" + "|".join(re.escape(s) for s in self._special) + ")")
    return self._sp

  @property
  def vocab_size(self) -> int:
    return self.sp.GetPieceSize()

  @property
  def pad_id(self) -> int:
    return self.sp.pad_id()

  @property
  def bos_id(self) -> int:
    return self.sp.bos_id()

  @property
  def eos_id(self) -> int:
    return self.sp.eos_id()

  @property
  def start_of_turn_id(self) -> int:
    return self._special_id(template.START_OF_TURN)

  @property
  def end_of_turn_id(self) -> int:
    return self._special_id(template.END_OF_TURN)

  def _special_id(self, s: str) -> int:
    self.sp  # noqa: B018 (loads)
    if s not in self._special:
      raise ValueError(f"{self.path}: the tokenizer has no piece {s!r}; it is not a Gemma tokenizer")
    return self._special[s]

  def is_special(self, s: str) -> bool:
    """True when `s` (a turn marker or tag) is one id in this model, split out by `encode`."""
    self.sp  # noqa: B018 (loads)
    return s in self._special

  def encode(self, text: str) -> list[int]:
    """Token ids of `text` (no BOS/EOS added); special strings become their single ids."""
    sp = self.sp
    ids: list[int] = []
    for part in self._split_re.split(text):
      if not part:
        continue
      special = self._special.get(part)
      if special is not None:
        ids.append(special)
      else:
        ids.extend(sp.EncodeAsIds(part))
    return ids

  def decode(self, ids: Sequence[int]) -> str:
    """Text of `ids`; special ids come back as their strings, BOS/EOS/pad as nothing."""
    sp = self.sp
    ids = [int(i) for i in ids]
    if self._special_by_id.keys().isdisjoint(ids) and self._skip.isdisjoint(ids):
      return sp.DecodeIds(ids)  # the common case, without a Python loop over ids
    out, run = [], []
    skip = {sp.bos_id(), sp.eos_id(), sp.pad_id()}
    for i in ids:
      if i in self._special_by_id:
        if run:
          out.append(sp.DecodeIds(run))
          run = []
        out.append(self._special_by_id[i])
      elif i not in skip:
        run.append(i)
    if run:
      out.append(sp.DecodeIds(run))
    return "".join(out)

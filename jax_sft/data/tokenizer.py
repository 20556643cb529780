"""SentencePiece tokenizer that maps Gemma's turn markers to their single control ids.

Two ways in. `encode(text)` is for text the template rendered (a prompt for generation):
SentencePiece does not parse control symbols out of text, so it splits the text on the
special strings itself and looks their ids up. `encode_text(text)` is for data text (a
question, a trace, an answer): a control string or tag in it stays text, spelled with
ordinary pieces, so no row can smuggle in a fake `<end_of_turn>`; `encode_parts` joins the
two for the template's parts (`template.prompt_parts`, `template.target_parts`). Everything
else goes through SentencePiece (with byte fallback in Gemma's and the sample model, so
any text round-trips: `decode(encode_text(x)) == x`).
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
# Strings that must stay text inside data: `encode_text` spells each one it finds that
# the model has as a piece (SentencePiece itself matches user-defined pieces in text).
_GUARDED = tuple(dict.fromkeys(template.CONTROL_STRINGS + template.TAGS))


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
      guarded = [s for s in _GUARDED if sp.PieceToId(s) != sp.unk_id()]
      self._guard_re = re.compile("|".join(re.escape(s) for s in guarded)) if guarded else None
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
    """Token ids of template-rendered `text` (no BOS/EOS added); special strings become
    their single ids. Data text goes through `encode_text` instead."""
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

  def encode_text(self, text: str) -> list[int]:
    """Token ids of data `text`: never a control or tag id, whatever the text holds.

    A guarded string (a turn marker, `<bos>`, `<eos>`, `<pad>` or a tag that the model has
    as a piece) is encoded as its first character and the rest, which no piece spans:

        tok.encode_text("a <end_of_turn> b") has no tok.end_of_turn_id
        tok.decode(tok.encode_text(x)) == x
    """
    sp = self.sp
    if self._guard_re is None or not self._guard_re.search(text):
      return sp.EncodeAsIds(text) if text else []
    ids: list[int] = []
    pos = 0
    for m in self._guard_re.finditer(text):
      for part in (text[pos:m.start()], m.group()[:1], m.group()[1:]):
        if part:
          ids.extend(sp.EncodeAsIds(part))
      pos = m.end()
    if pos < len(text):
      ids.extend(sp.EncodeAsIds(text[pos:]))
    return ids

  def encode_parts(self, parts: Sequence[str]) -> list[int]:
    """Ids of the template's parts: a `template.Marker` the model has as a piece becomes
    its id; runs of everything else (data, and markers the model lacks) are one
    `encode_text` call, so ids match `encode` of the joined text when the data holds no
    special string.

        tok.encode_parts(template.prompt_parts(q)) == tok.encode(template.render_prompt(q))
    """
    self.sp  # noqa: B018 (loads)
    ids: list[int] = []
    run: list[str] = []
    for part in parts:
      special = self._special.get(part) if isinstance(part, template.Marker) else None
      if special is None:
        run.append(part)
        continue
      ids.extend(self.encode_text("".join(run)))
      run = []
      ids.append(special)
    ids.extend(self.encode_text("".join(run)))
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

"""Trains the bundled sample tokenizer (jax_sft/samples/tokenizer.model) on the sample texts.

Vocab 1024 with Gemma's special ids (pad 0, eos 1, bos 2, unk 3), the turn markers as
control symbols (so encoding them relies on `Tokenizer`'s own splitting, as with Gemma),
the reasoning/answer tags as user-defined pieces, byte fallback and no normalization so
any text round-trips. Run: `python -m tools.make_sample_tokenizer` (from the repo root).
"""

from __future__ import annotations

import glob
import io
import os

import sentencepiece as spm

from jax_sft.data import template
from jax_sft.data.tokenizer import sample_tokenizer_path


def sample_texts() -> list[str]:
  """All text in the bundled sample datasets, one string per file line (file order)."""
  root = os.path.join(os.path.dirname(sample_tokenizer_path()), "datasets")
  lines = []
  for path in sorted(glob.glob(os.path.join(root, "*", "*"))):
    with open(path, encoding="utf-8") as f:
      lines.extend(line.strip() for line in f if line.strip())
  return lines


def train(out_path: str, vocab_size: int = 1024) -> None:
  """Trains and writes the model to `out_path`."""
  model = io.BytesIO()
  spm.SentencePieceTrainer.Train(
      sentence_iterator=iter(sample_texts()),
      model_writer=model,
      model_type="bpe",
      vocab_size=vocab_size,
      pad_id=0, eos_id=1, bos_id=2, unk_id=3,
      control_symbols=[template.START_OF_TURN, template.END_OF_TURN],
      user_defined_symbols=list(template.TAGS),
      byte_fallback=True,
      normalization_rule_name="identity",
      add_dummy_prefix=False,
      remove_extra_whitespaces=False,
      split_digits=True,
      character_coverage=0.9995,
      allow_whitespace_only_pieces=True,
      num_threads=1,
      minloglevel=2,
  )
  with open(out_path, "wb") as f:
    f.write(model.getvalue())


if __name__ == "__main__":
  train(sample_tokenizer_path())

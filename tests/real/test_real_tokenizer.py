"""Gemma 3's real tokenizer, rebuilt from the GGUF vocabulary, against Google's published ids."""

import numpy as np
import pytest

from jax_sft.data import encode, gguf_vocab, template
from jax_sft.data.loader import shift_example
from jax_sft.config import DataConfig

pytestmark = pytest.mark.slow

CHAT = "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n"


def test_published_ids(real_tokenizer):
  tok = real_tokenizer
  assert [tok.bos_id] + tok.encode("The capital of France is") == [2, 818, 5279, 529, 7001, 563]
  assert [tok.bos_id] + tok.encode(CHAT) == [2, 105, 2364, 107, 3689, 563, 236743, 236778,
                                             236862, 236778, 236881, 106, 107, 105, 4368, 107]
  assert tok.vocab_size == 262144


def test_special_tokens_are_single_ids(real_tokenizer):
  tok = real_tokenizer
  assert (tok.bos_id, tok.eos_id, tok.pad_id) == (2, 1, 0)
  assert tok.sp.PieceToId("<bos>") == 2 and tok.sp.unk_id() == 3
  assert (tok.start_of_turn_id, tok.end_of_turn_id) == (105, 106)
  assert tok.encode(template.START_OF_TURN) == [105]
  assert tok.encode(template.END_OF_TURN) == [106]
  # Control pieces never come out of SentencePiece itself: only our split makes them.
  assert 106 not in tok.sp.EncodeAsIds(template.END_OF_TURN)


def test_tags_take_the_multi_piece_branch(real_tokenizer):
  tok = real_tokenizer
  for tag in template.TAGS:
    assert not tok.is_special(tag), tag
    assert len(tok.encode(tag)) > 1, tag
  assert encode._Target(tok, "4").separable is False


def test_loss_mask_is_exactly_the_model_turn(real_tokenizer):
  tok = real_tokenizer
  rec = {"question": "What is 2+2?", "reasoning": "Two and two make four.", "answer": "4",
         "metadata": {}}
  tokens, prompt_len, reason = encode.encode_record(rec, tok, DataConfig(max_seq_len=256))
  assert reason == ""
  ex = shift_example(tokens, prompt_len)
  mask = ex["loss_mask"].astype(bool)
  assert tok.decode(ex["targets"][mask]) == template.render_target(
      rec["reasoning"], rec["answer"]) + template.END_OF_TURN
  assert ex["targets"][mask][-1] == 106  # the closing <end_of_turn> is learned
  assert tok.decode(ex["targets"][~mask]) == template.render_prompt(rec["question"])
  assert ex["inputs"][mask][0] == 107  # the "\n" after "model" predicts the first learned token


@pytest.mark.parametrize("text", [
    "Ünïcödé façade — naïve café, ½ ≠ ¾, emoji 🤖👍🏽",
    "中文：你好，世界。日本語：こんにちは。한국어: 안녕하세요",
    "def f(x):\n\tif x  > 2:\n        return {'a': [1, 2]}  # comment\n",
    "line one\r\nline two\r\n\r\n  indented\r\n",
    "  leading and trailing spaces   ",
    "many      spaces and\n\n\n\nnewlines",
])
def test_decode_encode_round_trip(real_tokenizer, text):
  tok = real_tokenizer
  ids = tok.encode(text)
  assert tok.decode(ids) == text
  assert 3 not in ids  # no <unk>: byte fallback covers everything


def test_whitespace_runs_use_their_pieces(real_tokenizer):
  # ids 138-167 are runs of 2..31 spaces; the GGUF stores them with real spaces, which
  # SentencePiece would never match (it sees "▁"): the rebuild must restore them.
  assert real_tokenizer.sp.EncodeAsIds("a" + " " * 4 + "b")[1] == 140


def test_vocab_survives_gguf_and_sentencepiece(gguf_path, tmp_path):
  vocab = gguf_vocab.Vocab.from_gguf(gguf_path)
  spm = gguf_vocab.spm_path(gguf_path, str(tmp_path / "tokenizer.model"))
  back = gguf_vocab.Vocab.from_sentencepiece(spm)
  assert back.pieces == vocab.pieces
  np.testing.assert_array_equal(back.scores, vocab.scores)
  changed = np.flatnonzero(back.types != vocab.types)
  assert changed.tolist() == [3]  # only <unk>: control in the GGUF, unknown in SentencePiece

"""Tokenizer and chat template: round trips, single ids for the turn markers."""

import pickle

import pytest

from jax_sft.data import template
from jax_sft.data.tokenizer import Tokenizer, sample_tokenizer_path

TEXTS = [
    "",
    "plain text",
    "  leading and trailing spaces, tabs\tand\n\nnewlines  \n",
    "中文 ячейка café 😀 \u200b",
    template.render_example("Why?", "Because\n\nreasons.", "B"),
    "<start_of_turn>user\n<start_of_turn><end_of_turn><answer>",
    "<start_of_turn", "<reasoning >",
]


@pytest.fixture(scope="module")
def tok():
  return Tokenizer(sample_tokenizer_path())


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip(tok, text):
  assert tok.decode(tok.encode(text)) == text


def test_the_template_is_the_users_format_to_the_character():
  # The users' format, written out by hand: any change to the template must break this.
  want = ("<start_of_turn>user\nWhy is the sky blue?<end_of_turn>\n"
          "<start_of_turn>model\n<reasoning>Sunlight scatters.</reasoning>\n"
          "<answer>Rayleigh scattering.</answer><end_of_turn>")
  assert template.render_example("Why is the sky blue?", "Sunlight scatters.",
                                 "Rayleigh scattering.") == want
  assert template.render_prompt("Q?", "Be brief.") == (
      "<start_of_turn>user\nBe brief.\n\nQ?<end_of_turn>\n<start_of_turn>model\n")


def test_gemma_special_ids(tok):
  assert (tok.pad_id, tok.eos_id, tok.bos_id) == (0, 1, 2)
  assert tok.vocab_size == 1024
  # Control symbols: SentencePiece alone would spell them out as text pieces.
  assert tok.sp.EncodeAsIds(template.START_OF_TURN) != [tok.start_of_turn_id]
  assert tok.encode(template.START_OF_TURN) == [tok.start_of_turn_id]
  assert tok.encode(template.END_OF_TURN) == [tok.end_of_turn_id]
  for tag in template.TAGS:
    assert len(tok.encode(tag)) == 1


def test_prompt_structure(tok):
  ids = tok.encode(template.render_prompt("Hi"))
  assert ids[0] == tok.start_of_turn_id
  assert ids.count(tok.end_of_turn_id) == 1
  assert ids.count(tok.start_of_turn_id) == 2
  assert tok.decode(ids).endswith("<start_of_turn>model\n")


def test_decode_skips_bos_eos_pad(tok):
  ids = tok.encode("abc")
  assert tok.decode([tok.bos_id] + ids + [tok.eos_id, tok.pad_id]) == "abc"


def test_pickle_reloads(tok):
  tok.encode("warm")
  clone = pickle.loads(pickle.dumps(tok))
  assert clone._sp is None
  assert clone.encode("some text") == tok.encode("some text")


def test_dir_and_missing_paths(tmp_path):
  preset = tmp_path / "assets" / "tokenizer"
  preset.mkdir(parents=True)
  (preset / "vocabulary.spm").write_bytes(open(sample_tokenizer_path(), "rb").read())
  assert Tokenizer(str(tmp_path)).encode("x") == Tokenizer().encode("x")
  with pytest.raises(FileNotFoundError, match="nowhere"):
    Tokenizer(str(tmp_path / "nowhere"))

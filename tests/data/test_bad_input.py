"""Bad input: each is one counted drop or one clear error naming the file and row, never
a traceback, a fused row or a silent loss; the log says what the manifest says."""

import csv
import dataclasses
import json
import logging
import os

import pytest

from jax_sft.config import DataConfig, SourceConfig
from jax_sft.data import encode, normalize, prepare, sources
from jax_sft.data.sources import DataError
from jax_sft.data.tokenizer import Tokenizer

Q = "Why do people keep diaries, and what do they get out of writing things down each day?"
R = "The question asks about motives. Writing helps people sort out their feelings and memories."
A = "People keep diaries to understand their feelings and to remember their days."


TOPICS = ["people keep diaries", "rivers bend as they age", "bread goes stale overnight",
          "cats purr when they are calm", "old paper turns yellow in the sun"]


def _glaive_line(i):
  question = f"Why is it that {TOPICS[i]}, and what explains it in plain words for a reader?"
  return json.dumps({"prompt": question, "response": f"<think>\n{R}\n</think>\n\n{A}"}) + "\n"


def _rows(path, kind):
  return list(sources.iter_rows(SourceConfig(kind=kind, path=str(path)), kind))


def test_a_line_that_is_not_utf8_is_one_counted_drop(tmp_path):
  f = tmp_path / "g.jsonl"
  f.write_bytes(_glaive_line(0).encode() + b'{"prompt": "caf\xe9", "response": "x"}\n' + _glaive_line(2).encode())
  rows = _rows(f, "glaive")
  assert [r.row is None for r in rows] == [False, True, False]
  assert rows[1].where == f"{f}:1" and rows[1].reason == "not_utf8" and "0xe9" in rows[1].error
  assert normalize.normalize(rows[1], "g", "glaive") == (None, "not_utf8")


def test_csv_bytes_that_are_not_utf8(tmp_path):
  f = tmp_path / "r.csv"
  f.write_bytes(b'prompt,response\n"ok question here",' + f'"<think>{R}</think>{A}"\n'.encode()
                + b'"bad \xff question","<think>r</think>a"\n')
  rows = _rows(f, "raiden")
  assert rows[0].row is not None
  assert rows[1].row is None and rows[1].reason == "not_utf8" and "'prompt'" in rows[1].error


def test_csv_unclosed_quote_drops_the_swallowed_rows_never_a_fused_row(tmp_path):
  f = tmp_path / "r.csv"
  f.write_text('prompt,response\n'
               f'"{Q} one","<think>{R}</think>{A}"\n'
               f'"{Q} two has an unclosed quote,<think>{R}</think>{A}\n'
               f'"{Q} three","<think>{R}</think>{A}"\n'
               f'"{Q} four","<think>{R}</think>{A}"\n', newline="")
  rows = _rows(f, "raiden")
  kept = [normalize.normalize(r, "r", "raiden")[0] for r in rows if r.row is not None]
  assert [k["question"] for k in kept] == [f"{Q} one", f"{Q} four"]
  bad = [r for r in rows if r.row is None]
  assert len(bad) == 1 and bad[0].reason == "csv_bad_quote" and "lines 3-4" in bad[0].error
  for k in kept:  # nothing of one row inside another
    assert k["question"].count(Q) == 1 and "<think>" not in k["question"]


def test_csv_unclosed_quote_at_the_end_of_the_file(tmp_path):
  f = tmp_path / "r.csv"
  f.write_text(f'prompt,response\n"{Q}","<think>{R}</think>{A}"\n"{Q} open,"<think>{R}</think>{A}\n', newline="")
  rows = _rows(f, "raiden")
  assert rows[0].row is not None and rows[1].row is None and rows[1].reason == "csv_bad_quote"


def test_csv_wrong_field_count(tmp_path):
  f = tmp_path / "r.csv"
  with open(f, "w", newline="") as fh:
    csv.writer(fh).writerows([["prompt", "response"], [Q, f"<think>{R}</think>{A}", "extra"]])
  (row,) = _rows(f, "raiden")
  assert row.row is None and row.reason == "csv_wrong_field_count" and "3 CSV fields" in row.error


def _cfg(tmp_path, srcs, **kw):
  return DataConfig(sources=srcs, output_dir=str(tmp_path / "out"), num_workers=0, eval_fraction=0.0,
                    max_seq_len=512, max_target_tokens=384, **kw)


def test_an_empty_file_is_named_in_the_log_and_the_manifest(tmp_path, caplog):
  d = tmp_path / "glaive"
  d.mkdir()
  (d / "a.jsonl").write_text("".join(_glaive_line(i) for i in range(3)))
  (d / "b.jsonl").write_text("")
  caplog.set_level(logging.INFO)
  m = prepare.prepare(_cfg(tmp_path, {"g": SourceConfig(kind="glaive", path=str(d))}))
  s = m["sources"]["g"]
  assert s["files"] == {str(d / "a.jsonl"): 3, str(d / "b.jsonl"): 0}
  assert s["empty_files"] == [str(d / "b.jsonl")]
  assert f"read 0 rows from {d / 'b.jsonl'}" in caplog.text


def test_a_source_that_read_nothing_says_so(tmp_path):
  f = tmp_path / "empty.csv"
  f.write_text("")
  with pytest.raises(DataError, match=f"source 'r': read 0 rows from {f}$"):
    prepare.prepare(_cfg(tmp_path, {"r": SourceConfig(kind="raiden", path=str(f))}))


def test_a_missing_relative_path_is_not_tried_as_a_hub_id(tmp_path, monkeypatch):
  import datasets
  monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("tried the hub"))
  monkeypatch.chdir(tmp_path)
  (tmp_path / "data").mkdir()
  with pytest.raises(DataError, match=r"'data/raiden' does not exist \(no file or directory .*data/raiden; "
                                      r"data/ is a local directory"):
    sources.local_files(SourceConfig(kind="raiden", path="data/raiden"), "r")


def test_a_hub_id_that_fails_also_says_it_is_not_local(monkeypatch, tmp_path, caplog):
  import datasets

  def refuse(*a, **k):
    raise FileNotFoundError("Dataset 'someone/raiden' doesn't exist on the Hub")
  monkeypatch.setattr(datasets, "load_dataset", refuse)
  monkeypatch.chdir(tmp_path)
  caplog.set_level(logging.INFO)
  with pytest.raises(DataError, match="not a local file or directory .* could not be loaded as a hub id"):
    list(sources.iter_rows(SourceConfig(kind="raiden", path="someone/raiden"), "r"))
  assert "is not a local file or directory" in caplog.text and "trying it as a hub id" in caplog.text


def _rec(question, reasoning, answer):
  return {"id": "x", "source": "s", "question": question, "reasoning": reasoning, "answer": answer,
          "metadata": {}}


def test_too_long_drops_name_the_part_to_blame():
  tok = Tokenizer()
  cfg = DataConfig(max_seq_len=256, max_target_tokens=0, long_policy="truncate")
  trace = " ".join(f"Step {i} checks one more detail of the problem." for i in range(40))
  long_prompt = "Why is this so? " * 80
  assert encode.encode_record(_rec(long_prompt, trace, "Short."), tok, cfg)[2] == "prompt_too_long"
  long_answer = "The answer goes on and on. " * 60
  assert encode.encode_record(_rec("Why?", trace, long_answer), tok, cfg)[2] == "answer_too_long"


def test_log_counts_match_the_manifest(tmp_path, caplog):
  f = tmp_path / "g.jsonl"
  f.write_bytes(b"".join(_glaive_line(i).encode() for i in range(4)) + b"{oops\n\xff\n"
                + _glaive_line(0).encode())  # a duplicate
  caplog.set_level(logging.INFO)
  m = prepare.prepare(_cfg(tmp_path, {"g": SourceConfig(kind="glaive", path=str(f))}))
  s = m["sources"]["g"]
  assert (s["read"], s["passed"], s["kept"]) == (7, 4, 4)
  assert s["dropped"] == {"exact_duplicate": 1, "invalid_json": 1, "not_utf8": 1}
  line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("g: read"))
  assert line.startswith("g: read 7, passed 4, kept 4, dropped 3 (exact_duplicate 1, invalid_json 1, not_utf8 1)")
  drops = [json.loads(x) for x in open(os.path.join(m_dir(tmp_path), "dropped.jsonl"))]
  assert sorted(d["reason"] for d in drops) == ["exact_duplicate", "invalid_json", "not_utf8"]
  assert any(d["where"].startswith(f"{f}:5") for d in drops)


def m_dir(tmp_path):
  return str(tmp_path / "out")


def test_min_english_prob_below_half_is_refused(tmp_path):
  cfg = _cfg(tmp_path, {"g": SourceConfig(kind="glaive", path=str(tmp_path))})
  cfg = dataclasses.replace(cfg, filters=dataclasses.replace(cfg.filters, min_english_prob=0.2))
  with pytest.raises(DataError, match="min_english_prob: 0.2 is not in"):
    prepare.prepare(cfg)

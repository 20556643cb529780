"""`prepare`: manifest, reuse, determinism, mix notes, length policy, dedup, split."""

import dataclasses
import json
import os

import pytest

from jax_sft.data import dedup, encode, mix, prepare, shards, template
from jax_sft.config import DedupConfig
from jax_sft.data.tokenizer import Tokenizer


def test_manifest_contents(prepared):
  cfg, m = prepared
  for f in ("manifest.json", "preview.jsonl", "lengths.png", "dropped.jsonl"):
    assert os.path.exists(os.path.join(cfg.output_dir, f))
  s = m["sources"]
  assert s["openo1"]["dropped"]["exact_duplicate"] == 1
  assert s["glaive"]["kept"] == 10 and s["glaive"]["unused_by_mix"] > 0
  for name, src in s.items():
    assert src["read"] == src["dropped_total"] + src["passed"], name  # no row uncounted
    assert src["kept"] == src["train"] + src["eval"]
    assert src["tokens"]["p50"] > 0 and src["license"]
  drops = [json.loads(l) for l in open(os.path.join(cfg.output_dir, "dropped.jsonl"))]
  assert len(drops) == sum(v["dropped_total"] for v in s.values())
  assert any(d["where"].endswith("Raiden_DSR1_Part1.csv:6") and d["reason"] == "unclosed_reasoning" for d in drops)
  assert sum(len(shards.shard_paths(cfg.output_dir, sp)) for sp in ("train", "eval")) == 2
  recs = prepare.read_records(cfg.output_dir, "train")
  assert len(recs) == m["splits"]["train"]["examples"]
  assert all(len(t) <= cfg.max_seq_len for t in _tokens(cfg.output_dir, "train"))


def _tokens(output_dir, split):
  from array_record.python import array_record_data_source
  src = array_record_data_source.ArrayRecordDataSource(shards.shard_paths(output_dir, split))
  return [shards.deserialize(src[i])["tokens"] for i in range(len(src))]


def test_records_match_shards(prepared):
  cfg, _ = prepared
  tok = Tokenizer(cfg.tokenizer)
  recs = prepare.read_records(cfg.output_dir, "eval")
  for rec, tokens in zip(recs, _tokens(cfg.output_dir, "eval")):
    assert tok.decode(tokens) == template.render_example(rec["question"], rec["reasoning"], rec["answer"])


def test_reuse_and_determinism(prepared, tmp_path):
  cfg, m = prepared
  shard = os.path.join(cfg.output_dir, m["splits"]["train"]["shards"][0])
  before = os.stat(shard).st_mtime_ns
  assert prepare.prepare(cfg)["content_hash"] == m["content_hash"]
  assert os.stat(shard).st_mtime_ns == before  # reused, not rewritten
  again = prepare.prepare(dataclasses.replace(cfg, output_dir=str(tmp_path / "a")))
  assert (again["content_hash"], again["output_hash"]) == (m["content_hash"], m["output_hash"])
  other = prepare.prepare(dataclasses.replace(cfg, output_dir=str(tmp_path / "b")), seed=1)
  assert other["content_hash"] != m["content_hash"] and other["output_hash"] != m["output_hash"]


def test_under_yield_and_zero(tmp_path, make_cfg):
  cfg = make_cfg(tmp_path / "u")
  cfg.sources = {"gi": dataclasses.replace(cfg.sources["general_inquiry"], count=1000)}
  m = prepare.prepare(cfg)
  assert "gi: asked for 1000 rows but only 19 passed" in m["notes"][0]
  cfg.sources["gi"].keywords = ["zzzz-no-such-word"]
  with pytest.raises(ValueError, match="'gi' yielded no rows"):
    prepare.prepare(cfg)


def _rec(question, reasoning, answer):
  return {"id": "x", "source": "s", "question": question, "reasoning": reasoning, "answer": answer,
          "metadata": {}}


def test_long_model_turn_truncate_keeps_answer(make_cfg):
  tok = Tokenizer()
  cfg = make_cfg("unused", max_seq_len=512, max_target_tokens=64)
  trace = " ".join(f"Step {i} checks one more detail of the problem." for i in range(20))
  rec = _rec("Why?", trace, "The final answer is forty two.")
  tokens, prompt_len, why = encode.encode_record(rec, tok, cfg)
  assert not why and len(tokens) - prompt_len <= 64
  assert rec["metadata"]["truncated_trace"] and trace.startswith(rec["reasoning"])
  assert rec["reasoning"].endswith(".")
  assert tok.decode(tokens[prompt_len:]).endswith("<answer>The final answer is forty two.</answer><end_of_turn>")
  dropped = encode.encode_record(_rec("Why?", trace, "x"), tok, dataclasses.replace(cfg, long_policy="drop"))
  assert dropped[2] == "too_long_model_turn"
  short = encode.encode_record(_rec("Why?", trace, "x"), tok,
                               dataclasses.replace(cfg, max_target_tokens=0, max_seq_len=64, long_policy="drop"))
  assert short[2] == "too_long_example"


def test_dedup_across_sources():
  recs = [dict(_rec(q, "r", "a"), id=str(i)) for i, q in enumerate([
      "How do honey bees tell each other where the best flowers are when they come back to the hive in spring?",
      "how do honey bees tell each other where the best flowers are, when they come back to the hive in spring",
      "How do honey bees tell each other where the best flowers are when they come back to the hive in summer?",
      "What makes bread rise in a hot oven?"])]
  out = [why for _, why in dedup.dedup(recs, DedupConfig())]
  assert out == ["", "exact_duplicate", "near_duplicate", ""]
  assert [w for _, w in dedup.dedup(recs, DedupConfig(near=False))] == ["", "exact_duplicate", "", ""]


def test_an_ids_split_does_not_change_as_the_mix_grows(tmp_path, make_cfg):
  # Session 2 grows the mix; an example held out in session 1 must stay held out (and a
  # training example stay in training), or the held-out loss would be measured on seen rows.
  small = make_cfg(tmp_path / "small", eval_fraction=0.3)
  small.sources = {n: dataclasses.replace(s, count=6) for n, s in small.sources.items()}
  big = make_cfg(tmp_path / "big", eval_fraction=0.3)
  split_of = {}
  for name, cfg in (("small", small), ("big", big)):
    prepare.prepare(cfg)
    split_of[name] = {r["id"]: split for split in ("train", "eval")
                      for r in prepare.read_records(cfg.output_dir, split)}
  common = split_of["small"].keys() & split_of["big"].keys()
  assert len(split_of["big"]) > len(split_of["small"]) >= len(common) > 10
  assert {split_of["small"][i] for i in common} == {"train", "eval"}
  assert all(split_of["small"][i] == split_of["big"][i] for i in common)


def test_curriculum_order():
  rows = [{"id": str(i), "target_len": n, "metadata": {"difficulty": d}} for i, (n, d) in
          enumerate([(50, 5), (10, 1), (30, None)])]
  assert [r["id"] for r in mix.order(rows, "curriculum_length", 0)] == ["1", "2", "0"]
  assert [r["id"] for r in mix.order(rows, "curriculum_difficulty", 0)] == ["1", "2", "0"]


def test_the_order_of_sources_is_part_of_the_content_hash(tmp_path, make_cfg):
  # Sources are read, deduplicated and mixed in order: listing them in another order (a YAML
  # written with sorted keys) gives another output, so it must not reuse the first one.
  cfg = make_cfg(tmp_path / "a")
  reordered = dataclasses.replace(cfg, sources=dict(reversed(list(cfg.sources.items()))))
  assert prepare.content_hash(cfg) != prepare.content_hash(reordered)
  assert prepare.content_hash(cfg) == prepare.content_hash(dataclasses.replace(cfg))

"""Readers, normalization and row filters on every edge case of the five layouts.

Runs over the bundled samples, and over ../shared/datasets when it exists: both
carry the same edge cases at the same rows (see that folder's README.md).
"""

import json
import os

import pytest

from jax_sft.data import filters, normalize, sources
from jax_sft.config import FilterConfig, SourceConfig
from jax_sft.data.sources import DataError

ROOTS = ["samples:"]
SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "datasets")
if os.path.isdir(SHARED):  # the project's shared stand-ins, beside the checkout
  ROOTS.append(os.path.abspath(SHARED) + "/")

# Row key (last part of where) -> expected drop reason; every other row is kept.
EXPECTED = {
    "raiden": {"Raiden_DSR1_Part1.csv:6": "unclosed_reasoning", "Raiden_DSR1_Part1.csv:9": "degenerate_trace",
               "Raiden_DSR1_Part2.csv:3": "empty_answer"},
    "openo1": {"7": "no_answer_tag", "4": "non_english", "12": "non_english", "20": "non_english",
               "1": "math", "8": "math", "15": "math", "3": "code", "11": "code", "18": "code"},
    "general_inquiry": {"11": "empty_answer"},
    "cot_collection": {"199448": "empty_reasoning", "308593": "empty_answer", "417564": "math"},
    "glaive": {"4": "no_reasoning_tag", "8": "empty_question", "10": "unclosed_reasoning",
               "2": "math", "11": "math", "5": "code", "15": "code"},
}
# Rows where the shared stand-ins differ from the bundled samples.
SHARED_ONLY = {
    # "Translate ... into French, Spanish and German": the answer is not English.
    "openo1": {"23": "non_english"},
}
COUNTS = {"raiden": 30, "openo1": 30, "general_inquiry": 20, "cot_collection": 30, "glaive": 25}


def _run(root, kind):
  out = {}
  for raw in sources.iter_rows(SourceConfig(kind=kind, path=root + kind), kind):
    rec, why = normalize.normalize(raw, kind, kind)
    if rec is not None:
      why = filters.row_filter(rec, FilterConfig())
    key = os.path.basename(raw.where)
    out[key if kind == "raiden" else key.split(":")[-1]] = (rec, why)
  return out


@pytest.mark.parametrize("root", ROOTS)
@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_every_edge_case(root, kind):
  rows = _run(root, kind)
  assert len(rows) == COUNTS[kind]
  drops = {k: why for k, (_, why) in rows.items() if why}
  assert drops == {**EXPECTED[kind], **(SHARED_ONLY.get(kind, {}) if root != "samples:" else {})}
  for rec, why in rows.values():
    if not why:
      for field in ("question", "reasoning", "answer"):
        assert rec[field] == rec[field].strip() and rec[field]
      assert "<think>" not in rec["reasoning"].lower() and "</thought>" not in rec["answer"].lower()
      assert rec["reasoning"] not in rec["answer"]


@pytest.mark.parametrize("root", ROOTS)
def test_layout_details(root):
  raiden = _run(root, "raiden")
  prompt = raiden["Raiden_DSR1_Part1.csv:3"][0]["question"]
  assert "," in prompt and '"' in prompt and "\n" in prompt
  long = raiden["Raiden_DSR1_Part2.csv:0"][0]
  assert len(long["reasoning"]) + len(long["answer"]) > 15000
  openo1 = _run(root, "openo1")
  assert openo1["6"][0]["id"] == openo1["19"][0]["id"]  # exact duplicates: same content id
  ws = openo1["10"][0]  # blank lines, spaces and a tab inside both tags
  assert ws["reasoning"] == ws["reasoning"].strip() and ws["answer"] == ws["answer"].strip()
  assert not openo1["14"][1]  # lowercase tags parse like the usual ones
  gi = _run(root, "general_inquiry")
  assert not gi["5"][1] and gi["5"][0]["reasoning"]  # reasoning without <think> tags is kept
  assert "difficulty" not in gi["8"][0]["metadata"]
  assert all(isinstance(r["metadata"].get("difficulty", 3), int) for r, _ in gi.values() if r)
  cot = _run(root, "cot_collection")
  assert "café" in cot["403918"][0]["question"] and not cot["403918"][1]
  assert cot["403918"][0]["id"] == "cot_collection:403918"


def test_filters_unit():
  assert filters.is_latin_script("Mara opened a café.", 0.9)
  assert not filters.is_latin_script("为什么天空是蓝色的", 0.9)
  assert filters.looks_math("Solve 2*x = 4 for x.", {})
  assert not filters.looks_math("Why did Rome split in 395?", {})
  assert filters.looks_code("q", "r", "```python\nx\n```")
  loop = "Let me check this again. " * 5
  assert filters.is_degenerate("Start here. " + loop, FilterConfig())
  assert not filters.is_degenerate("Start here. " + loop, FilterConfig(loop_max_repeats=6))


def test_bad_inputs(tmp_path):
  with pytest.raises(DataError, match="nowhere"):
    list(sources.iter_rows(SourceConfig(kind="openo1", path=str(tmp_path / "nowhere") + "/x.jsonl"), "o"))
  with pytest.raises(DataError, match="unknown kind"):
    list(sources.iter_rows(SourceConfig(kind="alpaca", path=str(tmp_path)), "a"))
  bad = tmp_path / "bad.jsonl"
  bad.write_text(json.dumps({"prompt": "p", "text": "t"}) + "\n")
  with pytest.raises(DataError, match=r"bad.jsonl:0: missing column\(s\) \['response'\]"):
    list(sources.iter_rows(SourceConfig(kind="glaive", path=str(bad)), "g"))
  mixed = tmp_path / "mixed.jsonl"
  mixed.write_text(json.dumps({"prompt": "Why?", "response": "<think>x</think>y"}) + "\n{oops\n")
  rows = list(sources.iter_rows(SourceConfig(kind="glaive", path=str(mixed)), "g"))
  assert rows[1].row is None and rows[1].where.endswith("mixed.jsonl:1") and "JSON" in rows[1].error
  assert normalize.normalize(rows[1], "g", "glaive") == (None, "invalid_json")


def test_gated_hub_message(monkeypatch):
  import datasets

  def refuse(*a, **k):
    raise ConnectionError("401 Client Error: this dataset is gated")
  monkeypatch.setattr(datasets, "load_dataset", refuse)
  monkeypatch.delenv("HF_TOKEN", raising=False)
  src = SourceConfig(kind="general_inquiry", path="moremilk/General_Inquiry_Thinking-Chain-Of-Thought")
  with pytest.raises(DataError, match="gated.*set HF_TOKEN"):
    list(sources.iter_rows(src, "gi"))


def test_cot_hub_uses_parquet_conversion(monkeypatch):
  import datasets
  seen = {}

  def fake(path, **kw):
    seen.update(kw, path=path)
    return [{"source": "Q?", "target": "A", "rationale": "Because so.", "id": "7"}]
  monkeypatch.setattr(datasets, "load_dataset", fake)
  rows = list(sources.iter_rows(SourceConfig(kind="cot_collection", path="kaist-ai/CoT-Collection"), "c"))
  assert seen["revision"] == "refs/convert/parquet" and "trust_remote_code" not in seen
  assert rows[0].own_id == "7"

"""`prepare`: sources -> normalized, filtered, deduplicated, mixed, tokenized shards.

Writes under cfg.output_dir: `{split}-*.array_record` shards ('train', 'eval'),
`{split}.records.jsonl` (the text of each example, same order), `manifest.json`,
`preview.jsonl`, `dropped.jsonl` (every dropped row: where, id, reason) and `lengths.png`.
A second run with the same config and inputs reuses the result (same content hash).
Every row read is counted once: dropped with a reason, or passed; the last stage before the
mix is the final check (checks.py) over every example that can be kept.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from typing import Any, Iterator

from jax_sft.config import DataConfig
from jax_sft.data import checks, mix, outputs, sources, workers
from jax_sft.data import dedup as dedup_lib
from jax_sft.data.tokenizer import Tokenizer

# 2: the reasoning/answer split, text cleaning, the language identifier, the final check.
PIPELINE_VERSION = 2
SPLITS = outputs.SPLITS
_DROP_EXAMPLES = 3  # per source and reason, in the manifest (all of them are in dropped.jsonl)
log = logging.getLogger(__name__)


def content_hash(cfg: DataConfig, seed: int = 0) -> str:
  """Hash of everything that determines the output: config, seed, input files, tokenizer, code version."""
  d = dataclasses.asdict(cfg)
  d["seed"] = seed
  # Sources are read, deduplicated and mixed in their listed order, which sort_keys would hide.
  d["source_order"] = list(cfg.sources)
  for k in ("output_dir", "num_workers", "packing_bins", "shuffle_loader"):
    d.pop(k)
  tok = Tokenizer(cfg.tokenizer)
  with open(tok.path, "rb") as f:
    tok_digest = hashlib.blake2b(f.read(), digest_size=16).hexdigest()
  inputs = {n: sources.input_fingerprint(s, n) for n, s in cfg.sources.items()}
  blob = json.dumps([PIPELINE_VERSION, d, inputs, tok_digest], sort_keys=True, default=str)
  return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


def load_manifest(output_dir: str) -> dict[str, Any]:
  """The manifest.json of a prepared output dir."""
  path = os.path.join(output_dir, "manifest.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: run `jax-sft prepare CONFIG` first")
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def read_records(output_dir: str, split: str) -> list[dict[str, Any]]:
  """Text records of a split in shard order: id, source, question, reasoning, answer, metadata."""
  path = os.path.join(output_dir, f"{split}.records.jsonl")
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f]


def _reusable(cfg: DataConfig, h: str) -> dict[str, Any] | None:
  try:
    m = load_manifest(cfg.output_dir)
  except (FileNotFoundError, json.JSONDecodeError):
    return None
  if m.get("content_hash") != h:
    return None
  for split in SPLITS:
    if not all(os.path.exists(os.path.join(cfg.output_dir, s)) for s in m["splits"][split]["shards"]):
      return None
  return m


class _Counts:
  """Per-source counters and the drop log."""

  def __init__(self, drop_file):
    self.read = collections.Counter()
    self.files: dict[str, dict[str, int]] = collections.defaultdict(dict)
    self.dropped: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    self.examples: dict[str, dict[str, list[str]]] = collections.defaultdict(dict)
    self.truncated = collections.Counter()
    self.repairs: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    self._drop_file = drop_file

  def drop(self, source: str, where: str, rid: str, reason: str) -> None:
    self.dropped[source][reason] += 1
    ex = self.examples[source].setdefault(reason, [])
    if len(ex) < _DROP_EXAMPLES:
      ex.append(where)
    self._drop_file.write(json.dumps({"source": source, "where": where, "id": rid, "reason": reason},
                                     ensure_ascii=False) + "\n")


def _kept_rows(cfg: DataConfig, counts: _Counts, runner: workers.Runner) -> Iterator[tuple[Any, ...]]:
  """(record, encode result) of rows that pass the filters and dedup, source by source.

  Counting, drops, dedup and the streaming stop are applied here in row order, so the
  result does not depend on the number of workers.
  """
  deduper = dedup_lib.Deduper(cfg.dedup)
  for name, src in cfg.sources.items():
    cap = math.ceil(src.count * src.oversample) if src.streaming and src.count else 0
    passed = 0
    for raw, rec, why, (filter_why, norm, hashvalues, *enc) in workers.processed(
        runner, name, src, counts.files[name]):
      counts.read[name] += 1
      why = why or filter_why
      if why:
        counts.drop(name, raw.where + (f" ({raw.error})" if raw.error else ""),
                    rec["id"] if rec else "", why)
        continue
      passed += 1
      dup = deduper.check(rec["id"], norm, hashvalues)
      if dup:
        counts.drop(name, rec["metadata"]["where"], rec["id"], dup)
      else:
        yield rec, enc
      if (cap and passed >= cap) or (src.max_scan and counts.read[name] >= src.max_scan):
        break
    if not counts.read[name]:
      raise sources.DataError(f"source {name!r}: read 0 rows from "
                              f"{', '.join(counts.files[name]) or src.path}")


def _final_check(cfg: DataConfig, counts: _Counts, by_source: dict[str, list[dict[str, Any]]]
                 ) -> dict[str, Any]:
  """Runs checks.py over every example that can be kept; drops the failures (counted)."""
  recs = [r for rows in by_source.values() for r in rows]
  failed = collections.Counter()
  bad_ids = set()
  for rec, why in zip(recs, checks.run(recs, Tokenizer(cfg.tokenizer), cfg.system_prompt)):
    if why:
      failed[why] += 1
      bad_ids.add(id(rec))
      counts.drop(rec["source"], rec["metadata"]["where"], rec["id"], f"check_{why}")
  for name in by_source:
    by_source[name] = [r for r in by_source[name] if id(r) not in bad_ids]
  return {"checked": len(recs), "passed": len(recs) - sum(failed.values()),
          "failed": dict(sorted(failed.items())), "checks": list(checks.NAMES)}


def prepare(cfg: DataConfig, *, seed: int = 0, force: bool = False) -> dict[str, Any]:
  """Runs the whole pipeline (or reuses a matching earlier result); returns the manifest.

  `seed` (the run's one seed) draws the mix, orders it and so fixes the output."""
  _validate(cfg)
  h = content_hash(cfg, seed)
  if not force and (m := _reusable(cfg, h)) is not None:
    log.info("reusing %s (content hash %s)", cfg.output_dir, h)
    return m
  start = time.time()
  os.makedirs(cfg.output_dir, exist_ok=True)
  for old in os.listdir(cfg.output_dir):
    if old.endswith(".array_record") or old == "manifest.json":
      os.remove(os.path.join(cfg.output_dir, old))
  with open(os.path.join(cfg.output_dir, "dropped.jsonl"), "w", encoding="utf-8") as drop_file:
    counts = _Counts(drop_file)
    runner = workers.Runner(cfg)
    try:
      kept = list(_kept_rows(cfg, counts, runner))
    finally:
      runner.close()
    by_source: dict[str, list[dict[str, Any]]] = {n: [] for n in cfg.sources}
    for rec, (tokens, prompt_len, why, shortened) in kept:  # encode drops after all others, as before
      if why:
        counts.drop(rec["source"], rec["metadata"]["where"], rec["id"], why)
        continue
      if shortened is not None:
        rec["reasoning"] = shortened
        rec["metadata"]["truncated_trace"] = True
        counts.truncated[rec["source"]] += 1
      rec["tokens"], rec["prompt_len"] = tokens, prompt_len
      rec["target_len"] = len(tokens) - prompt_len
      by_source[rec["source"]].append(rec)
    final_check = _final_check(cfg, counts, by_source)
  for name, rows in by_source.items():
    for r in rows:
      counts.repairs[name].update(r["metadata"].get("repairs", ()))
  notes, chosen = [], {}
  for name, src in cfg.sources.items():
    chosen[name], note = mix.draw(by_source[name], name, src.count, seed)
    if note:
      notes.append(note)
      log.warning(note)
  split_rows = {s: [] for s in SPLITS}
  for name in cfg.sources:
    for rec in chosen[name]:
      split_rows["eval" if mix.is_eval(rec["id"], cfg.eval_fraction) else "train"].append(rec)
  splits, out_hash = outputs.write_splits(cfg, seed, split_rows)
  per_source = {name: outputs.source_entry(name, src, counts, by_source, chosen, split_rows)
                for name, src in cfg.sources.items()}
  outputs.histogram(cfg.output_dir, chosen)
  manifest = outputs.manifest(cfg, seed, h, out_hash, splits, per_source, notes, final_check)
  manifest["pipeline_version"] = PIPELINE_VERSION
  manifest["seconds"] = round(time.time() - start, 2)
  outputs.write_json(os.path.join(cfg.output_dir, "manifest.json"), manifest)
  for line in outputs.summary_lines(manifest):
    log.info("%s", line)
  return manifest


def _validate(cfg: DataConfig) -> None:
  """What the typed config cannot say (choices are checked when the config loads)."""
  if not cfg.sources:
    raise sources.DataError("data.sources is empty: name at least one source")
  for name, src in cfg.sources.items():
    if not src.path:
      raise sources.DataError(f"data.sources.{name}.path is empty")
  if not 0 <= cfg.eval_fraction < 1:
    raise sources.DataError(f"data.eval_fraction: {cfg.eval_fraction} is not in [0, 1)")
  if not 0.5 <= cfg.filters.min_english_prob <= 1:
    raise sources.DataError(f"data.filters.min_english_prob: {cfg.filters.min_english_prob} is not in "
                            f"[0.5, 1] (English must be the most likely language)")

"""`prepare`: sources -> normalized, filtered, deduplicated, mixed, tokenized shards.

Writes under cfg.output_dir: `{split}-*.array_record` shards ('train', 'eval'),
`{split}.records.jsonl` (the text of each example, same order), `manifest.json`,
`preview.jsonl`, `dropped.jsonl` (every dropped row: where, id, reason) and `lengths.png`.
A second run with the same config and inputs reuses the result (same content hash).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
import math
import multiprocessing
import os
import time
from typing import Any, Iterator

import numpy as np

from jax_sft.data import dedup as dedup_lib
from jax_sft.data import encode, filters, mix, normalize, shards, sources, template
from jax_sft.config import DataConfig
from jax_sft.data.tokenizer import Tokenizer

PIPELINE_VERSION = 1
SPLITS = ("train", "eval")
_DROP_EXAMPLES = 3  # per source and reason, in the manifest (all of them are in dropped.jsonl)
_PARALLEL_MIN = 2000  # below this many rows, worker start-up costs more than it saves
_CHUNK = 500  # records per worker task: few, large tasks
log = logging.getLogger(__name__)


def content_hash(cfg: DataConfig, seed: int = 0) -> str:
  """Hash of everything that determines the output: config, seed, input files, tokenizer, code version."""
  d = dataclasses.asdict(cfg)
  d["seed"] = seed
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
    self.dropped: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    self.examples: dict[str, dict[str, list[str]]] = collections.defaultdict(dict)
    self.truncated = collections.Counter()
    self._drop_file = drop_file

  def drop(self, source: str, where: str, rid: str, reason: str) -> None:
    self.dropped[source][reason] += 1
    ex = self.examples[source].setdefault(reason, [])
    if len(ex) < _DROP_EXAMPLES:
      ex.append(where)
    self._drop_file.write(json.dumps({"source": source, "where": where, "id": rid, "reason": reason},
                                     ensure_ascii=False) + "\n")


# Workers: the tokenizer, config and deduper (for MinHash signatures) are set once per process.
_WORKER: dict[str, Any] = {}


def _init_worker(cfg: DataConfig) -> None:
  _WORKER["cfg"], _WORKER["tok"] = cfg, Tokenizer(cfg.tokenizer)
  _WORKER["dedup"] = dedup_lib.Deduper(cfg.dedup)


def _process_chunk(name: str, recs: list[dict[str, Any] | None]) -> list[tuple[Any, ...]]:
  """The per-row work that needs no ordering, for normalized records of source `name`.

  Per record (None = failed to normalize): (filter drop reason, normalized question,
  MinHash values, tokens, prompt_len, encode drop reason, shortened trace or None).
  """
  cfg, out = _WORKER["cfg"], []
  for rec in recs:
    why = filters.row_filter(rec, cfg.filters, cfg.sources[name].keywords) if rec is not None else ""
    if rec is None or why:
      out.append((why, None, None, None, 0, "", None))
      continue
    norm, hashvalues = _WORKER["dedup"].signature(rec["question"])
    tokens, prompt_len, enc_why = encode.encode_record(rec, _WORKER["tok"], cfg)
    shortened = rec["reasoning"] if rec["metadata"].get("truncated_trace") else None
    out.append(("", norm, hashvalues, tokens, prompt_len, enc_why, shortened))
  return out


class _Done:

  def __init__(self, value):
    self.value = value

  def get(self):
    return self.value


class _Runner:
  """Runs chunks in this process until _PARALLEL_MIN rows were seen, then in worker processes."""

  def __init__(self, cfg: DataConfig):
    self.cfg, self.pool, self.rows = cfg, None, 0
    _init_worker(cfg)

  def submit(self, name: str, recs: list[dict[str, Any] | None]) -> Any:
    self.rows += len(recs)
    if self.pool is None and self.cfg.num_workers > 1 and self.rows > _PARALLEL_MIN:
      self.pool = multiprocessing.get_context("spawn").Pool(self.cfg.num_workers, _init_worker, (self.cfg,))
    if self.pool is None:
      return _Done(_process_chunk(name, recs))
    return self.pool.apply_async(_process_chunk, (name, recs))

  def close(self) -> None:
    if self.pool is not None:
      self.pool.terminate()  # tasks of a source stopped early may still be running
      self.pool.join()


def _processed(runner: _Runner, name: str, src) -> Iterator[tuple[Any, ...]]:
  """(raw, rec, normalize drop reason, worker result) per row of one source, in order.

  Reading and normalizing happen here while workers filter, sign and encode earlier
  chunks (a few in flight); the caller may stop early (streaming caps).
  """
  pending = collections.deque()
  rows = ((raw, *normalize.normalize(raw, name, src.kind)) for raw in sources.iter_rows(src, name))
  in_flight = 2 * max(1, runner.cfg.num_workers)
  for chunk in _chunks(rows, _CHUNK):
    pending.append((chunk, runner.submit(name, [rec for _, rec, _ in chunk])))
    while len(pending) > in_flight:
      chunk, res = pending.popleft()
      for row, r in zip(chunk, res.get()):
        yield (*row, r)
  while pending:
    chunk, res = pending.popleft()
    for row, r in zip(chunk, res.get()):
      yield (*row, r)


def _kept_rows(cfg: DataConfig, counts: _Counts, runner: _Runner) -> Iterator[tuple[Any, ...]]:
  """(record, encode result) of rows that pass the filters and dedup, source by source.

  Counting, drops, dedup and the streaming stop are applied here in row order, so the
  result does not depend on the number of workers.
  """
  deduper = dedup_lib.Deduper(cfg.dedup)
  for name, src in cfg.sources.items():
    cap = math.ceil(src.count * src.oversample) if src.streaming and src.count else 0
    passed = 0
    for raw, rec, why, (filter_why, norm, hashvalues, *enc) in _processed(runner, name, src):
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
    log.info("%s: read %d rows, %d passed the row filters", name, counts.read[name], passed)


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
  chunk = []
  for item in items:
    chunk.append(item)
    if len(chunk) == size:
      yield chunk
      chunk = []
  if chunk:
    yield chunk


def _percentiles(values: list[int]) -> dict[str, float]:
  if not values:
    return {}
  v = np.asarray(values)
  return {"p50": float(np.percentile(v, 50)), "p90": float(np.percentile(v, 90)),
          "p99": float(np.percentile(v, 99)), "max": int(v.max()), "mean": round(float(v.mean()), 1)}


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
    runner = _Runner(cfg)
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
  manifest = _write_outputs(cfg, seed, h, counts, by_source, chosen, split_rows, notes)
  manifest["seconds"] = round(time.time() - start, 2)
  _write_json(os.path.join(cfg.output_dir, "manifest.json"), manifest)
  return manifest


def _write_outputs(cfg, seed, h, counts, by_source, chosen, split_rows, notes) -> dict[str, Any]:
  out_hash = hashlib.blake2b(digest_size=16)
  splits = {}
  for split in SPLITS:
    rows = mix.order(split_rows[split], cfg.order, seed)
    blobs = [shards.serialize(r["tokens"], r["prompt_len"], r["id"], r["source"]) for r in rows]
    for b in blobs:
      out_hash.update(hashlib.blake2b(b, digest_size=16).digest())
    names = shards.write_shards(cfg.output_dir, split, blobs, cfg.records_per_shard)
    with open(os.path.join(cfg.output_dir, f"{split}.records.jsonl"), "w", encoding="utf-8") as f:
      for r in rows:
        f.write(json.dumps({k: r[k] for k in ("id", "source", "question", "reasoning", "answer", "metadata")},
                           ensure_ascii=False) + "\n")
    splits[split] = {"examples": len(rows), "tokens": int(sum(len(r["tokens"]) for r in rows)),
                     "shards": names}
    if split == "train":
      with open(os.path.join(cfg.output_dir, "preview.jsonl"), "w", encoding="utf-8") as f:
        for r in rows[:cfg.preview_rows]:
          text = template.render_example(r["question"], r["reasoning"], r["answer"])
          f.write(json.dumps({"id": r["id"], "source": r["source"], "text": text}, ensure_ascii=False) + "\n")
  per_source = {}
  for name, src in cfg.sources.items():
    dropped = dict(sorted(counts.dropped[name].items()))
    per_source[name] = {
        "kind": src.kind, "path": src.path, "license": src.license or "unknown (set sources.<name>.license)",
        "asked": src.count, "read": counts.read[name], "passed": len(by_source[name]),
        "kept": len(chosen[name]), "unused_by_mix": len(by_source[name]) - len(chosen[name]),
        "dropped": dropped, "dropped_total": sum(dropped.values()), "truncated": counts.truncated[name],
        "train": sum(r["source"] == name for r in split_rows["train"]),
        "eval": sum(r["source"] == name for r in split_rows["eval"]),
        "tokens": _percentiles([len(r["tokens"]) for r in chosen[name]]),
        "model_turn_tokens": _percentiles([r["target_len"] for r in chosen[name]]),
        "drop_examples": counts.examples[name],
    }
  _histogram(cfg.output_dir, chosen)
  tok = Tokenizer(cfg.tokenizer)
  return {
      "content_hash": h, "output_hash": out_hash.hexdigest(), "pipeline_version": PIPELINE_VERSION,
      "tokenizer": tok.path, "vocab_size": tok.vocab_size, "max_seq_len": cfg.max_seq_len,
      "max_target_tokens": cfg.max_target_tokens, "long_policy": cfg.long_policy, "seed": seed,
      "order": cfg.order, "splits": splits, "sources": per_source, "notes": notes,
      "licenses": {n: per_source[n]["license"] for n in per_source},
  }


def _histogram(output_dir: str, chosen: dict[str, list[dict[str, Any]]]) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top  (heavy; loaded when first plotted)
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(8, 4.5))
  for name, rows in chosen.items():
    if rows:
      ax.hist([len(r["tokens"]) for r in rows], bins=40, alpha=0.5, label=f"{name} ({len(rows)})")
  ax.set_xlabel("tokens per example")
  ax.set_ylabel("examples")
  ax.set_title("Token lengths per source")
  ax.legend()
  fig.tight_layout()
  fig.savefig(os.path.join(output_dir, "lengths.png"), dpi=80)
  plt.close(fig)


def _write_json(path: str, obj: Any) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=2, ensure_ascii=False)
  os.replace(tmp, path)


def _validate(cfg: DataConfig) -> None:
  """What the typed config cannot say (choices are checked when the config loads)."""
  if not cfg.sources:
    raise sources.DataError("data.sources is empty: name at least one source")
  for name, src in cfg.sources.items():
    if not src.path:
      raise sources.DataError(f"data.sources.{name}.path is empty")
  if not 0 <= cfg.eval_fraction < 1:
    raise sources.DataError(f"data.eval_fraction: {cfg.eval_fraction} is not in [0, 1)")

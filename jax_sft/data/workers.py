"""The per-row work of `prepare` that needs no ordering, in worker processes.

The reading process reads and normalizes rows and hands chunks of `CHUNK` to
`num_workers` spawned processes (started only past `PARALLEL_MIN` rows), which run the row
filters, the MinHash signature and the tokenizer; results come back in row order, so
counting, drops, dedup and the streaming stop (in prepare.py) do not depend on the
number of workers.
"""

from __future__ import annotations

import collections
import multiprocessing
from typing import Any, Iterator

from jax_sft.config import DataConfig
from jax_sft.data import dedup as dedup_lib
from jax_sft.data import encode, filters, normalize, sources
from jax_sft.data.tokenizer import Tokenizer

PARALLEL_MIN = 2000  # below this many rows, worker start-up costs more than it saves
CHUNK = 500  # records per worker task: few, large tasks

# Set once per process: the tokenizer, config and deduper (for MinHash signatures).
_WORKER: dict[str, Any] = {}


def _init_worker(cfg: DataConfig) -> None:
  _WORKER["cfg"], _WORKER["tok"] = cfg, Tokenizer(cfg.tokenizer)
  _WORKER["dedup"] = dedup_lib.Deduper(cfg.dedup)


def process_chunk(name: str, recs: list[dict[str, Any] | None]) -> list[tuple[Any, ...]]:
  """The per-row work for normalized records of source `name`.

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


class Runner:
  """Runs chunks in this process until PARALLEL_MIN rows were seen, then in worker processes."""

  def __init__(self, cfg: DataConfig):
    self.cfg, self.pool, self.rows = cfg, None, 0
    _init_worker(cfg)

  def submit(self, name: str, recs: list[dict[str, Any] | None]) -> Any:
    self.rows += len(recs)
    if self.pool is None and self.cfg.num_workers > 1 and self.rows > PARALLEL_MIN:
      self.pool = multiprocessing.get_context("spawn").Pool(self.cfg.num_workers, _init_worker, (self.cfg,))
    if self.pool is None:
      return _Done(process_chunk(name, recs))
    return self.pool.apply_async(process_chunk, (name, recs))

  def close(self) -> None:
    if self.pool is not None:
      self.pool.terminate()  # tasks of a source stopped early may still be running
      self.pool.join()


def processed(runner: Runner, name: str, src, files_read: dict[str, int]) -> Iterator[tuple[Any, ...]]:
  """(raw, rec, normalize drop reason, worker result) per row of one source, in order.

  Reading and normalizing happen here while workers filter, sign and encode earlier
  chunks (a few in flight); the caller may stop early (streaming caps).
  """
  pending = collections.deque()
  rows = ((raw, *normalize.normalize(raw, name, src.kind))
          for raw in sources.iter_rows(src, name, files_read))
  in_flight = 2 * max(1, runner.cfg.num_workers)
  for chunk in _chunks(rows, CHUNK):
    pending.append((chunk, runner.submit(name, [rec for _, rec, _ in chunk])))
    while len(pending) > in_flight:
      chunk, res = pending.popleft()
      for row, r in zip(chunk, res.get()):
        yield (*row, r)
  while pending:
    chunk, res = pending.popleft()
    for row, r in zip(chunk, res.get()):
      yield (*row, r)


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
  chunk = []
  for item in items:
    chunk.append(item)
    if len(chunk) == size:
      yield chunk
      chunk = []
  if chunk:
    yield chunk

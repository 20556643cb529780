"""Readers: yield the raw rows of one source, each tagged with where it came from.

Local CSV / JSONL / JSON files are read with the standard library so every row keeps its
file and row number and one malformed line is a counted drop rather than a failed file
(`datasets`' JSON builder aborts the whole file on one bad line). A bad row comes back with
`row=None` and a reason that says what happened: `not_utf8`, `invalid_json`,
`not_a_json_object`, `csv_wrong_field_count`, `csv_bad_quote` (an unclosed or stray quote:
the rows it swallowed are dropped together, never fused into one). Hub ids and parquet
files go through `datasets` (streaming when configured; never `trust_remote_code`).
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import hashlib
import json
import logging
import os
import sys
from typing import Any, Iterator

from jax_sft.config import SourceConfig

KINDS = ("raiden", "openo1", "general_inquiry", "cot_collection", "glaive")
COLUMNS = {
    "raiden": ("prompt", "response"),
    "openo1": ("instruction", "output"),
    "general_inquiry": ("question", "answer", "metadata"),
    "cot_collection": ("source", "target", "rationale"),
    "glaive": ("prompt", "response"),
}
_EXTENSIONS = (".csv", ".jsonl", ".json", ".parquet")
COT_PARQUET_REVISION = "refs/convert/parquet"
log = logging.getLogger(__name__)


class DataError(ValueError):
  """Input that cannot be read at all; the message names the source, file or key."""


@dataclasses.dataclass
class RawRow:
  where: str  # "file:row" (0-based data row) or "file:id" or "hub_id:row"
  row: dict[str, Any] | None  # None when the row could not be parsed
  error: str = ""  # what went wrong, in words (with `row=None`)
  own_id: str = ""  # the source's own id, when it has one
  reason: str = ""  # the drop reason (with `row=None`)


SAMPLES_PREFIX = "samples:"


def resolve_samples(path: str) -> str:
  """`samples:raiden` -> the bundled sample dataset dir (works from any working directory)."""
  if path.startswith(SAMPLES_PREFIX):
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "samples", "datasets")
    return os.path.join(root, path[len(SAMPLES_PREFIX):])
  return path


def local_files(src: SourceConfig, name: str) -> list[str] | None:
  """The local files of `src` (a dir, a file or a glob), or None when `path` is a hub id."""
  path = resolve_samples(os.path.expanduser(src.path))
  if os.path.isdir(path):
    pats = src.data_files or ["**/*"]
    files = sorted({f for p in pats for f in glob.glob(os.path.join(path, p), recursive=True)})
    files = [f for f in files if f.endswith(_EXTENSIONS) and os.path.isfile(f)]
    if not files:
      raise DataError(f"source {name!r}: no .csv/.jsonl/.json/.parquet files under {path}")
    return files
  if os.path.isfile(path):
    return [path]
  if any(ch in path for ch in "*?["):
    files = sorted(glob.glob(path, recursive=True))
    if not files:
      raise DataError(f"source {name!r}: no files match {path}")
    return files
  where = os.path.abspath(path)
  if path.startswith((".", "/", "~")) or path.endswith(_EXTENSIONS) or path.count("/") != 1:
    raise DataError(f"source {name!r}: {path!r} does not exist (no file or directory {where}) "
                    f"and is not a hub id (owner/name)")
  if os.path.isdir(path.split("/")[0]):
    raise DataError(f"source {name!r}: {path!r} does not exist (no file or directory {where}; "
                    f"{path.split('/')[0]}/ is a local directory, so this is not a hub id)")
  log.info("source %r: %r is not a local file or directory (no %s); trying it as a hub id",
           name, path, where)
  return None


def iter_rows(src: SourceConfig, name: str, files_read: dict[str, int] | None = None
              ) -> Iterator[RawRow]:
  """Every raw row of the source, in file order (or shuffled-stream order for streaming hub
  data). `files_read`, when given, gets each file's (or the hub id's) row count."""
  if src.kind not in KINDS:
    raise DataError(f"source {name!r}: unknown kind {src.kind!r}; expected one of {', '.join(KINDS)}")
  files_read = {} if files_read is None else files_read
  files = local_files(src, name)
  if files is None:
    yield from _counted(_hub_rows(src, name), src.path, files_read)
    return
  for path in files:
    if path.endswith(".csv"):
      rows = _csv_rows(path, src.kind)
    elif path.endswith(".parquet"):
      rows = _datasets_rows("parquet", src, name, data_files=[path])
    elif src.kind == "cot_collection" and path.endswith(".json"):
      rows = _cot_object_rows(path)
    else:
      rows = _jsonl_rows(path, src.kind)
    yield from _counted(rows, path, files_read)  # a file with 0 rows is named by prepare's summary


def _counted(rows: Iterator[RawRow], label: str, files_read: dict[str, int]) -> Iterator[RawRow]:
  files_read[label] = 0
  for raw in rows:
    files_read[label] += 1
    yield raw


def _not_utf8(row: dict[str, Any]) -> str:
  """The column holding bytes that were not UTF-8 (read with surrogateescape), or ""."""
  for k, v in row.items():
    if isinstance(v, str):
      try:
        v.encode("utf-8")
      except UnicodeEncodeError as e:
        return f"column {k!r} is not UTF-8 (byte 0x{ord(v[e.start]) - 0xDC00:02x} at character {e.start})"
  return ""


def _check_columns(where: str, row: dict[str, Any], kind: str) -> None:
  missing = [c for c in COLUMNS[kind] if c not in row]
  if missing:
    raise DataError(f"{where}: missing column(s) {missing} for a {kind} source; "
                    f"found {sorted(row)[:10]}")


def _csv_rows(path: str, kind: str) -> Iterator[RawRow]:
  """Rows of a CSV file; strict quoting, so an unclosed quote is an error at the point where
  it swallowed the next row, never a fused row (the reader resumes at the next line)."""
  csv.field_size_limit(sys.maxsize)  # Raiden responses exceed the 128 KB default on rare rows
  with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
    reader = csv.reader(f, strict=True)
    try:
      header = next(reader)
    except StopIteration:
      return
    except csv.Error as e:
      raise DataError(f"{path}: unreadable CSV header ({e})") from None
    _check_columns(path, {k: None for k in header}, kind)
    i = 0
    while True:
      first_line = reader.line_num + 1
      try:
        values = next(reader)
      except StopIteration:
        return
      except csv.Error as e:
        yield RawRow(f"{path}:{i}", None, f"bad quoting ({e}): lines {first_line}-{reader.line_num} "
                     f"dropped, the rows an unclosed quote swallowed", reason="csv_bad_quote")
        i += 1
        continue
      if not values:  # a blank line
        continue
      where, i = f"{path}:{i}", i + 1
      if len(values) != len(header):
        yield RawRow(where, None, f"{len(values)} CSV fields, the header has {len(header)}",
                     reason="csv_wrong_field_count")
        continue
      row = dict(zip(header, values))
      bad = _not_utf8(row)
      yield RawRow(where, None, bad, reason="not_utf8") if bad else RawRow(where, row)


def _jsonl_rows(path: str, kind: str) -> Iterator[RawRow]:
  with open(path, "rb") as f:
    first = True
    for i, data in enumerate(f):
      where = f"{path}:{i}"
      try:
        line = data.decode("utf-8")
      except UnicodeDecodeError as e:
        yield RawRow(where, None, f"not UTF-8 (byte 0x{data[e.start]:02x} at byte {e.start} of the line)",
                     reason="not_utf8")
        continue
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError as e:
        yield RawRow(where, None, f"not valid JSON ({e.msg})", reason="invalid_json")
        continue
      if not isinstance(row, dict):
        yield RawRow(where, None, "not a JSON object", reason="not_a_json_object")
        continue
      if first:
        _check_columns(where, row, kind)
        first = False
      yield RawRow(where, row)


def _cot_object_rows(path: str) -> Iterator[RawRow]:
  # One JSON object keyed by id. `datasets`' json builder would silently give one row with
  # a column per id, so it is read directly (the 2.36 GB real file needs ~10 GB of RAM;
  # use the hub's parquet conversion for it).
  with open(path, encoding="utf-8", errors="surrogateescape") as f:
    try:
      obj = json.load(f)
    except json.JSONDecodeError as e:
      raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
  if not isinstance(obj, dict):
    raise DataError(f"{path}: expected one JSON object keyed by id, got {type(obj).__name__}")
  for i, (key, row) in enumerate(obj.items()):
    if not isinstance(row, dict):
      yield RawRow(f"{path}:{key}", None, "entry is not an object", own_id=key, reason="not_a_json_object")
      continue
    if i == 0:
      _check_columns(f"{path}:{key}", row, "cot_collection")
    bad = _not_utf8(row)
    yield (RawRow(f"{path}:{key}", None, bad, own_id=key, reason="not_utf8") if bad
           else RawRow(f"{path}:{key}", row, own_id=key))


def _datasets_rows(builder: str, src: SourceConfig, name: str, **kwargs) -> Iterator[RawRow]:
  import datasets  # pylint: disable=g-import-not-at-top  (heavy; only hub and parquet sources need it)

  ds = datasets.load_dataset(builder, split="train", streaming=src.streaming, **kwargs)
  yield from _dataset_iter(ds, src, kwargs.get("data_files", [builder])[0])


def _dataset_iter(ds, src: SourceConfig, label: str) -> Iterator[RawRow]:
  if src.streaming and src.shuffle_buffer:
    ds = ds.shuffle(seed=0, buffer_size=src.shuffle_buffer)
  first = True
  for i, row in enumerate(ds):
    if first:
      _check_columns(f"{label}:{i}", row, src.kind)
      first = False
    own = str(row.get("id") or row.get("__index_level_0__") or "") if src.kind == "cot_collection" else ""
    yield RawRow(f"{label}:{i}", row, own_id=own)


def _hub_rows(src: SourceConfig, name: str) -> Iterator[RawRow]:
  import datasets  # pylint: disable=g-import-not-at-top  (heavy; only hub and parquet sources need it)

  revision = src.revision
  if src.kind == "cot_collection" and revision is None:
    revision = COT_PARQUET_REVISION  # the repo's loading script is rejected by `datasets`
  try:
    ds = datasets.load_dataset(src.path, revision=revision, data_files=src.data_files,
                               split="train", streaming=src.streaming,
                               token=os.environ.get("HF_TOKEN") or None)
  except Exception as e:  # pylint: disable=broad-except
    msg = str(e)
    if any(w in msg.lower() for w in ("gated", "401", "403", "authenticat", "restricted")):
      hint = ("set HF_TOKEN to a Hugging Face token that has accepted the dataset's terms"
              if not os.environ.get("HF_TOKEN") else
              "HF_TOKEN is set but was refused: accept the dataset's terms on its Hub page")
      raise DataError(f"source {name!r}: {src.path} is gated on the Hub; {hint}") from None
    raise DataError(f"source {name!r}: {src.path!r} is not a local file or directory (no "
                    f"{os.path.abspath(src.path)}) and could not be loaded as a hub id "
                    f"(revision={revision}): {msg.splitlines()[0] if msg else type(e).__name__}") from e
  yield from _dataset_iter(ds, src, src.path)


def input_fingerprint(src: SourceConfig, name: str) -> list[str]:
  """Identifies the inputs for the content hash: each local file's name and content digest, or hub id + revision."""
  files = local_files(src, name)
  if files is None:
    return [f"{src.path}@{src.revision}:{src.data_files}"]
  out = []
  for f in files:
    h = hashlib.blake2b(digest_size=16)
    with open(f, "rb") as fh:
      for chunk in iter(lambda: fh.read(1 << 20), b""):
        h.update(chunk)
    out.append(f"{os.path.basename(f)}:{h.hexdigest()}")
  return out

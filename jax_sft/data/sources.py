"""Readers: yield the raw rows of one source, each tagged with where it came from.

Local CSV / JSONL / JSON files are read with the standard library so every row keeps its
file and row number and one malformed line is a counted drop rather than a failed file
(`datasets`' JSON builder aborts the whole file on one bad line). Hub ids and parquet files
go through `datasets` (streaming when configured; never `trust_remote_code`).
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import hashlib
import json
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


class DataError(ValueError):
  """Input that cannot be read at all; the message names the source, file or key."""


@dataclasses.dataclass
class RawRow:
  where: str  # "file:row" (0-based data row) or "file:id" or "hub_id:row"
  row: dict[str, Any] | None  # None when the row could not be parsed
  error: str = ""
  own_id: str = ""  # the source's own id, when it has one


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
  if path.startswith((".", "/", "~")) or path.endswith(_EXTENSIONS) or path.count("/") != 1:
    raise DataError(f"source {name!r}: {path!r} is neither a local file/dir nor a hub id (owner/name)")
  return None


def iter_rows(src: SourceConfig, name: str) -> Iterator[RawRow]:
  """Every raw row of the source, in file order (or shuffled-stream order for streaming hub data)."""
  if src.kind not in KINDS:
    raise DataError(f"source {name!r}: unknown kind {src.kind!r}; expected one of {', '.join(KINDS)}")
  files = local_files(src, name)
  if files is None:
    yield from _hub_rows(src, name)
    return
  for path in files:
    if path.endswith(".csv"):
      yield from _csv_rows(path, src.kind)
    elif path.endswith(".parquet"):
      yield from _datasets_rows("parquet", src, name, data_files=[path])
    elif src.kind == "cot_collection" and path.endswith(".json"):
      yield from _cot_object_rows(path)
    else:
      yield from _jsonl_rows(path, src.kind)


def _check_columns(where: str, row: dict[str, Any], kind: str) -> None:
  missing = [c for c in COLUMNS[kind] if c not in row]
  if missing:
    raise DataError(f"{where}: missing column(s) {missing} for a {kind} source; "
                    f"found {sorted(row)[:10]}")


def _csv_rows(path: str, kind: str) -> Iterator[RawRow]:
  csv.field_size_limit(sys.maxsize)  # Raiden responses exceed the 128 KB default on rare rows
  with open(path, newline="", encoding="utf-8") as f:
    reader = csv.DictReader(f)
    if reader.fieldnames is None:
      return
    _check_columns(path, {k: None for k in reader.fieldnames}, kind)
    for i, row in enumerate(reader):
      if None in row or any(v is None for v in row.values()):
        yield RawRow(f"{path}:{i}", None, "wrong number of CSV fields")
      else:
        yield RawRow(f"{path}:{i}", row)


def _jsonl_rows(path: str, kind: str) -> Iterator[RawRow]:
  with open(path, encoding="utf-8") as f:
    first = True
    for i, line in enumerate(f):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError as e:
        yield RawRow(f"{path}:{i}", None, f"not valid JSON ({e.msg})")
        continue
      if not isinstance(row, dict):
        yield RawRow(f"{path}:{i}", None, "not a JSON object")
        continue
      if first:
        _check_columns(f"{path}:{i}", row, kind)
        first = False
      yield RawRow(f"{path}:{i}", row)


def _cot_object_rows(path: str) -> Iterator[RawRow]:
  # One JSON object keyed by id. `datasets`' json builder would silently give one row with
  # a column per id, so it is read directly (the 2.36 GB real file needs ~10 GB of RAM;
  # use the hub's parquet conversion for it).
  with open(path, encoding="utf-8") as f:
    try:
      obj = json.load(f)
    except json.JSONDecodeError as e:
      raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
  if not isinstance(obj, dict):
    raise DataError(f"{path}: expected one JSON object keyed by id, got {type(obj).__name__}")
  for i, (key, row) in enumerate(obj.items()):
    if not isinstance(row, dict):
      yield RawRow(f"{path}:{key}", None, "entry is not an object", own_id=key)
      continue
    if i == 0:
      _check_columns(f"{path}:{key}", row, "cot_collection")
    yield RawRow(f"{path}:{key}", row, own_id=key)


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
    raise DataError(f"source {name!r}: could not load {src.path!r} "
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

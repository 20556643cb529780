"""ArrayRecord shards of tokenized examples: the byte layout and the writer.

One record = little-endian uint32 prompt_len, uint32 n, n int32 tokens, then the
UTF-8 JSON {"id", "source"}. A fixed binary layout (not pickle) so a shard never runs code
when read, and the loader parses it with one np.frombuffer.
"""

from __future__ import annotations

import glob
import json
import os
import struct
from typing import Any, Sequence

import numpy as np
from array_record.python import array_record_module

_HEADER = struct.Struct("<II")


def serialize(tokens: np.ndarray, prompt_len: int, rid: str, source: str) -> bytes:
  """Bytes of one example record."""
  meta = json.dumps({"id": rid, "source": source}).encode()
  return _HEADER.pack(prompt_len, len(tokens)) + np.asarray(tokens, "<i4").tobytes() + meta


def deserialize(data: bytes) -> dict[str, Any]:
  """{"tokens": int32 [n], "prompt_len": int, "id", "source"} of one record."""
  prompt_len, n = _HEADER.unpack_from(data)
  tokens = np.frombuffer(data, "<i4", n, _HEADER.size).astype(np.int32)
  meta = json.loads(data[_HEADER.size + 4 * n:])
  return {"tokens": tokens, "prompt_len": prompt_len, **meta}


def deserialize_tokens(data: bytes) -> tuple[np.ndarray, int]:
  """(tokens, prompt_len) without parsing the JSON tail: the loader's hot path."""
  prompt_len, n = _HEADER.unpack_from(data)
  return np.frombuffer(data, "<i4", n, _HEADER.size), prompt_len


def write_shards(output_dir: str, split: str, records: Sequence[bytes], per_shard: int) -> list[str]:
  """Writes `records` in order into `split-XXXXX-of-YYYYY.array_record` files; returns names."""
  n_shards = max(1, -(-len(records) // per_shard))
  names = []
  for i in range(n_shards):
    name = f"{split}-{i:05d}-of-{n_shards:05d}.array_record"
    writer = array_record_module.ArrayRecordWriter(os.path.join(output_dir, name), "group_size:1")
    for rec in records[i * per_shard:(i + 1) * per_shard]:
      writer.write(rec)
    writer.close()
    names.append(name)
  return names


def shard_paths(output_dir: str, split: str) -> list[str]:
  """The split's shard files, in order."""
  return sorted(glob.glob(os.path.join(output_dir, f"{split}-*-of-*.array_record")))

"""Data config: sources, filters, dedup, mix, order, tokenizer and packing."""

from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass
class SourceConfig:
  """One source dataset: which reader, where it lives, and how many rows to draw."""

  kind: str = "raiden"  # raiden | openo1 | general_inquiry | cot_collection | glaive
  path: str = ""  # hub id, local directory, or local file(s) (glob allowed)
  revision: Optional[str] = None
  data_files: Optional[list[str]] = None
  count: int = 0  # target number of kept rows; 0 = all that pass
  streaming: bool = False
  license: str = ""


@dataclasses.dataclass
class DataConfig:
  """Everything `jax-sft prepare` and the loader need. Extended by the data pipeline."""

  sources: dict[str, SourceConfig] = dataclasses.field(default_factory=dict)
  output_dir: str = "data_cache/default"
  tokenizer: str = ""  # path to a SentencePiece model ("" = the bundled sample tokenizer)
  max_seq_len: int = 1024  # packed row length, and the cap on one example's tokens
  seed: int = 0

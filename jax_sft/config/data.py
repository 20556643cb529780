"""Data config: sources, filters, dedup, mix, order, tokenizer and packing."""

from __future__ import annotations

import dataclasses
from typing import Optional

from jax_sft.config.choices import LongPolicy, Order, SourceKind, TextField


@dataclasses.dataclass
class SourceConfig:
  """One source dataset: which reader, where it lives, and how many rows to draw."""

  kind: SourceKind = SourceKind.raiden
  path: str = ""  # hub id, local directory, or local file(s) (glob allowed)
  revision: Optional[str] = None
  data_files: Optional[list[str]] = None
  count: int = 0  # target number of kept rows; 0 = all that pass
  streaming: bool = False
  license: str = ""
  # Streaming sources only: stop once count * oversample rows pass the row filters
  # (dedup and token limits come after), or after max_scan rows (0 = no limit).
  oversample: float = 1.5
  max_scan: int = 0
  shuffle_buffer: int = 10_000  # the stream is in upload order; 0 = read in order
  # Keep only rows whose question mentions one of these words (case-insensitive); [] = all.
  keywords: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class FilterConfig:
  """Row filters; each one counts what it drops, per source."""

  english: bool = True
  # Language identifier (py3langid, its own model; docs/data.md has the comparison): each of
  # `language_fields` must come out English, with at least this probability (>= 0.5), else
  # `non_english`; it reads a field's first `language_max_chars` characters, and a field with
  # fewer letters than `language_min_letters` (a CoT target "B", a one-line question) is
  # too short to judge and passes.
  min_english_prob: float = 0.5
  language_fields: list[TextField] = dataclasses.field(
      default_factory=lambda: [TextField.question, TextField.answer])
  language_max_chars: int = 250
  language_min_letters: int = 40
  # Script check on every field, trace included (R1 traces drift into Chinese while the
  # question and answer stay English): share of letters in Latin script (`non_latin_trace`).
  min_latin_ratio: float = 0.9
  drop_math: bool = True
  drop_code: bool = True
  degenerate: bool = True
  loop_max_repeats: int = 4  # a sentence seen this many times marks a looping trace
  min_distinct_ratio: float = 0.5  # distinct / all sentences, for traces (and answers) of >= 10 sentences
  # The answer loops too (`degenerate_answer`); higher than the trace's, so a song's chorus passes.
  answer_loop_max_repeats: int = 6
  min_question_chars: int = 8
  min_reasoning_chars: int = 20
  min_answer_chars: int = 1


@dataclasses.dataclass
class DedupConfig:
  """Exact (normalized question) and near-duplicate (MinHash LSH) dedup, across sources."""

  exact: bool = True
  near: bool = True
  threshold: float = 0.8  # estimated Jaccard of question word 3-grams
  num_perm: int = 64


@dataclasses.dataclass
class DataConfig:
  """Everything `jax-sft prepare` and the loader need."""

  sources: dict[str, SourceConfig] = dataclasses.field(default_factory=dict)
  output_dir: str = "data_cache/default"
  tokenizer: str = ""  # SentencePiece model file, Kaggle dir or Keras preset ("" = bundled sample)
  max_seq_len: int = 1024  # packed row length, and the cap on one example's tokens
  max_target_tokens: int = 768  # cap on the model turn (reasoning + answer); 0 = none
  long_policy: LongPolicy = LongPolicy.drop  # truncate: shorten the trace at a sentence end, keep the answer
  system_prompt: str = ""
  filters: FilterConfig = dataclasses.field(default_factory=FilterConfig)
  dedup: DedupConfig = dataclasses.field(default_factory=DedupConfig)
  order: Order = Order.shuffle
  eval_fraction: float = 0.02  # held out by id hash, so stable as the mix grows
  num_workers: int = 2  # tokenizer processes (0 = in this process)
  records_per_shard: int = 10_000
  preview_rows: int = 20
  # Loader.
  packing_bins: int = 512  # open rows for best-fit packing (more = fuller rows, and faster in Grain)
  # Global shuffle in the loader; None = follow `order` (shuffle only `order: shuffle`).
  # True with a curriculum order is a config error: it would undo the curriculum.
  shuffle_loader: Optional[bool] = None

"""Every choice field of the config, as an enum validated once, when the config loads.

They are `StrEnum`s: a member equals its string (`Remat.full == "full"`), prints as it,
and is saved to YAML and JSON as it, so code and checkpoints compare them with plain
strings. OmegaConf checks a value against the member names and names the key otherwise.
"""

from __future__ import annotations

import enum


class SourceKind(enum.StrEnum):
  """Which reader and normalizer a data source needs (its real layout)."""
  raiden = "raiden"
  openo1 = "openo1"
  general_inquiry = "general_inquiry"
  cot_collection = "cot_collection"
  glaive = "glaive"


class TextField(enum.StrEnum):
  """A field of a normalized record, as a filter's input."""
  question = "question"
  reasoning = "reasoning"
  answer = "answer"


class LongPolicy(enum.StrEnum):
  """An example over the length limits: dropped, or its trace shortened at a sentence end."""
  drop = "drop"
  truncate = "truncate"


class Order(enum.StrEnum):
  """The order `prepare` writes the training split in."""
  shuffle = "shuffle"
  curriculum_length = "curriculum_length"
  curriculum_difficulty = "curriculum_difficulty"


class CurriculumEpochs(enum.StrEnum):
  """A curriculum's epochs after the first: easy -> hard again, or a seeded shuffle."""
  restart = "restart"
  then_shuffle = "then_shuffle"


class Remat(enum.StrEnum):
  """Per-layer rematerialization: nothing, the whole layer, or all but the weight matmuls."""
  none = "none"
  full = "full"
  dots = "dots"


class AttentionImpl(enum.StrEnum):
  """The attention core: XLA einsums, the splash Pallas kernel (TPU), or splash on TPU only."""
  xla = "xla"
  splash = "splash"
  auto = "auto"


class GatingLayout(enum.StrEnum):
  """Layout of mlp/gating_einsum in the checkpoint: (2, D, F) in Gemma 1/2, (2, F, D) in Gemma 3."""
  gemma2 = "gemma2"
  gemma3 = "gemma3"


# `global` is a Python keyword, so this one is built with the functional API.
AttentionType = enum.StrEnum("AttentionType", ["local", "global"])
AttentionType.__doc__ = "A layer's attention: local (sliding window) or global."
LOCAL, GLOBAL = AttentionType["local"], AttentionType["global"]


class LoraTarget(enum.StrEnum):
  """Projections LoRA can adapt."""
  query = "query"
  kv = "kv"
  output = "output"
  gate = "gate"
  up = "up"
  down = "down"


class DType(enum.StrEnum):
  """Floating dtypes for weights and compute."""
  float32 = "float32"
  bfloat16 = "bfloat16"
  float16 = "float16"


class Schedule(enum.StrEnum):
  """Learning-rate decay after the warmup."""
  cosine = "cosine"
  linear = "linear"
  constant = "constant"


class Objective(enum.StrEnum):
  """What a training run optimizes: next-token SFT, or the GRPO polish (`jax-sft grpo`)."""
  sft = "sft"
  grpo = "grpo"

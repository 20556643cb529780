"""Gemma architecture configs: named presets for the released models, tiny ones for tests.

Facts and their sources are in the project's REFERENCE notes (google-deepmind/gemma
`gemma/gm/nn/_config.py`, google/tunix `tunix/models/gemma*/model.py`, keras-hub backbones).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from jax_sft.config.choices import (GLOBAL, LOCAL, AttentionImpl, AttentionType, DType,
                                    GatingLayout, LoraTarget, Remat)


@dataclasses.dataclass
class ModelConfig:
  """One Gemma decoder. `preset` names a released model; other fields override it."""

  preset: Optional[str] = None
  # Base weights to start from: any checkpoint format jax_sft reads (Kaggle Flax, Keras
  # preset, HF safetensors, GGUF, a training run). None: seeded random init (tiny configs).
  init_from: Optional[str] = None
  num_layers: int = 2
  embed_dim: int = 64
  num_heads: int = 4
  num_kv_heads: int = 2
  head_dim: int = 16
  mlp_dim: int = 128  # width of each of gate and up
  vocab_size: int = 512
  # One entry per layer, each "local" (sliding window) or "global"; empty means all global.
  attention_types: list[AttentionType] = dataclasses.field(default_factory=list)
  sliding_window: Optional[int] = None
  attn_softcap: Optional[float] = None
  final_softcap: Optional[float] = None
  query_scale: Optional[float] = None  # None: head_dim ** -0.5
  rope_base_local: float = 10_000.0
  rope_base_global: float = 10_000.0
  rope_scale_global: float = 1.0
  qk_norm: bool = False
  post_norms: bool = False  # Gemma 2/3: post-attention and post-ffw RMSNorm
  gating_layout: GatingLayout = GatingLayout.gemma2
  param_dtype: DType = DType.float32
  compute_dtype: DType = DType.float32
  remat: Remat = Remat.none
  # Attention core for training and eval (no KV cache): xla, splash (the Pallas TPU kernel;
  # interpret mode off a TPU), auto = splash when compiling for TPU (model/attention.py).
  attention: AttentionImpl = AttentionImpl.auto
  loss_chunk: int = 0  # positions per loss chunk; 0 = one chunk (full logits)
  # > 0: the loss chunk in tokens per device instead (positions = this / rows per device,
  # at least 1), so a chunk's [rows, positions, V] logits stay the same size at any batch.
  loss_chunk_tokens: int = 0

  def loss_chunk_positions(self, rows_per_device: int) -> int:
    """Positions per loss chunk for a step with `rows_per_device` rows on each device."""
    if self.loss_chunk_tokens <= 0:
      return self.loss_chunk
    return max(1, self.loss_chunk_tokens // max(1, rows_per_device))

  def layer_types(self) -> list[str]:
    """The attention type of every layer, "local" or "global"."""
    if not self.attention_types:
      return [GLOBAL] * self.num_layers
    if len(self.attention_types) != self.num_layers:
      raise ValueError(
          f"model.attention_types has {len(self.attention_types)} entries for"
          f" model.num_layers={self.num_layers}")
    return list(self.attention_types)

  @property
  def scale(self) -> float:
    return self.query_scale if self.query_scale is not None else self.head_dim**-0.5

  # --- presets: released models -------------------------------------------------

  @classmethod
  def gemma1_2b(cls) -> "ModelConfig":
    return cls(preset="gemma1_2b", num_layers=18, embed_dim=2048, num_heads=8,
               num_kv_heads=1, head_dim=256, mlp_dim=16384, vocab_size=256128)

  @classmethod
  def gemma2_2b(cls) -> "ModelConfig":
    return cls(preset="gemma2_2b", num_layers=26, embed_dim=2304, num_heads=8,
               num_kv_heads=4, head_dim=256, mlp_dim=9216, vocab_size=256128,
               attention_types=[LOCAL, GLOBAL] * 13, sliding_window=4096,
               attn_softcap=50.0, final_softcap=30.0, post_norms=True)

  @classmethod
  def gemma3_1b(cls) -> "ModelConfig":
    return cls(preset="gemma3_1b", num_layers=26, embed_dim=1152, num_heads=4,
               num_kv_heads=1, head_dim=256, mlp_dim=6912, vocab_size=262144,
               attention_types=[GLOBAL if i % 6 == 5 else LOCAL for i in range(26)],
               sliding_window=512, rope_base_global=1_000_000.0, qk_norm=True,
               post_norms=True, gating_layout=GatingLayout.gemma3)

  @classmethod
  def gemma3_270m(cls) -> "ModelConfig":
    """Gemma 3 270M (google/gemma-3-270m): query scale 256^-0.5, global at 5, 11, 17."""
    return cls(preset="gemma3_270m", num_layers=18, embed_dim=640, num_heads=4,
               num_kv_heads=1, head_dim=256, mlp_dim=2048, vocab_size=262144,
               attention_types=[GLOBAL if i % 6 == 5 else LOCAL for i in range(18)],
               sliding_window=512, rope_base_global=1_000_000.0, qk_norm=True,
               post_norms=True, gating_layout=GatingLayout.gemma3)

  # --- presets: small models for tests and benchmarks ---------------------------

  @classmethod
  def bench_small(cls) -> "ModelConfig":
    """The peers' benchmark model: Gemma 2 layout, 4 layers, vocab 32000."""
    return cls(preset="bench_small", num_layers=4, embed_dim=512, num_heads=8,
               num_kv_heads=4, head_dim=64, mlp_dim=2048, vocab_size=32000,
               attention_types=[LOCAL, GLOBAL] * 2, sliding_window=4096,
               attn_softcap=50.0, final_softcap=30.0, post_norms=True)

  @classmethod
  def tiny_gemma1(cls) -> "ModelConfig":
    return cls(preset="tiny_gemma1", num_layers=2, embed_dim=64, num_heads=4,
               num_kv_heads=1, head_dim=16, mlp_dim=128, vocab_size=512)

  @classmethod
  def tiny_gemma2(cls) -> "ModelConfig":
    return cls(preset="tiny_gemma2", num_layers=4, embed_dim=64, num_heads=4,
               num_kv_heads=2, head_dim=16, mlp_dim=128, vocab_size=512,
               attention_types=[LOCAL, GLOBAL] * 2, sliding_window=8,
               attn_softcap=50.0, final_softcap=30.0, post_norms=True)

  @classmethod
  def tiny_gemma3(cls) -> "ModelConfig":
    return cls(preset="tiny_gemma3", num_layers=6, embed_dim=64, num_heads=4,
               num_kv_heads=1, head_dim=16, mlp_dim=96, vocab_size=512,
               attention_types=[LOCAL] * 5 + [GLOBAL], sliding_window=8,
               rope_base_global=1_000_000.0, qk_norm=True, post_norms=True,
               gating_layout=GatingLayout.gemma3)


PRESETS = {
    "gemma1_2b": ModelConfig.gemma1_2b,
    "gemma1_2b_it": ModelConfig.gemma1_2b,
    "gemma2_2b": ModelConfig.gemma2_2b,
    "gemma2_2b_it": ModelConfig.gemma2_2b,
    "gemma3_1b": ModelConfig.gemma3_1b,
    "gemma3_1b_it": ModelConfig.gemma3_1b,
    "gemma3_270m": ModelConfig.gemma3_270m,
    "gemma3_270m_it": ModelConfig.gemma3_270m,
    "bench_small": ModelConfig.bench_small,
    "tiny_gemma1": ModelConfig.tiny_gemma1,
    "tiny_gemma2": ModelConfig.tiny_gemma2,
    "tiny_gemma3": ModelConfig.tiny_gemma3,
}


def preset(name: str) -> ModelConfig:
  """The named preset's config; raises naming the known presets."""
  if name not in PRESETS:
    raise ValueError(f"model.preset={name!r} is not one of {sorted(PRESETS)}")
  cfg = PRESETS[name]()
  cfg.preset = name
  return cfg


@dataclasses.dataclass
class LoraConfig:
  """LoRA adapters: enabled, rank, alpha (scale alpha/rank), and which projections."""

  enabled: bool = False
  rank: int = 16
  alpha: float = 32.0
  targets: list[LoraTarget] = dataclasses.field(default_factory=lambda: list(LoraTarget))
  base_dtype: DType = DType.float32  # frozen base weights may be stored in bfloat16

  @property
  def scale(self) -> float:
    return self.alpha / self.rank

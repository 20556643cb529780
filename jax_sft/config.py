"""The run config: typed dataclasses, YAML files that inherit, dotted overrides.

A YAML file may name a parent with `inherit: base.yaml` (relative to itself); keys
merge depth-first, the child winning. `model.preset` fills the model's shape from a
named preset before the file's own model keys apply. Validation is OmegaConf's: an
unknown key or a wrong type raises `ConfigError` naming the full dotted key.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import yaml
from omegaconf import OmegaConf
from omegaconf import errors as oc_errors

from jax_sft.data.config import DataConfig
from jax_sft.eval.config import EvalConfig
from jax_sft.model import config as model_config
from jax_sft.model.config import LoraConfig, ModelConfig
from jax_sft.train.config import CheckpointConfig, MeshConfig, TrainConfig


class ConfigError(ValueError):
  """A config that cannot be used; the message names the file and key."""


@dataclasses.dataclass
class Config:
  """Everything one run needs."""

  run_dir: str = "runs/default"
  seed: int = 0
  data: DataConfig = dataclasses.field(default_factory=DataConfig)
  model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
  lora: LoraConfig = dataclasses.field(default_factory=LoraConfig)
  train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
  mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)
  checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)
  eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)


def _read_yaml(path: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
  """The file's mapping with its `inherit:` chain merged in (parent first)."""
  path = os.path.abspath(path)
  if path in seen:
    raise ConfigError(f"{path}: inherit cycle through {' -> '.join(seen)}")
  if not os.path.exists(path):
    raise ConfigError(f"config file not found: {path}")
  with open(path, encoding="utf-8") as f:
    try:
      raw = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
      raise ConfigError(f"{path}: not valid YAML: {e}") from e
  if not isinstance(raw, dict):
    raise ConfigError(f"{path}: the top level must be a mapping, got {type(raw).__name__}")
  parent = raw.pop("inherit", None)
  if parent is None:
    return raw
  parent_path = os.path.join(os.path.dirname(path), parent)
  return _deep_merge(_read_yaml(parent_path, seen + (path,)), raw)


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
  out = dict(base)
  for k, v in over.items():
    if isinstance(v, dict) and isinstance(out.get(k), dict):
      out[k] = _deep_merge(out[k], v)
    else:
      out[k] = v
  return out


def _dotlist_to_dict(overrides: Sequence[str]) -> dict[str, Any]:
  for o in overrides:
    if "=" not in o:
      raise ConfigError(f"override {o!r} is not of the form key.path=value")
  return OmegaConf.to_container(OmegaConf.from_dotlist(list(overrides)))


def from_dict(raw: dict[str, Any], source: str = "<dict>") -> Config:
  """A validated `Config` from a plain mapping (presets resolved)."""
  raw = dict(raw)
  schema = OmegaConf.structured(Config)
  model_raw = raw.get("model") or {}
  if isinstance(model_raw, dict) and model_raw.get("preset"):
    try:
      base_model = model_config.preset(model_raw["preset"])
    except ValueError as e:
      raise ConfigError(f"{source}: {e}") from e
    schema.model = OmegaConf.structured(base_model)
  try:
    merged = OmegaConf.merge(schema, OmegaConf.create(raw))
    cfg = OmegaConf.to_object(merged)
  except (oc_errors.ConfigKeyError, oc_errors.ValidationError,
          oc_errors.ConfigTypeError, oc_errors.ConfigAttributeError) as e:
    key = getattr(e, "full_key", None)
    msg = str(e).splitlines()[0]
    raise ConfigError(f"{source}: bad config key {key!r}: {msg}") from None
  validate(cfg, source)
  return cfg


def load(path: str, overrides: Sequence[str] = ()) -> Config:
  """Reads `path` (following `inherit:`), applies dotted overrides, validates."""
  raw = _deep_merge(_read_yaml(path), _dotlist_to_dict(overrides))
  return from_dict(raw, source=path)


def validate(cfg: Config, source: str = "<config>") -> None:
  """Cross-field checks that types alone cannot express."""
  def bad(key: str, why: str):
    raise ConfigError(f"{source}: {key}: {why}")

  m = cfg.model
  try:
    m.layer_types()
  except ValueError as e:
    bad("model.attention_types", str(e))
  if m.num_heads % m.num_kv_heads:
    bad("model.num_kv_heads", f"{m.num_kv_heads} does not divide num_heads={m.num_heads}")
  if m.remat not in ("none", "full", "dots"):
    bad("model.remat", f"{m.remat!r} is not one of none, full, dots")
  known = {"query", "kv", "output", "gate", "up", "down"}
  for t in cfg.lora.targets:
    if t not in known:
      bad("lora.targets", f"{t!r} is not one of {sorted(known)}")
  if cfg.lora.rank <= 0:
    bad("lora.rank", "must be positive")
  if cfg.train.schedule not in ("cosine", "linear", "constant"):
    bad("train.schedule", f"{cfg.train.schedule!r} is not one of cosine, linear, constant")
  if cfg.train.grad_accum < 1:
    bad("train.grad_accum", "must be >= 1")


def to_yaml(cfg: Config) -> str:
  """The config as YAML, for run directories and checkpoints."""
  return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def to_dict(cfg: Config) -> dict[str, Any]:
  return dataclasses.asdict(cfg)

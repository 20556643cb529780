"""The run config: typed sections, YAML files composed by Hydra defaults lists, dotted overrides.

A run file lists what it is made of, Hydra style, then what is its own:

    defaults: [base, model: gemma2_2b, mode: lora, session: s1, seq: "2048", _self_]
    run_dir: runs/gemma2_2b_lora_s1_2048

Groups (`model/`, `mode/`, ...) are folders beside the file. Hydra composes the files;
`model.preset` then fills the model's shape from a named preset before the file's own
model keys apply, and OmegaConf validates the result against the dataclasses: an unknown
key, a wrong type or a value outside a choice raises `ConfigError` naming the dotted key.
Overrides `key.path=value` apply last; `group=option` (e.g. `model=gemma3_1b`) swaps a
defaults-list entry.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf import errors as oc_errors

from jax_sft.config import model as model_config
from jax_sft.config.data import DataConfig
from jax_sft.config.eval import EvalConfig
from jax_sft.config.grpo import GrpoConfig
from jax_sft.config.model import LoraConfig, ModelConfig
from jax_sft.config.train import CheckpointConfig, MeshConfig, TrainConfig


class ConfigError(ValueError):
  """A config that cannot be used; the message names the file and key."""


@dataclasses.dataclass
class Config:
  """Everything one run needs."""

  run_dir: str = "runs/default"
  seed: int = 0  # the one seed: data mix and split, loader shuffle, init, adapters
  data: DataConfig = dataclasses.field(default_factory=DataConfig)
  model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
  lora: LoraConfig = dataclasses.field(default_factory=LoraConfig)
  train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
  mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)
  checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)
  eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
  grpo: GrpoConfig = dataclasses.field(default_factory=GrpoConfig)


def _read_yaml(path: str) -> dict[str, Any]:
  if not os.path.isfile(path):
    raise ConfigError(f"config file not found: {path}")
  with open(path, encoding="utf-8") as f:
    try:
      raw = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
      first = str(e).splitlines()[0] if str(e) else type(e).__name__
      raise ConfigError(f"{path}: not valid YAML: {first}") from None
  if not isinstance(raw, dict):
    raise ConfigError(f"{path}: the top level must be a mapping, got {type(raw).__name__}")
  if "inherit" in raw:
    raise ConfigError(f"{path}: `inherit:` was replaced by a Hydra defaults list"
                      " (`defaults: [base, ..., _self_]`, see configs/README.md)")
  return raw


def _compose(path: str, group_overrides: Sequence[str]) -> dict[str, Any]:
  """The file's mapping, with its defaults list composed by Hydra when it has one."""
  path = os.path.abspath(path)
  raw = _read_yaml(path)
  if "defaults" not in raw:
    if group_overrides:
      raise ConfigError(f"{path}: has no defaults list to apply {list(group_overrides)} to")
    return raw
  GlobalHydra.instance().clear()
  try:
    with initialize_config_dir(config_dir=os.path.dirname(path), version_base=None):
      composed = compose(config_name=os.path.splitext(os.path.basename(path))[0],
                         overrides=list(group_overrides))
  except (HydraException, ValueError) as e:
    raise ConfigError(f"{path}: {str(e).splitlines()[0]}") from None
  finally:
    GlobalHydra.instance().clear()
  return OmegaConf.to_container(composed, resolve=True)


def _split_overrides(path: str, overrides: Sequence[str]) -> tuple[list[str], list[str]]:
  """(Hydra group choices such as `model=gemma3_1b`, dotted key overrides)."""
  for o in overrides:
    if "=" not in o or not o.split("=", 1)[0]:
      raise ConfigError(f"override {o!r} is not of the form key.path=value")
  folder = os.path.dirname(os.path.abspath(path))
  groups, keys = [], []
  for o in overrides:
    key = o.split("=", 1)[0]
    if "." not in key and os.path.isdir(os.path.join(folder, key)):
      groups.append(f"{key}='{o.split('=', 1)[1]}'")  # quoted: option `1024` is a name, not a number
    else:
      keys.append(o)
  return groups, keys


def _dotlist(overrides: Sequence[str]) -> dict[str, Any]:
  try:
    return OmegaConf.to_container(OmegaConf.from_dotlist(list(overrides)))
  except oc_errors.OmegaConfBaseException as e:
    raise ConfigError(f"bad override in {list(overrides)}: {str(e).splitlines()[0]}") from None


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
  out = dict(base)
  for k, v in over.items():
    out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
  return out


def from_dict(raw: dict[str, Any], source: str = "<dict>") -> Config:
  """A validated `Config` from a plain mapping (presets resolved)."""
  raw = {k: v for k, v in raw.items() if k != "defaults"}
  schema = OmegaConf.structured(Config)
  model_raw = raw.get("model") or {}
  if isinstance(model_raw, dict) and model_raw.get("preset"):
    try:
      schema.model = OmegaConf.structured(model_config.preset(model_raw["preset"]))
    except ValueError as e:
      raise ConfigError(f"{source}: {e}") from None
  try:
    cfg = OmegaConf.to_object(OmegaConf.merge(schema, OmegaConf.create(raw)))
  except oc_errors.OmegaConfBaseException as e:
    key = getattr(e, "full_key", None)
    msg = str(e).splitlines()[0]
    raise ConfigError(f"{source}: bad config key {key!r}: {msg}") from None
  validate(cfg, source)
  return cfg


def load(path: str, overrides: Sequence[str] = ()) -> Config:
  """Composes `path`, applies the overrides, validates; ConfigError names what is wrong."""
  groups, keys = _split_overrides(path, overrides)
  raw = _merge(_compose(path, groups), _dotlist(keys))
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
  for key in ("loss_chunk", "loss_chunk_tokens"):
    if getattr(m, key) < 0:
      bad(f"model.{key}", f"{getattr(m, key)} is negative (0 = not set)")
  if cfg.lora.rank <= 0:
    bad("lora.rank", "must be positive")
  if not cfg.lora.targets:
    bad("lora.targets", "is empty: name at least one projection")
  if cfg.train.grad_accum < 1:
    bad("train.grad_accum", "must be >= 1")
  if cfg.data.tokenizer is None:
    bad("data.tokenizer", "is empty; leave it out for the bundled sample tokenizer")
  if not 0 <= cfg.data.eval_fraction < 1:
    bad("data.eval_fraction", f"{cfg.data.eval_fraction} is not in [0, 1)")
  # A curriculum and a global shuffle cannot both hold: name every key that asks for each.
  shufflers = [k for k, v in (("train.shuffle", cfg.train.shuffle),
                              ("data.shuffle_loader", cfg.data.shuffle_loader)) if v]
  if cfg.data.order != "shuffle" and shufflers:
    asked = " and ".join(f"{k}: true" for k in shufflers)
    bad(f"data.order and {' and '.join(shufflers)}",
        f"a curriculum (data.order: {cfg.data.order}) cannot be shuffled globally ({asked});"
        " leave the shuffle keys out (they follow data.order) or set data.order: shuffle")


def to_yaml(cfg: Config) -> str:
  """The config as YAML, for run directories and checkpoints."""
  return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def to_dict(cfg: Config) -> dict[str, Any]:
  """The config as plain JSON-able data (choices as their strings)."""
  return OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True)

"""The typed run config, the bottom layer every other package reads.

Sections: data, model (with presets) and lora, train, mesh, checkpoint, eval; choice fields
are enums (choices.py); `load` composes YAML files with Hydra defaults lists (run.py).
"""

from jax_sft.config.choices import (GLOBAL, LOCAL, AttentionType, DType, GatingLayout,
                                    LongPolicy, LoraTarget, Objective, Order, Remat, Schedule,
                                    SourceKind)
from jax_sft.config.data import DataConfig, DedupConfig, FilterConfig, SourceConfig
from jax_sft.config.eval import EvalConfig
from jax_sft.config.grpo import GrpoConfig, RewardWeights
from jax_sft.config.model import PRESETS, LoraConfig, ModelConfig, preset
from jax_sft.config.run import (Config, ConfigError, from_dict, load, to_dict, to_yaml,
                                validate)
from jax_sft.config.train import CheckpointConfig, MeshConfig, TrainConfig

__all__ = [
    "GLOBAL", "LOCAL", "PRESETS", "AttentionType", "CheckpointConfig", "Config", "ConfigError",
    "DType", "DataConfig", "DedupConfig", "EvalConfig", "FilterConfig", "GatingLayout", "GrpoConfig",
    "LongPolicy", "LoraConfig", "LoraTarget", "MeshConfig", "ModelConfig", "Objective", "Order", "Remat",
    "RewardWeights", "Schedule", "SourceConfig", "SourceKind", "TrainConfig", "from_dict", "load",
    "preset",
    "to_dict", "to_yaml", "validate",
]

from .load import ConfigError, dump_config, load_config
from .schema import (
    ClusterConfig,
    Config,
    DataConfig,
    FieldMap,
    LearnerConfig,
    ModelConfig,
    PPOConfig,
    ResourceSpec,
    RewardActorsConfig,
    RMConfig,
    RolloutConfig,
    RunConfig,
)

__all__ = [
    "ClusterConfig", "Config", "ConfigError", "ResourceSpec", "RewardActorsConfig", "RolloutConfig", "DataConfig", "FieldMap", "LearnerConfig", "ModelConfig", "PPOConfig", "RMConfig", "RunConfig",
    "dump_config", "load_config",
]

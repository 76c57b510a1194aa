from .load import ConfigError, dump_config, load_config
from .schema import (
    ClusterConfig,
    Config,
    ContrastiveSection,
    DataConfig,
    EvalConfig,
    FaultConfig,
    FieldMap,
    LearnerConfig,
    MetaRMConfig,
    ModelConfig,
    PPOConfig,
    ResourceSpec,
    RewardActorsConfig,
    RMConfig,
    RolloutConfig,
    RunConfig,
    SeamConfig,
    SFTConfig,
    StrengthConfig,
)

__all__ = [
    "ClusterConfig", "Config", "ConfigError", "FaultConfig", "ContrastiveSection", "StrengthConfig", "ResourceSpec", "RewardActorsConfig", "RolloutConfig", "DataConfig", "EvalConfig", "FieldMap", "LearnerConfig", "MetaRMConfig", "ModelConfig", "PPOConfig", "RMConfig", "RunConfig", "SFTConfig",
    "SeamConfig",
    "dump_config", "load_config",
]

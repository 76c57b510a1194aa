from .load import ConfigError, dump_config, load_config
from .schema import Config, DataConfig, FieldMap, ModelConfig, PPOConfig, RMConfig, RunConfig

__all__ = [
    "Config", "ConfigError", "DataConfig", "FieldMap", "ModelConfig", "PPOConfig", "RMConfig", "RunConfig",
    "dump_config", "load_config",
]

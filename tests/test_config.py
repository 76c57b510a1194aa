from pathlib import Path

import pytest
from pydantic import BaseModel

from rlhf_ray.config import Config, ConfigError, load_config

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_validate(path):
    assert isinstance(load_config(path), Config)


def test_unknown_key_names_key_file_and_suggests(tmp_path):
    path = write(tmp_path, "ppo:\n  kl_coeff: 0.1\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert str(path) in msg and "ppo.kl_coeff" in msg and "kl_coef" in msg


def test_unknown_section_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="'trainer'"):
        load_config(write(tmp_path, "trainer:\n  lr: 1\n"))


def test_wrong_type_names_key(tmp_path):
    with pytest.raises(ConfigError, match=r"'rm\.lr'.*number"):
        load_config(write(tmp_path, "rm:\n  lr: fast\n"))


def test_missing_file_is_named():
    with pytest.raises(ConfigError, match="nope.yaml.*not found"):
        load_config("nope.yaml")


def test_top_level_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_overrides_apply_and_are_validated(tmp_path):
    cfg = load_config(write(tmp_path, "ppo:\n  kl_coef: 0.1\n"), ["ppo.kl_coef=0.05", "data.paths=[a.jsonl]"])
    assert cfg.ppo.kl_coef == 0.05 and cfg.data.paths == ["a.jsonl"]
    with pytest.raises(ConfigError, match=r"ppo\.kl_cof.*command-line override"):
        load_config(None, ["ppo.kl_cof=1"])
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, ["ppo.kl_coef"])
    with pytest.raises(ConfigError, match="is a value, not a section"):
        load_config(write(tmp_path, "ppo:\n  kl_coef: 0.1\n"), ["ppo.kl_coef.x=1"])


def test_cross_field_checks():
    with pytest.raises(ConfigError, match="multiple of rm.micro_batch_size"):
        load_config(None, ["rm.batch_size=10", "rm.micro_batch_size=4"])


def test_paper_defaults():
    cfg = Config()
    assert (cfg.ppo.gamma, cfg.ppo.lam, cfg.ppo.clip, cfg.ppo.value_clip, cfg.ppo.kl_coef) == (1.0, 0.95, 0.2, 0.2, 0.01)
    assert (cfg.rm.lr, cfg.rm.batch_size, cfg.rm.adam_betas, cfg.rm.adam_eps) == (5e-6, 32, (0.9, 0.95), 1e-6)
    assert cfg.ppo.reward_norm == "scale"


def _fields(model: type[BaseModel], prefix=""):
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            yield from _fields(field.annotation, f"{prefix}{name}.")
        else:
            yield prefix + name, field


def test_every_option_is_documented():
    undocumented = [name for name, field in _fields(Config) if not field.description]
    assert not undocumented


def test_every_registry_choice_in_the_config_is_registered_and_the_reverse():
    from typing import get_args

    from rlhf_ray.algorithms import ADVANTAGE_ESTIMATORS, KL_ESTIMATORS, POLICY_LOSSES
    from rlhf_ray.config.schema import PPOConfig

    for field, registry in (("advantage_estimator", ADVANTAGE_ESTIMATORS), ("policy_loss", POLICY_LOSSES),
                            ("kl_estimator", KL_ESTIMATORS)):
        assert set(get_args(PPOConfig.model_fields[field].annotation)) == set(registry), field

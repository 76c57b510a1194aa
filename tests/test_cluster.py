import pytest

from launch.cluster import init_ray, probe_address
from rlhf_ray.config import ClusterConfig


def test_wrong_cluster_address_is_named(monkeypatch):
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # a session's local Ray may be up already
    with pytest.raises(ConnectionError, match="127.0.0.1:1"):
        init_ray(ClusterConfig(address="127.0.0.1:1"))


def test_malformed_address_is_named():
    with pytest.raises(ConnectionError, match="not HOST:PORT"):
        probe_address("headnode")


def test_init_ray_hands_the_environment_defaults_to_every_worker(monkeypatch):
    """Through the job's runtime environment, so that workers on other nodes get them too."""
    import ray

    from rlhf_ray.environment import DEFAULTS

    seen = {}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: seen.update(kw))
    monkeypatch.setattr(ray, "cluster_resources", lambda: {})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    init_ray(ClusterConfig(num_cpus=1))
    assert seen["runtime_env"]["env_vars"].keys() == DEFAULTS.keys()
    assert seen["runtime_env"]["env_vars"]["HF_HUB_OFFLINE"] == "1"

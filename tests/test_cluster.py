import pytest

from launch.cluster import init_ray, probe_address
from rlhf_ray.config import ClusterConfig


def test_wrong_cluster_address_is_named():

    with pytest.raises(ConnectionError, match="127.0.0.1:1"):
        init_ray(ClusterConfig(address="127.0.0.1:1"))


def test_malformed_address_is_named():
    with pytest.raises(ConnectionError, match="not HOST:PORT"):
        probe_address("headnode")

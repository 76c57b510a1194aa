"""Start or join a Ray cluster, with errors that say what went wrong."""

import logging
import socket

import ray

from actors.group import ActorGroup
from rlhf_ray.config import ClusterConfig
from rlhf_ray.device import Precision
from rlhf_ray.environment import apply_defaults, worker_env

log = logging.getLogger("rlhf_ray.cluster")


def init_ray(cfg: ClusterConfig) -> None:
    """Local Ray when cfg.address is None (token auth off, no dashboard), else connect to cfg.address."""
    if ray.is_initialized():
        return
    apply_defaults()
    runtime_env = {"env_vars": worker_env()}  # every worker of the job, on every node
    if cfg.address is None:
        ray.init(num_cpus=cfg.num_cpus, include_dashboard=False, log_to_driver=True, runtime_env=runtime_env)
        log.info("started a local Ray: %s", ray.cluster_resources())
        return
    probe_address(cfg.address)
    try:
        ray.init(address=cfg.address, log_to_driver=True, runtime_env=runtime_env)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ConnectionError(
            f"cannot reach the Ray cluster at cluster.address={cfg.address!r} ({e}); "
            "check the address (ray://HOST:10001 for a client, or 'auto' on a cluster node) and that the head is up"
        ) from e
    log.info("joined Ray at %s: %s", cfg.address, ray.cluster_resources())


def probe_address(address: str, timeout_s: float = 10.0) -> None:
    """Fail in seconds on a wrong host:port (ray.init itself retries for minutes)."""
    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConnectionError(f"cluster.address={address!r} is not HOST:PORT, ray://HOST:PORT or 'auto'")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise ConnectionError(
            f"cannot reach the Ray cluster at cluster.address={address!r} ({e}); check the address "
            "(ray://HOST:10001 for a client, HOST:6379 on a cluster node, or 'auto') and that the head is up"
        ) from e


def report_node_precision(here: Precision, *groups: ActorGroup) -> None:
    """Log the actors whose node resolved the precision differently from this one (a cluster of mixed hardware)."""
    seen = set()
    for group in groups:
        for rank, p in enumerate(group.run("node_precision")):
            key = (group.name, p["node"], p["reason"])
            if p["mode"] is None or (p["mode"], p["emulated"]) == (here.mode, here.emulated) or key in seen:
                continue
            seen.add(key)
            (log.warning if p["emulated"] else log.info)("%s rank %d on node %s: %s", group.name, rank, p["node"], p["reason"])

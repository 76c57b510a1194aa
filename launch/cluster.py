"""Start or join a Ray cluster, with errors that say what went wrong."""

import logging
import os
import socket
import uuid
from pathlib import Path

import ray

from actors.group import ActorGroup
from rlhf_ray.config import ClusterConfig
from rlhf_ray.device import Precision
from rlhf_ray.environment import apply_defaults, worker_env

log = logging.getLogger("rlhf_ray.cluster")


def init_ray(cfg: ClusterConfig, run_dir: Path | None = None) -> None:
    """Local Ray when cfg.address is None (token auth off, no dashboard), else connect to cfg.address and check that
    every node sees `run_dir` (checkpoints, metrics and models written by one node are read by others)."""
    if ray.is_initialized():
        return
    apply_defaults()
    # Every worker of the job, on every node; a submitted job's runtime env carries them already (launch.submit),
    # and Ray refuses a driver that sets the same keys again.
    runtime_env = None if os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR") else {"env_vars": worker_env()}
    if cfg.address is None:
        # "local": a new Ray even where `ray start` left a cluster's address behind (ray.init() would join that one).
        ray.init(address="local", num_cpus=cfg.num_cpus, include_dashboard=False, log_to_driver=True,
                 runtime_env=runtime_env)
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
    if run_dir is not None:
        check_shared_run_dir(Path(run_dir))


class RunDirNotShared(FileNotFoundError):
    """The run folder is missing on some node of the cluster."""


@ray.remote(num_cpus=0)
def _see_marker(marker: str, token: str, node_id: str) -> str | None:
    """On one node: None if it reads the driver's marker and writes its own beside it, else what went wrong."""
    path = Path(marker)
    try:
        if path.read_text() != token:
            return "another file is at that path (a different filesystem mounted there?)"
        (path.parent / f"node-{node_id}").write_text(token)
    except OSError as e:
        return f"{type(e).__name__}: {e.strerror or e}"
    return None


def check_shared_run_dir(run_dir: Path, timeout_s: float = 120.0) -> list[str]:
    """Every alive node must see the run folder as this driver does: the driver writes a marker there, a task pinned
    to each node reads it and writes one back, which the driver must see. Fails naming the folder and each node
    that cannot; returns the node ids checked."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe_dir = Path(run_dir).resolve() / ".node_check" / uuid.uuid4().hex[:8]
    probe_dir.mkdir(parents=True)
    token = uuid.uuid4().hex
    marker = probe_dir / "driver"
    marker.write_text(token)
    nodes = [n for n in ray.nodes() if n["Alive"]]
    refs = [_see_marker.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
            .remote(str(marker), token, n["NodeID"]) for n in nodes]
    try:
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
        seen = [ray.get(r) if r in ready else f"no answer within {timeout_s:.0f} s" for r in refs]
        seen = [why or (None if (probe_dir / f"node-{n['NodeID']}").exists() else
                        "its marker, written there, does not show up on this driver's node")
                for n, why in zip(nodes, seen)]
    finally:
        for f in probe_dir.iterdir():
            f.unlink()
        probe_dir.rmdir()
    blind = [f"node {n['NodeManagerAddress']} ({n['NodeID'][:12]}): {why}" for n, why in zip(nodes, seen) if why]
    if blind:
        raise RunDirNotShared(
            f"run folder {run_dir} is not on storage every node shares; it was written on this driver's node "
            f"({ray.util.get_node_ip_address()}) but " + "; ".join(blind) + ". Set run.output_dir to a folder every "
            "node mounts at the same path (NFS, a shared volume)")
    log.info("run folder %s is visible from all %d nodes", run_dir, len(nodes))
    return [n["NodeID"] for n in nodes]


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

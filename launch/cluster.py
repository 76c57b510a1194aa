"""Start or join a Ray cluster, with errors that say what went wrong."""

import logging
import os
import socket
import uuid
from pathlib import Path

import ray
from ray.exceptions import AuthenticationError

from actors.group import ActorGroup
from rlhf_ray.config import ClusterConfig
from rlhf_ray.device import Precision
from rlhf_ray.environment import apply_defaults, worker_env

log = logging.getLogger("rlhf_ray.cluster")


LOOPBACK = "127.0.0.1"


def use_loopback() -> None:
    """This process and every Ray process it starts resolve this node to 127.0.0.1, so that a local Ray's servers
    (GCS, raylet, workers) and the learner group's rendezvous listen on loopback only. Ray reads the switch when it
    is first imported, hence the patch of its constant beside the variable its child processes read."""
    import ray._private.ray_constants as ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def auth_mode() -> str:
    """RAY_AUTH_MODE as this process's Ray will use it. Ray caches it at import; Config.initialize re-reads it, as
    Ray's own ray._private.authentication.authentication_token_setup does after setting it."""
    from ray._raylet import Config

    Config.initialize("")
    return os.environ.get("RAY_AUTH_MODE", "disabled")


def start_local_ray(num_cpus: int, log_to_driver: bool = True, runtime_env: dict | None = None) -> None:
    """A new local Ray on loopback with token authentication (unless RAY_AUTH_MODE says otherwise): Ray writes a
    token to ~/.ray/auth_token when none exists; it is never logged or copied into a run folder."""
    use_loopback()
    os.environ.setdefault("RAY_AUTH_MODE", "token")  # as apply_defaults: a caller that did not apply them
    mode = auth_mode()
    # "local": a new Ray even where `ray start` left a cluster's address behind (ray.init() would join that one).
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=log_to_driver,
             runtime_env=runtime_env, _node_ip_address=LOOPBACK)
    where = ray.get_runtime_context().gcs_address
    if mode == "token":
        log.info("started a local Ray listening on %s (GCS %s), token authentication on", LOOPBACK, where)
    else:
        log.warning("started a local Ray listening on %s (GCS %s) WITHOUT token authentication (RAY_AUTH_MODE=%s): "
                    "any local user can run code in it", LOOPBACK, where, mode)


def init_ray(cfg: ClusterConfig, run_dir: Path | None = None) -> None:
    """Local Ray when cfg.address is None (loopback, token auth, no dashboard), else connect to cfg.address and check
    that every node sees `run_dir` (checkpoints, metrics and models written by one node are read by others)."""
    if ray.is_initialized():
        return
    apply_defaults()
    # Every worker of the job, on every node; a submitted job's runtime env carries them already (launch.submit),
    # and Ray refuses a driver that sets the same keys again.
    runtime_env = None if os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR") else {"env_vars": worker_env()}
    if cfg.address is None:
        start_local_ray(cfg.num_cpus, runtime_env=runtime_env)
        log.info("local Ray resources: %s", ray.cluster_resources())
        return
    probe_address(cfg.address)
    auth = auth_mode()
    try:
        ray.init(address=cfg.address, log_to_driver=True, runtime_env=runtime_env)
    except (ConnectionError, RuntimeError, ValueError) as e:
        if refused_token(e):
            raise ConnectionError(
                f"the Ray cluster at cluster.address={cfg.address!r} refused this job: no token or the wrong one "
                f"(RAY_AUTH_MODE={auth}). Give it the cluster's token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or "
                "~/.ray/auth_token here), or set RAY_AUTH_MODE=disabled for a cluster started without token "
                "authentication") from e
        raise ConnectionError(
            f"cannot reach the Ray cluster at cluster.address={cfg.address!r} ({e}); "
            "check the address (ray://HOST:10001 for a client, or 'auto' on a cluster node) and that the head is up"
        ) from e
    log.info("joined Ray at %s: %s", cfg.address, ray.cluster_resources())
    if run_dir is not None:
        check_shared_run_dir(Path(run_dir))


def refused_token(e: BaseException | None) -> bool:
    """Whether Ray's token authentication stopped the connection somewhere down e's chain (ray.init wraps it): the
    cluster refused the token, or token mode is on and this machine has none."""
    while e is not None:
        if isinstance(e, AuthenticationError) or "authentication token" in str(e).lower():
            return True
        e = e.__cause__ or e.__context__
    return False


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

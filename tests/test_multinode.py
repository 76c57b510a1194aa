"""A Ray cluster of 3 nodes on this machine, every node on 127.0.0.1: jobs go in through `rlhf-ray submit`, and their
actors must sit on the nodes their roles' custom resources ask for. Node b runs in a mount namespace of its own with
an empty tmpfs over `hidden/`, so a run folder there is one node b really cannot see.

Nodes start through loopback_node.py rather than `ray start`, which would advertise the machine's routable address.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from ray.util.state.exception import ServerUnavailable
from test_rm_strength import noisy_pairs

from launch.submit import client, submit, wait
from rlhf_ray.metrics import read_metrics

CONFIG = "configs/tiny_rm.yaml"
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_start(log: Path, env: dict, wrap: list[str] = (), **spec) -> subprocess.Popen:
    """One node (loopback_node.py) in its own session, so the whole node (raylet, workers) dies with its group."""
    spec = {"object_store_memory": 400_000_000, "dashboard_agent_listen_port": free_port(), **spec}
    out = open(log, "w")
    return subprocess.Popen([*wrap, sys.executable, str(Path(__file__).with_name("loopback_node.py")), json.dumps(spec)],
                            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def nodes_by_resource(url: str) -> dict[str, str]:
    """{custom resource name: node id} of the alive nodes."""
    from ray.util.state import list_nodes

    return {key: n.node_id for n in list_nodes(address=url, filters=[("state", "=", "ALIVE")], detail=True)
            for key in n.resources_total if key.startswith("node_")}


def up(url: str, nodes: int) -> bool:
    """The head answers on its Jobs API and the state API lists `nodes` alive nodes."""
    try:
        client(url)
        return len(nodes_by_resource(url)) == nodes
    except (ConnectionError, ServerUnavailable):  # the state API comes up after the Jobs API
        return False


def start_node(procs: list, url: str, tries: int = 3, timeout_s: float = 180, **kw) -> None:
    """Start one more node and wait until the cluster has it. On 2 loaded cores a node can miss Ray's fixed 30 s
    start-up window (its dashboard agent starting slowly, cold caches): such a start exits, and is tried again."""
    for _ in range(tries):
        proc = ray_start(**kw)
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None and time.monotonic() < deadline:
            if up(url, len(procs) + 1):
                procs.append(proc)
                return
            time.sleep(2)
        stop(proc)
    raise RuntimeError(f"a node did not come up in {tries} tries: {kw['log'].read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    """The node's whole process group: loopback_node.py and everything it started."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, ray_local):
    """Three loopback nodes with Ray's token authentication, sharing the token that the session's local Ray
    (ray_local) made in ~/.ray/auth_token: job submission and the jobs' drivers must present it. Yields (dashboard
    URL, a tmp folder, {node_x: node id}, the node processes in start order, add_node(name, **spec))."""
    root = tmp_path_factory.mktemp("cluster")
    (root / "hidden").mkdir()
    temp = Path(f"/tmp/rlhf_mn_{os.getpid()}")  # short: Ray's socket paths live under it
    port, dash = free_port(), free_port()
    url = f"http://127.0.0.1:{dash}"
    # The jobs' entrypoint `python` must be this venv's: a shim for it alone joins PATH, not the venv's other tools.
    shim = root / "bin"
    shim.mkdir()
    (shim / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')  # a link would lose the venv
    (shim / "python").chmod(0o755)
    # Not this process's RAY_ADDRESS (the session's local Ray may have left one): a head inherits it and hands it to
    # every job driver, which would then join that other Ray instead of this cluster.
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env |= {"PATH": f"{shim}:{os.environ['PATH']}", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token"}
    hide = f"mount -t tmpfs tmpfs {root / 'hidden'} && exec \"$@\""
    procs: list[subprocess.Popen] = []
    try:
        start_node(procs, url, head=True, gcs_server_port=port, include_dashboard=True, dashboard_host="127.0.0.1",
                   dashboard_port=dash, ray_client_server_port=free_port(), num_cpus=2, resources={"node_head": 4},
                   temp_dir=str(temp), log=root / "head.log", env=env)
        gcs = f"127.0.0.1:{port}"
        # rollout_slot: where the node-loss test's RolloutActor may live (node a, then a node that joins).
        start_node(procs, url, gcs_address=gcs, num_cpus=2, resources={"node_a": 4, "rollout_slot": 1},
                   log=root / "a.log", env=env)
        start_node(procs, url, gcs_address=gcs, num_cpus=3, resources={"node_b": 4}, log=root / "b.log", env=env,
                   wrap=["unshare", "-m", "sh", "-c", hide, "sh"])

        def add_node(name: str, **spec):  # one more worker node, e.g. after a node was lost
            start_node(procs, url, gcs_address=gcs, log=root / f"{name}.log", env=env, **spec)

        yield url, root, nodes_by_resource(url), procs, add_node
    finally:
        for proc in procs[::-1]:
            stop(proc)
        shutil.rmtree(temp, ignore_errors=True)  # the nodes' sessions and logs (the failure output has the logs)


def test_every_node_is_on_loopback(cluster):
    """Ray's view, and the sockets themselves: every port any node's process listens on is bound to loopback."""
    import psutil
    from ray.util.state import list_nodes

    url, _, _, procs, _ = cluster
    assert {n.node_ip for n in list_nodes(address=url)} == {"127.0.0.1"}
    node_procs = [q for p in procs for q in [psutil.Process(p.pid), *psutil.Process(p.pid).children(recursive=True)]]
    listening = {c.laddr.ip for q in node_procs for c in q.net_connections("inet") if c.status == psutil.CONN_LISTEN}
    assert len(node_procs) > 10 and listening and listening <= {"127.0.0.1", "::ffff:127.0.0.1"}, listening



def test_the_jobs_api_refuses_a_request_without_the_token(cluster):
    """Job submission runs code on the cluster: the dashboard answers only requests that carry Ray's token (the
    other tests submit theirs through JobSubmissionClient, which sends it)."""
    url = cluster[0]
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{url}/api/jobs/", timeout=30)
    assert refused.value.code in (401, 403), refused.value


def actor_nodes(url: str, class_name: str, job_id: str) -> list[str]:
    from ray.util.state import list_actors

    return [a.node_id for a in list_actors(address=url, filters=[("class_name", "=", class_name)], detail=True,
                                           limit=1000) if a.job_id == job_id]


def run_job(url: str, job: str, overrides: list[str], timeout_s: float = 600) -> tuple[str, str, str]:
    """Submit from the project folder (as a user would), wait; returns (status, logs, Ray job id)."""
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        sid, _ = submit(url, job, CONFIG, overrides)
    finally:
        os.chdir(cwd)
    status = wait(url, sid, timeout_s)
    return status, client(url).get_job_logs(sid), client(url).get_job_info(sid).job_id


def test_ppo_job_places_each_role_on_its_node(cluster, tiny_model_dir, tiny_rm_dir):
    """HF's rollout engine: placement and cross-node sync are under test here, vLLM in the engine and sync tests."""
    url, root, nodes, *_ = cluster
    runs = root / "shared" / "runs"
    status, logs, job_id = run_job(url, "train", [
        f"model.policy={tiny_model_dir}", f"model.reward={tiny_rm_dir}", f"run.output_dir={runs}", "run.name=ppo",
        "data.source=hh_rlhf", "data.max_pairs=32", "ppo.iterations=2", "ppo.prompts_per_iteration=4",
        "rollout.engine=hf", "rollout.num_actors=1", "rollout.max_model_len=160", "rollout.max_new_tokens=16", "rollout.n_samples=2",
        "rollout.kv_cache_gib=0.5", "rollout.resources.custom={node_a: 1}",
        "reward.resources.num_cpus=0.5", "reward.resources.custom={node_head: 1}",
        "learner.world_size=2", "learner.zero_stage=2", "learner.micro_batch_size=4",
        "learner.resources.placement=STRICT_PACK", "learner.resources.custom={node_b: 1}",
        "sync.transport=collective",
    ])
    assert status == "SUCCEEDED", logs[-4000:]
    assert "visible from all 3 nodes" in logs
    assert set(actor_nodes(url, "RolloutActor", job_id)) == {nodes["node_a"]}
    assert set(actor_nodes(url, "RewardActor", job_id)) == {nodes["node_head"]}
    learners = actor_nodes(url, "LearnerActor", job_id)
    assert len(learners) == 2 and set(learners) == {nodes["node_b"]}
    rows = read_metrics(runs / "ppo" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    assert (runs / "ppo" / "checkpoints" / "iter_000002" / "policy" / "config.json").exists()
    assert len((runs / "ppo" / "samples.jsonl").read_text().splitlines()) == 2 * 4 * 2


@pytest.mark.long  # ~1 min; the PPO job above checks that every role's learners land on the node asked for
def test_strength_job_trains_its_members_on_the_asked_node(cluster, tiny_model_dir):
    url, root, nodes, *_ = cluster
    data = root / "shared" / "pairs.jsonl"
    data.parent.mkdir(exist_ok=True)
    noisy_pairs(data, n=96)
    runs = root / "shared" / "runs"
    status, logs, job_id = run_job(url, "rm strength", [
        f"model.policy={tiny_model_dir}", "model.max_len=64", "model.max_response_len=32", "data.source=jsonl",
        f"data.paths=[{data}]", "data.fields.prompt=question", "data.fields.chosen=good", "data.fields.rejected=bad",
        "data.eval_fraction=0.2", "rm.batch_size=8", "rm.micro_batch_size=8", "rm.max_steps=4", "rm.eval_every=100",
        f"run.output_dir={runs}", "run.name=strength", "strength.members=2", "strength.std_groups=4",
        "strength.retrain_groups=0", "learner.resources.threads=1", "learner.resources.custom={node_a: 1}",
    ])
    assert status == "SUCCEEDED", logs[-4000:]
    assert set(actor_nodes(url, "RMLearnerActor", job_id)) == {nodes["node_a"]}
    rows = [json.loads(line) for line in (runs / "strength" / "strength.jsonl").open()]
    assert len(rows) == 96 and all(len(r["chosen_scores"]) == 2 for r in rows)
    assert (runs / "strength" / "strength_plot.png").exists()


def test_a_run_folder_one_node_cannot_see_fails_at_start(cluster, tiny_model_dir):
    url, root, nodes, *_ = cluster
    runs = root / "hidden" / "runs"
    status, logs, _ = run_job(url, "rm train", [f"model.policy={tiny_model_dir}", f"run.output_dir={runs}",
                                                "run.name=blind", "data.max_pairs=16"], timeout_s=300)
    assert status == "FAILED"
    assert f"run folder {runs / 'blind'} is not on storage every node shares" in logs
    assert nodes["node_b"][:12] in logs and nodes["node_a"][:12] not in logs
    assert "RMLearnerActor" not in logs  # it failed before any actor started


@pytest.mark.long  # the last test of the module: it removes node a. ~2 min: a fourth node's start, a run of 3 iterations
def test_a_node_lost_mid_run_is_survived_on_the_nodes_left(cluster, tiny_model_dir, tiny_rm_dir):
    """Node a holds the RolloutActor (at the start the only node with a rollout_slot). After iteration 1 the run is
    held; node c (with a rollout_slot) joins and node a is killed, raylet, workers and all; the run is let go. The
    dead RolloutActor is restarted on its bundle, which Ray re-places on node c, takes the current policy through a
    rebuilt weight group, and the run ends with every iteration's samples."""
    url, root, nodes, procs, add_node = cluster
    runs, hanging, release = root / "shared" / "runs", root / "node_loss.hanging", root / "node_loss.release"
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        sid, _ = submit(url, "train", CONFIG, [
            f"model.policy={tiny_model_dir}", f"model.reward={tiny_rm_dir}", f"run.output_dir={runs}",
            "run.name=node_loss", "data.source=hh_rlhf", "data.max_pairs=32", "ppo.iterations=3",
            "ppo.prompts_per_iteration=4", "rollout.engine=hf", "rollout.num_actors=1", "rollout.max_model_len=160",
            "rollout.max_new_tokens=16", "rollout.n_samples=2", "rollout.resources.custom={rollout_slot: 1}",
            "reward.resources.num_cpus=0.5", "reward.resources.custom={node_head: 1}", "learner.world_size=2",
            "learner.zero_stage=2", "learner.micro_batch_size=4", "learner.resources.placement=STRICT_PACK",
            "learner.resources.custom={node_b: 1}", "sync.transport=collective",
        ], env={"RLHF_RAY_TEST_HANG_AFTER": "1", "RLHF_RAY_TEST_HANG_FILE": str(hanging),
                "RLHF_RAY_TEST_RELEASE_FILE": str(release)})
    finally:
        os.chdir(cwd)
    deadline = time.monotonic() + 600
    while not hanging.exists():
        status = client(url).get_job_status(sid)
        assert not status.is_terminal() and time.monotonic() < deadline, client(url).get_job_logs(sid)[-4000:]
        time.sleep(1)
    job_id = client(url).get_job_info(sid).job_id
    assert set(actor_nodes(url, "RolloutActor", job_id)) == {nodes["node_a"]}
    add_node("c", num_cpus=2, resources={"node_c": 4, "rollout_slot": 1})
    node_c = nodes_by_resource(url)["node_c"]
    stop(procs[1])  # node a
    release.touch()
    status = wait(url, sid, 600)
    logs = client(url).get_job_logs(sid)
    assert status == "SUCCEEDED", logs[-4000:]
    assert "rollout rank 0 died during generate" in logs and "rollout: rank 0 restarted" in logs
    assert sorted(actor_nodes(url, "RolloutActor", job_id)) == sorted([nodes["node_a"], node_c])  # and its replacement
    rows = read_metrics(runs / "node_loss" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3] and [r["fault/actor_restarts"] for r in rows] == [0, 1, 1]
    sampled = [json.loads(line) for line in (runs / "node_loss" / "samples.jsonl").open()]
    for step in (1, 2, 3):  # no sample lost or done twice: 4 prompts x 2 samples each
        prompts = [s["prompt_index"] for s in sampled if s["step"] == step]
        assert len(prompts) == 8 and all(prompts.count(p) == 2 for p in prompts), (step, prompts)

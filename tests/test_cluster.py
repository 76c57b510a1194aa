import os
import subprocess
import sys
from types import SimpleNamespace

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
    monkeypatch.setattr(ray, "get_runtime_context", lambda: SimpleNamespace(gcs_address="127.0.0.1:1"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    init_ray(ClusterConfig(num_cpus=1))
    assert seen["runtime_env"]["env_vars"].keys() == DEFAULTS.keys()
    assert seen["runtime_env"]["env_vars"]["HF_HUB_OFFLINE"] == "1"


def test_local_ray_never_joins_a_cluster_that_ray_start_left_behind(monkeypatch):
    """ray.init() without an address joins the last `ray start` cluster of this machine; a local run must not."""
    import ray

    seen = {}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: seen.update(kw))
    monkeypatch.setattr(ray, "cluster_resources", lambda: {})
    monkeypatch.setattr(ray, "get_runtime_context", lambda: SimpleNamespace(gcs_address="127.0.0.1:1"))
    init_ray(ClusterConfig(num_cpus=1))
    assert seen["address"] == "local" and seen["_node_ip_address"] == "127.0.0.1"


def test_inside_a_submitted_job_the_driver_adds_no_second_runtime_env(monkeypatch, tmp_path):
    """The job's runtime env already carries the environment; Ray refuses a driver that sets the same keys again."""
    import ray

    import launch.cluster

    seen = {}
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: seen.update(kw))
    monkeypatch.setattr(ray, "cluster_resources", lambda: {})
    monkeypatch.setattr(launch.cluster, "probe_address", lambda address: None)
    checked = []
    monkeypatch.setattr(launch.cluster, "check_shared_run_dir", checked.append)
    init_ray(ClusterConfig(address="auto"), tmp_path)
    assert seen["address"] == "auto" and seen["runtime_env"] is None
    assert checked == [tmp_path]  # a cluster run checks its run folder


def test_the_run_folder_check_passes_on_every_node_it_sees_and_cleans_up(ray_local, tmp_path):
    from launch.cluster import check_shared_run_dir

    nodes = check_shared_run_dir(tmp_path / "run")
    assert len(nodes) == len([n for n in ray_local.nodes() if n["Alive"]]) >= 1
    assert list((tmp_path / "run" / ".node_check").iterdir()) == []


def test_bundles_carry_custom_resources_and_groups_their_strategy():
    from actors.group import bundle_of
    from rlhf_ray.config import load_config

    cfg = load_config(None, ["learner.resources.custom={node_b: 1}", "learner.resources.placement=STRICT_PACK",
                             "learner.resources.num_gpus=1"])
    assert bundle_of(cfg.learner.resources) == {"CPU": 1.0, "GPU": 1.0, "node_b": 1.0}
    assert cfg.learner.resources.placement == "STRICT_PACK" and cfg.rollout.resources.placement == "PACK"
    with pytest.raises(Exception, match="placement"):
        load_config(None, ["learner.resources.placement=SIDEWAYS"])


def test_a_job_spec_runs_the_command_on_the_cluster_with_an_absolute_run_folder(tmp_path, monkeypatch):
    from launch.submit import EXCLUDES, PROJECT_ROOT, job_spec
    from rlhf_ray.environment import worker_env

    monkeypatch.chdir(tmp_path)
    spec = job_spec("rm strength", str(PROJECT_ROOT / "configs/tiny_rm.yaml"), ["rm.lr=1e-4", "run.output_dir=out"])
    assert spec["entrypoint"] == (f"python -m launch.cli rm strength --no-progress configs/tiny_rm.yaml rm.lr=1e-4 "
                                  f"run.output_dir={tmp_path / 'out'} cluster.address=auto")
    assert spec["run_dir"] == tmp_path / "out" / "tiny_rm"
    env = spec["runtime_env"]
    assert env["working_dir"] == str(PROJECT_ROOT) and ".venv" in env["excludes"] and env["excludes"] == EXCLUDES
    assert env["env_vars"] == {**worker_env(), "RLHF_RAY_CACHE": str(tmp_path / "out" / ".rlhf_ray_cache")}
    assert "--resume" in job_spec("train", str(PROJECT_ROOT / "configs/tiny_rm.yaml"), [], resume=True)["entrypoint"]


def test_a_job_spec_refuses_what_would_fail_on_the_cluster(tmp_path):
    from launch.submit import job_spec
    from rlhf_ray.config import ConfigError

    outside = tmp_path / "mine.yaml"
    outside.write_text("rm:\n  lr: 1.0e-5\n")
    with pytest.raises(ConfigError, match="mine.yaml.*inside the project folder"):
        job_spec("train", str(outside), [])
    with pytest.raises(ConfigError, match="rm.learning_rate"):
        job_spec("rm train", "configs/tiny_rm.yaml", ["rm.learning_rate=1"])
    with pytest.raises(ConfigError, match="--resume"):
        job_spec("rm train", "configs/tiny_rm.yaml", [], resume=True)
    with pytest.raises(ConfigError, match="not one of"):
        job_spec("rm eval", "configs/tiny_rm.yaml", [])


def test_jobs_without_a_cluster_fail_naming_the_address(capsys):
    from launch.cli import main

    assert main(["jobs", "list", "--address", "http://127.0.0.1:1"]) == 2
    assert "http://127.0.0.1:1" in capsys.readouterr().err


def test_an_explicit_jobs_address_wins_over_ray_address(monkeypatch):
    """Ray's Jobs client would take $RAY_ADDRESS over the address it is given; `client` must not."""
    from launch.submit import client

    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:9")
    with pytest.raises(ConnectionError) as err:
        client("http://127.0.0.1:7")
    assert "127.0.0.1:7" in str(err.value.__cause__) and "127.0.0.1:9" not in str(err.value)
    assert os.environ["RAY_ADDRESS"] == "http://127.0.0.1:9"  # put back


CONNECT = """
import sys, ray
ray.init(address=sys.argv[1], log_to_driver=False)
print("ran", ray.get(ray.remote(lambda: 1).remote(), timeout=60))
"""
JOIN = """
import sys, ray
from launch.cluster import init_ray
from rlhf_ray.config import ClusterConfig
init_ray(ClusterConfig(address=sys.argv[1]))
print("ran", ray.get(ray.remote(lambda: 1).remote(), timeout=60))
"""


def test_the_local_ray_listens_on_loopback_and_refuses_a_client_without_its_token(ray_local, tmp_path):
    """Every socket the session's local Ray (GCS, raylet, workers) listens on is loopback; a client that has no token
    or the wrong one is refused, and one with the same environment as this driver (~/.ray/auth_token) gets in."""
    from listeners import LOOPBACK, listening_ips, this_session

    procs = this_session()
    listening = listening_ips(procs)
    assert len(procs) >= 3 and listening and listening <= LOOPBACK, listening
    gcs = ray_local.get_runtime_context().gcs_address
    assert gcs.startswith("127.0.0.1:")
    (tmp_path / "home").mkdir()
    no_token = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")} | {"HOME": str(tmp_path / "home")}
    wrong = no_token | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 32}
    clients = {name: subprocess.Popen([sys.executable, "-c", code, gcs], env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
               for name, code, env in (("no token", CONNECT, no_token), ("wrong token", JOIN, wrong),
                                       ("token", CONNECT, dict(os.environ)))}
    out = {name: p.communicate(timeout=180)[0] for name, p in clients.items()}
    assert clients["no token"].returncode != 0 and "AuthenticationError" in out["no token"], out["no token"][-2000:]
    # A job joining through init_ray is told what to do about it.
    assert clients["wrong token"].returncode != 0 and "refused this job: no token or the wrong one" in out["wrong token"]
    assert "ran 1" not in out["no token"] + out["wrong token"]
    assert clients["token"].returncode == 0 and "ran 1" in out["token"], out["token"][-2000:]

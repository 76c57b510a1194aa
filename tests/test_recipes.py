"""The launch recipes as far as one machine allows: shell-checked, dry-run (Slurm through stand-in commands that
record what they were asked), and the RayJob's entrypoint loaded as the config it names."""

import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "launch" / "recipes"
SCRIPTS = [RECIPES / "ray_node.sh", RECIPES / "slurm.sbatch"]


def test_scripts_pass_shellcheck():
    shellcheck = Path(sys.executable).parent / "shellcheck"
    out = subprocess.run([str(shellcheck), "--severity=style", *map(str, SCRIPTS)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


def run(script: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run([str(script)], env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True)


def test_head_and_worker_dry_runs_bind_the_node_address_only():
    head = run(RECIPES / "ray_node.sh", DRY_RUN="1", NODE_IP="10.1.2.3", NUM_GPUS="8", RESOURCES='{"learner_node": 8}')
    assert head.returncode == 0, head.stderr
    assert head.stdout.split() == ["ray", "start", "--head", "--node-ip-address=10.1.2.3", "--port=6379",
                                   "--dashboard-host=10.1.2.3", "--dashboard-port=8265", "--disable-usage-stats",
                                   "--num-gpus=8", '--resources={"learner_node":', '8}']
    worker = run(RECIPES / "ray_node.sh", DRY_RUN="1", NODE_IP="10.1.2.4", HEAD="10.1.2.3:6379", BLOCK="1")
    assert worker.stdout.split() == ["ray", "start", "--address=10.1.2.3:6379", "--node-ip-address=10.1.2.4",
                                     "--disable-usage-stats", "--block"]
    missing = run(RECIPES / "ray_node.sh", DRY_RUN="1", HEAD="10.1.2.3:6379")
    assert missing.returncode != 0 and "NODE_IP" in missing.stderr


def stand_in(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_slurm_recipe_starts_a_head_and_a_worker_per_node_then_submits(tmp_path):
    """scontrol, srun and rlhf-ray stand-ins: srun runs its command with DRY_RUN=1 and logs it per node."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    stand_in(bin_dir, "scontrol", 'printf "gpu-01\\ngpu-02\\ngpu-03\\n"\n')
    stand_in(bin_dir, "srun", f"""while [ "$1" != "-w" ]; do shift; done; node=$2; shift 2
if [ "$1" = hostname ]; then echo "10.0.0.${{node: -1}} fe80::1"; exit 0; fi
echo "$node: $(DRY_RUN=1 "$@")" >> {log}
""")
    stand_in(bin_dir, "rlhf-ray", f'echo "submit: $*" >> {log}\n')
    out = subprocess.run(["bash", str(RECIPES / "slurm.sbatch"), "configs/cluster_7b_16gpu.yaml",
                          "run.output_dir=/shared/runs"], cwd=ROOT, capture_output=True, text=True,
                         env={"PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "gpu-[01-03]",
                              "SLURM_SUBMIT_DIR": str(ROOT), "RAY_HEAD_WAIT_S": "0", "RAY_WORKER_WAIT_S": "0"})
    assert out.returncode == 0, out.stderr
    # The nodes start in the background (the recipe waits RAY_*_WAIT_S between the steps): compare as a set.
    assert set(log.read_text().splitlines()) == {
        "gpu-01: ray start --head --node-ip-address=10.0.0.1 --port=6379 --dashboard-host=10.0.0.1 "
        "--dashboard-port=8265 --disable-usage-stats --block",
        *(f"gpu-0{i}: ray start --address=10.0.0.1:6379 --node-ip-address=10.0.0.{i} --disable-usage-stats --block"
          for i in (2, 3)),
        "submit: submit configs/cluster_7b_16gpu.yaml run.output_dir=/shared/runs --address http://10.0.0.1:8265 "
        "--follow",
    }


def test_rayjob_manifest_runs_a_config_that_loads():
    from rlhf_ray.config import load_config
    from rlhf_ray.environment import DEFAULTS

    job = yaml.safe_load((RECIPES / "kuberay_rayjob.yaml").read_text())
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:4] == ["python", "-m", "launch.cli", "train"]
    config, overrides = next(a for a in argv[4:] if a.endswith(".yaml")), [a for a in argv if "=" in a]
    cfg = load_config(ROOT / config, overrides)
    assert cfg.cluster.address == "auto" and cfg.run.output_dir == "/shared/runs"
    env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])["env_vars"]
    assert {k for k in DEFAULTS if k != "RAY_AUTH_MODE"} <= env.keys()  # a cluster keeps Ray's token auth on
    cluster = job["spec"]["rayClusterSpec"]
    pods = [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]
    for pod in pods:  # every node mounts the shared storage at the same path
        mounts = {m["mountPath"]: m["name"] for c in pod["spec"]["containers"] for m in c["volumeMounts"]}
        claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in pod["spec"]["volumes"]}
        assert claims[mounts["/shared"]] == "rlhf-ray-shared"
    gpus = sum(int(g["replicas"]) * int(g["rayStartParams"]["num-gpus"]) for g in cluster["workerGroupSpecs"])
    assert gpus == cfg.learner.world_size * cfg.learner.resources.num_gpus + cfg.rollout.num_actors * (
        cfg.rollout.resources.num_gpus + cfg.reward.resources.num_gpus)


@pytest.mark.parametrize("config", ["cluster_1b_8gpu.yaml", "cluster_7b_16gpu.yaml"])
def test_gpu_cluster_configs_ask_for_what_their_comment_says(config):
    from rlhf_ray.config import load_config

    cfg = load_config(ROOT / "configs" / config, [])
    gpus = (cfg.learner.world_size * cfg.learner.resources.num_gpus
            + cfg.rollout.num_actors * cfg.rollout.resources.num_gpus + cfg.reward.num_actors * cfg.reward.resources.num_gpus)
    assert gpus == int(config.split("_")[2].removesuffix("gpu.yaml"))
    assert cfg.learner.resources.placement == "STRICT_PACK" and cfg.sync.transport == "collective"

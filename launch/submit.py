"""`rlhf-ray submit` and `rlhf-ray jobs`: rlhf_ray commands as Ray Jobs on a cluster, through Ray's Job Submission SDK.

The job's runtime environment carries this project's code (working_dir: the checkout, without .venv, runs or .git),
the environment defaults of rlhf_ray.environment and an asset cache on the shared storage. Its entrypoint is the
`rlhf-ray` command a user runs locally, joined to the cluster (cluster.address=auto) and writing to an absolute
run.output_dir, which the command checks every node can see before it starts any actor (launch.cluster).
"""

import asyncio
import os
import shlex
import sys
import time
import uuid
from pathlib import Path

from rlhf_ray.config import ConfigError, load_config
from rlhf_ray.environment import worker_env

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The commands a job may run: each takes CONFIG [KEY=VALUE ...] and writes a run folder.
JOBS = ("train", "sft", "rm train", "rm strength", "gold build", "seam score", "seam grid")
EXCLUDES = [".venv", ".git", "runs", "**/__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache", ".cache"]
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def job_spec(job: str, config: str, overrides: list[str], *, resume: bool = False,
             root: Path = PROJECT_ROOT, env: dict[str, str] | None = None) -> dict:
    """The entrypoint and runtime environment of one job (env: more variables for the driver and every worker);
    the config is loaded here first, so a bad key fails on the submitting machine rather than minutes later on the
    cluster."""
    if job not in JOBS:
        raise ConfigError(f"--job {job!r} is not one of {', '.join(JOBS)}")
    if resume and job != "train":
        raise ConfigError("--resume applies to --job train only")
    path = Path(config).resolve()
    try:
        rel = path.relative_to(root)
    except ValueError:
        raise ConfigError(f"{config}: a submitted config must lie inside the project folder {root} (the job's "
                          "working directory is a copy of it); copy it into configs/") from None
    cfg = load_config(path, overrides)
    # The job runs in a copy of the project on the head node: a relative run folder would land (and vanish) there.
    output_dir = Path(cfg.run.output_dir).expanduser().resolve()
    kept = [o for o in overrides if o.split("=", 1)[0].strip() not in ("run.output_dir", "cluster.address")]
    args = [*job.split(), "--no-progress", *(["--resume"] if resume else []), str(rel), *kept,
            f"run.output_dir={output_dir}", "cluster.address=auto"]
    return {
        "entrypoint": shlex.join(["python", "-m", "launch.cli", *args]),
        # Model assets are built once by the driver into the shared storage beside the runs, where every node reads
        # them (GPU nodes often have no PyPI, and builds on several nodes would race).
        "runtime_env": {"working_dir": str(root), "excludes": EXCLUDES,
                        "env_vars": {**worker_env(), "RLHF_RAY_CACHE": str(output_dir / ".rlhf_ray_cache"),
                                     **(env or {})}},
        "metadata": {"rlhf_ray_job": job, "config": str(rel), "run_dir": str(output_dir / cfg.run.name)},
        "run_dir": output_dir / cfg.run.name,
        "name": cfg.run.name,
    }


def client(address: str | None):
    """A Job Submission client for the cluster's dashboard (http://HEAD:8265; None: $RAY_ADDRESS), with an error
    that names the address when nothing answers there."""
    from ray.job_submission import JobSubmissionClient

    # Ray's client prefers $RAY_API_SERVER_ADDRESS / $RAY_ADDRESS to the address it is given: a given one must win.
    hidden = {k: os.environ.pop(k) for k in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS") if address and k in os.environ}
    try:
        return JobSubmissionClient(address)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ConnectionError(f"no Ray Jobs API at --address {address or '$RAY_ADDRESS'} ({e}); give the head's dashboard "
                              "address, e.g. http://HEAD:8265, and check that the head runs with its dashboard") from e
    finally:
        os.environ.update(hidden)


def submit(address: str | None, job: str, config: str, overrides: list[str], *, resume: bool = False,
           submission_id: str | None = None, env: dict[str, str] | None = None) -> tuple[str, dict]:
    spec = job_spec(job, config, overrides, resume=resume, env=env)
    sid = submission_id or f"rlhf-ray-{spec['name']}-{uuid.uuid4().hex[:6]}"
    client(address).submit_job(entrypoint=spec["entrypoint"], runtime_env=spec["runtime_env"],
                               metadata=spec["metadata"], submission_id=sid)
    return sid, spec


def follow(address: str | None, sid: str, out=sys.stdout) -> str:
    """Stream the job's logs until it ends; returns its final status."""
    c = client(address)

    async def tail():
        async for lines in c.tail_job_logs(sid):
            out.write(lines)
            out.flush()

    asyncio.run(tail())
    return wait(address, sid, timeout_s=60)


def wait(address: str | None, sid: str, timeout_s: float, poll_s: float = 2.0) -> str:
    """The job's status once it is terminal (SUCCEEDED, FAILED, STOPPED); TimeoutError after timeout_s."""
    c = client(address)
    deadline = time.monotonic() + timeout_s
    while True:
        status = str(c.get_job_status(sid).value)
        if status in TERMINAL:
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {sid} still {status} after {timeout_s:.0f} s")
        time.sleep(poll_s)


def job_table(address: str | None) -> str:
    """One line per job: id, status, the rlhf_ray command, its run folder."""
    rows = sorted(client(address).list_jobs(), key=lambda j: j.start_time or 0)
    lines = [f"{'SUBMISSION ID':<36} {'STATUS':<10} {'JOB':<12} RUN FOLDER"]
    for j in rows:
        meta = j.metadata or {}
        lines.append(f"{j.submission_id or j.job_id:<36} {j.status.value:<10} {meta.get('rlhf_ray_job', '-'):<12} "
                     f"{meta.get('run_dir', j.entrypoint)}")
    return "\n".join(lines)

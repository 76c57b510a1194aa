"""Helpers of the tests that run `rlhf-ray train` as a subprocess, kill it and resume it."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from rlhf_ray.metrics import read_metrics


def train(config, name, *flags, env=None, wait=True):
    """`rlhf-ray train CONFIG run.name=NAME`; its output goes to NAME.log beside the config (a pipe nobody reads
    would fill and stall a run the test is waiting on). Waits for success unless wait=False."""
    cmd = [sys.executable, "-m", "launch.cli", "train", str(config), f"run.name={name}", "--no-progress", *flags]
    log = Path(config).parent / f"{name}.log"
    with open(log, "a") as out:
        proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, start_new_session=True, stdout=out,
                                stderr=subprocess.STDOUT, text=True)
    proc.log = log
    if wait:
        proc.wait(timeout=600)
        assert proc.returncode == 0, tail(proc)
    return proc


def tail(proc, chars: int = 3000) -> str:
    return proc.log.read_text()[-chars:]


def wait_for_row(path, step, proc, timeout_s=600):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, tail(proc)
        if path.exists() and any(r["step"] == step for r in read_metrics(path)):
            return
        time.sleep(0.2)
    raise TimeoutError(f"no metrics row {step} in {path}")


def numeric(row):
    return {k: v for k, v in row.items() if not k.startswith(("time", "perf"))}


def samples(run_dir):
    return [(s["step"], s["prompt_index"], s["response"]) for s in map(json.loads, (run_dir / "samples.jsonl").open())]


def write_fault_config(tmp_path, tiny_model_dir):
    """A 3-iteration run of every distributed role (2 RolloutActors, a reward function, 2 learner ranks, ZeRO 2)."""
    cfg = {
        "run": {"output_dir": str(tmp_path / "runs"), "checkpoint_every": 1},
        "data": {"max_pairs": 64},
        "model": {"policy": str(tiny_model_dir)},
        "cluster": {"num_cpus": 6},
        "rollout": {"num_actors": 2, "max_model_len": 160, "max_new_tokens": 16, "n_samples": 4, "kv_cache_gib": 0.5,
                    "temperature": 1.0, "top_p": 1.0},
        "reward": {"function": "rlhf_ray.rewards:target_token_fraction", "function_kwargs": {"target_ids": list(range(256))}},
        "learner": {"world_size": 2, "zero_stage": 2, "micro_batch_size": 8, "actor_lr": 1e-2},
        "ppo": {"iterations": 3, "prompts_per_iteration": 4, "advantage_estimator": "rloo"},
        "sync": {"transport": "collective"},  # a restarted RolloutActor must re-join the broadcast group
    }
    path = tmp_path / "fault.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path

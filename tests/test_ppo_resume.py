"""Resume: 4 PPO iterations straight equal 2 + SIGKILL during iteration 4 + resume, in data order and metrics."""

import os
import signal

import pytest
import yaml
from subprocess_runs import numeric, samples, tail, train, wait_for_row

from rlhf_ray.metrics import read_metrics

pytest.importorskip("vllm")

TOL = 1e-6  # measured: the resumed run is bit-identical (seeded vLLM sampling, ZeRO-2 AdamW states restored)


def write_config(tmp_path, tiny_model_dir, one_step_off_policy=False):
    cfg = {
        "run": {"output_dir": str(tmp_path / "runs"), "checkpoint_every": 2, "keep_checkpoints": 3},
        "data": {"max_pairs": 64},
        "model": {"policy": str(tiny_model_dir)},
        "cluster": {"num_cpus": 6},
        "rollout": {"num_actors": 1, "max_model_len": 160, "max_new_tokens": 16, "n_samples": 4, "kv_cache_gib": 0.5,
                    "temperature": 1.0, "top_p": 1.0, "one_step_off_policy": one_step_off_policy},
        "reward": {"function": "rlhf_ray.rewards:target_token_fraction", "function_kwargs": {"target_ids": list(range(256))}},
        # A large lr so that a lost AdamW state or a wrong data cursor shows in the metrics.
        "learner": {"world_size": 2, "zero_stage": 2, "micro_batch_size": 8, "actor_lr": 1e-2, "critic_lr": 2e-3},
        "ppo": {"iterations": 4, "prompts_per_iteration": 8, "kl_coef": 0.05},
        "sync": {"transport": "object_store"},
    }
    path = tmp_path / "resume.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.long  # the online-rounds resume test (test_online.py) kills and resumes the same way, inside a round
@pytest.mark.parametrize("one_step_off_policy", [False, True], ids=["on_policy", "one_step_off_policy"])
def test_resume_after_kill_matches_the_straight_run(tiny_model_dir, tmp_path, one_step_off_policy):
    """One-step off-policy: iteration 3's responses, generated during iteration 2 by a policy the resumed run no longer
    has, come back from the checkpoint."""
    config = write_config(tmp_path, tiny_model_dir, one_step_off_policy)
    train(config, "straight")

    # Checkpoints land after iterations 2 and 4: hang after iteration 3's rows, then SIGKILL the whole job.
    proc = train(config, "killed", env={"RLHF_RAY_TEST_HANG_AFTER": "3"}, wait=False)
    killed = tmp_path / "runs" / "killed"
    wait_for_row(killed / "metrics.jsonl", 3, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert sorted(p.name for p in (killed / "checkpoints").iterdir()) == ["iter_000002"]
    train(config, "killed", "--resume")

    straight = read_metrics(tmp_path / "runs" / "straight" / "metrics.jsonl")
    resumed = read_metrics(killed / "metrics.jsonl")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]  # iteration 3's orphan row was dropped and redone
    for a, b in zip(straight, resumed):
        a, b = numeric(a), numeric(b)
        assert a.keys() == b.keys()
        for key in a:
            assert abs(a[key] - b[key]) <= TOL * max(1.0, abs(a[key])), (a["step"], key, a[key], b[key])
    assert samples(tmp_path / "runs" / "straight") == samples(killed)  # same prompts, same order, same responses
    assert sorted(p.name for p in (killed / "checkpoints").iterdir()) == ["iter_000002", "iter_000004"]


def test_a_second_run_into_a_checkpointed_folder_needs_resume(tiny_model_dir, tmp_path):
    config = write_config(tmp_path, tiny_model_dir)
    ckpt = tmp_path / "runs" / "taken" / "checkpoints" / "iter_000002"
    ckpt.mkdir(parents=True)
    (ckpt / "driver_state.pt").write_bytes(b"")
    proc = train(config, "taken", wait=False)
    proc.wait(timeout=300)
    out = tail(proc)
    assert proc.returncode == 2
    assert "already holds checkpoint iter_000002: pass --resume" in out

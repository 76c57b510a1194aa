"""Actors that die mid-iteration are restarted and their share redone: the run ends as if nothing had happened."""

import pytest
import yaml
from subprocess_runs import numeric, samples, train

from rlhf_ray.metrics import read_metrics

pytest.importorskip("vllm")


def write_config(tmp_path, tiny_model_dir):
    cfg = {
        "run": {"output_dir": str(tmp_path / "runs"), "checkpoint_every": 100},
        "data": {"max_pairs": 64},
        "model": {"policy": str(tiny_model_dir)},
        "cluster": {"num_cpus": 6},
        "rollout": {"num_actors": 2, "max_model_len": 160, "max_new_tokens": 16, "n_samples": 4, "kv_cache_gib": 0.5,
                    "temperature": 1.0, "top_p": 1.0},
        "reward": {"function": "rlhf_ray.rewards:target_token_fraction", "function_kwargs": {"target_ids": list(range(256))}},
        "learner": {"world_size": 1, "micro_batch_size": 8, "actor_lr": 1e-2},
        "ppo": {"iterations": 2, "prompts_per_iteration": 4, "advantage_estimator": "rloo"},
        "sync": {"transport": "collective"},  # a restarted RolloutActor must re-join the broadcast group
    }
    path = tmp_path / "fault.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_rollout_and_a_reward_actor_that_die_are_replaced_and_the_run_is_unchanged(tiny_model_dir, tmp_path):
    """RolloutActor rank 1 dies in iteration 2's generate, RewardActor rank 0 in the same iteration's scoring (os._exit,
    as after an OOM kill). Each is restarted on its bundle, the rollout one gets the current policy by a rebuilt
    broadcast group, and its prompts are generated again with the same seed: every metric and every sample equals
    the straight run's, with two restarts counted."""
    config = write_config(tmp_path, tiny_model_dir)
    train(config, "straight")
    (tmp_path / "die").mkdir()
    train(config, "killed", env={"RLHF_RAY_TEST_DIE_AT": "rollout:1:2,reward:0:2",
                                 "RLHF_RAY_TEST_DIE_DIR": str(tmp_path / "die")})
    assert sorted(p.name for p in (tmp_path / "die").iterdir()) == ["reward_0_2", "rollout_1_2"]  # both died
    log = (tmp_path / "runs" / "killed" / "log.txt").read_text()
    assert "rollout rank 1 died during generate" in log and "reward rank 0 died during score" in log
    straight = read_metrics(tmp_path / "runs" / "straight" / "metrics.jsonl")
    killed = read_metrics(tmp_path / "runs" / "killed" / "metrics.jsonl")
    assert [r["fault/actor_restarts"] for r in killed] == [0, 2]
    for a, b in zip(straight, killed, strict=True):
        a, b = numeric(a), numeric(b)
        for key in a.keys() - {"fault/actor_restarts"}:
            assert a[key] == b[key], (a["step"], key, a[key], b[key])
    # No sample lost or done twice: the same prompts, 4 samples each, the same responses.
    assert samples(tmp_path / "runs" / "straight") == samples(tmp_path / "runs" / "killed")
    rows = samples(tmp_path / "runs" / "killed")
    assert len(rows) == 2 * 4 * 4


@pytest.mark.long  # the budget's arithmetic and message are tested on a small group in test_actor_group.py
def test_a_run_out_of_restarts_stops_naming_the_actor(tiny_model_dir, tmp_path):
    config = write_config(tmp_path, tiny_model_dir)
    (tmp_path / "die").mkdir()
    proc = train(config, "stopped", "fault.max_actor_restarts=0", "ppo.iterations=1", wait=False,
                 env={"RLHF_RAY_TEST_DIE_AT": "reward:0:1", "RLHF_RAY_TEST_DIE_DIR": str(tmp_path / "die")})
    proc.wait(timeout=600)
    log = (tmp_path / "runs" / "stopped" / "log.txt").read_text() + (tmp_path / "stopped.log").read_text()
    assert proc.returncode != 0
    assert "reward rank 0 died during score" in log and "all 0 actor restarts (fault.max_actor_restarts)" in log

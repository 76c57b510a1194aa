"""Actors that die mid-iteration: rollout and reward actors are restarted and their share redone, a lost learner rank
stops the run or (fault.auto_resume) the run resumes itself from its last checkpoint; either way the run ends as if
nothing had happened."""

import pytest
from subprocess_runs import numeric, samples, train

from rlhf_ray.metrics import read_metrics

pytest.importorskip("vllm")


def assert_same_run(runs, name):
    straight = read_metrics(runs / "straight" / "metrics.jsonl")
    other = read_metrics(runs / name / "metrics.jsonl")
    assert [r["step"] for r in other] == [1, 2, 3]
    for a, b in zip(straight, other, strict=True):
        a, b = numeric(a), numeric(b)
        for key in a.keys() - {"fault/actor_restarts"}:
            assert a[key] == b[key], (a["step"], key, a[key], b[key])
    # No sample lost or done twice: the same prompts, 4 samples each, the same responses.
    assert samples(runs / "straight") == samples(runs / name)
    assert len(samples(runs / name)) == 3 * 4 * 4
    return other


def test_actors_of_every_role_die_and_the_run_ends_as_the_straight_one(straight_run, tmp_path):
    """RolloutActor rank 1 dies in iteration 2's generate, RewardActor rank 0 in the same iteration's scoring
    (os._exit, as after an OOM kill): each is restarted on its bundle, the rollout one gets the current policy by a
    rebuilt broadcast group, and its prompts are generated again with the same seed. Then learner rank 1 (of a ZeRO-2
    group of 2) dies as iteration 3's update begins, rank 0 waiting for it in the first step's gradient collective:
    with fault.auto_resume=1 the driver frees every actor (the waiting rank too) and resumes from the iteration-2
    checkpoint on fresh actors. Every metric and every sample equals the straight run's."""
    config, runs = straight_run
    (tmp_path / "die").mkdir()
    proc = train(config, "killed", "fault.auto_resume=1",
                 env={"RLHF_RAY_TEST_DIE_AT": "rollout:1:2,reward:0:2,learner:1:3",
                      "RLHF_RAY_TEST_DIE_DIR": str(tmp_path / "die")})
    assert sorted(p.name for p in (tmp_path / "die").iterdir()) == ["learner_1_3", "reward_0_2", "rollout_1_2"]
    log = (runs / "killed" / "log.txt").read_text()
    assert "rollout rank 1 died during generate" in log and "reward rank 0 died during score" in log
    out = proc.log.read_text()
    assert "learner rank 1 died" in out
    assert f"fault.auto_resume: resuming from its last complete checkpoint, {runs / 'killed' / 'checkpoints'}" in out
    assert "iter_000002 on fresh actors (0 automatic resumes left)" in out
    # Restarts are counted per process: iteration 3 ran again in the resumed one.
    assert [r["fault/actor_restarts"] for r in assert_same_run(runs, "killed")] == [0, 2, 0]


@pytest.mark.long  # the default test above takes the same path, then resumes in-process
def test_a_learner_rank_that_dies_stops_the_run_and_resume_continues_it(straight_run, tmp_path):
    config, runs = straight_run
    (tmp_path / "die").mkdir()
    proc = train(config, "stopped_learner", wait=False,
                 env={"RLHF_RAY_TEST_DIE_AT": "learner:1:2", "RLHF_RAY_TEST_DIE_DIR": str(tmp_path / "die")})
    proc.wait(timeout=600)  # not hung: rank 0, waiting in a collective for the dead rank, is freed
    out = proc.log.read_text()
    assert proc.returncode == 2, out[-3000:]
    assert "rlhf-ray: error: learner rank 1 died" in out
    assert "Run the same command with --resume to continue from its last complete checkpoint" in out
    assert "iter_000001 (fault.auto_resume=N does that by itself)" in out
    train(config, "stopped_learner", "--resume")
    assert_same_run(runs, "stopped_learner")


@pytest.mark.long  # the budget's arithmetic and message are tested on a small group in test_actor_group.py
def test_a_run_out_of_restarts_stops_naming_the_actor(straight_run, tmp_path):
    config, runs = straight_run
    (tmp_path / "die").mkdir()
    proc = train(config, "stopped", "fault.max_actor_restarts=0", "ppo.iterations=1", wait=False,
                 env={"RLHF_RAY_TEST_DIE_AT": "reward:0:1", "RLHF_RAY_TEST_DIE_DIR": str(tmp_path / "die")})
    proc.wait(timeout=600)
    log = (runs / "stopped" / "log.txt").read_text() + proc.log.read_text()
    assert proc.returncode != 0
    assert "reward rank 0 died during score" in log and "all 0 actor restarts (fault.max_actor_restarts)" in log

"""Online rounds end to end (tiny models, `rlhf-ray train` as a subprocess; the run is conftest's online_run): 2
rounds of 2 PPO iterations, a MetaRM update on a ZeRO-2 RM learner group of 2 at the start of round 2, the RM pushed
to the RewardActor and the critic, the round diagnostics in the rows. Kills and resumes of this run:
test_kill_anywhere.py."""


import pytest
from subprocess_runs import numeric, train

from rlhf_ray.metrics import read_metrics
from rlhf_ray.run_dir import load_state

pytest.importorskip("vllm")

TOL = 1e-6  # the resumed run is bit-identical (seeded sampling, RM learner and AdamW states restored)


def test_two_rounds_update_push_and_report_the_rm(online_run):
    _, runs = online_run
    rows = read_metrics(runs / "straight" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all("reward/gold_mean" in r for r in rows)
    first, second = rows[0], rows[2]
    assert first["round/index"] == 1 and second["round/index"] == 2
    assert not any("round/index" in r for r in (rows[1], rows[3]))
    for key in ("round/gap_mean", "round/gap_q50", "round/proxy_reward", "round/gold_reward",
                "round/proxy_gold_agreement", "round/gap_mean_before_update"):
        assert key in first and key in second, key
    # Round 1 runs on the initial RM (= the stand-in gold): the proxy orders every decided pair as gold does.
    assert first["round/proxy_gold_agreement"] == 1.0
    assert "round/rm_steps" not in first
    # Round 2: two MetaRM steps, then the RewardActor scores exactly as the RM learner does.
    assert second["round/rm_steps"] == 2 and second["round/rm_metarm_J"] > 0
    assert 0 <= second["round/proxy_eval_accuracy"] <= 1
    assert second["round/push_max_abs_diff"] <= 1e-5
    # The pushed RM is not the initial one: the same meta samples score differently after the update.
    assert second["round/gap_mean"] != second["round/gap_mean_before_update"]
    assert second["round/proxy_reward"] != second["round/gold_reward"]
    ckpt = runs / "straight" / "checkpoints" / "iter_000004"
    assert (ckpt / "online_state.pt").exists() and (ckpt / "rm_learner").is_dir()


@pytest.mark.long  # a third run of ~1.5 min; the default run covers the round machinery with metarm
def test_labeled_rounds_add_oracle_pairs_to_a_reinitialised_rm(online_run):
    """online.rm_update=labeled with rm_init=sft: the oracle orders two responses per meta prompt, the pairs join a
    fresh RM's data, and the RM that trained on them is the one the RewardActor scores with."""
    config, runs = online_run
    train(config, "labeled", "online.rm_update=labeled", "online.rm_init=sft", "online.critic_init=keep",
          "ppo.iterations=1")
    rows = read_metrics(runs / "labeled" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    second = rows[1]
    assert second["round/labeled_pairs"] + second["round/labeled_ties"] == second["round/meta_prompts"]
    assert second["round/labeled_pairs"] > 0 and "round/rm_metarm_J" not in second
    assert second["round/push_max_abs_diff"] <= 1e-5
    state = load_state(runs / "labeled" / "checkpoints" / "iter_000002" / "online_state.pt")
    assert len(state["labeled"]) == second["round/labeled_pairs"] and state["rm_updates"] == 1


@pytest.mark.long  # two more runs of ~1.5 min; the default runs are released (CPU) and resume through the parked state
def test_a_released_rm_learner_continues_as_a_resident_one(online_run):
    """online.rm_learner released stops the RM learner after each update and rebuilds it from its parked state; over
    three rounds (two updates, the second from the parked state) every row equals the resident learner's run."""
    config, runs = online_run
    shape = ("online.rounds=3", "ppo.iterations=1", "run.checkpoint_every=0")
    train(config, "resident", *shape, "online.rm_learner=resident")
    train(config, "released", *shape, "online.rm_learner=released")
    resident = read_metrics(runs / "resident" / "metrics.jsonl")
    released = read_metrics(runs / "released" / "metrics.jsonl")
    assert [r["step"] for r in released] == [1, 2, 3]
    assert "time/rm_park_s" in released[2] and "time/rm_park_s" not in resident[2]
    for a, b in zip(resident, released):
        a, b = numeric(a), numeric(b)
        assert a.keys() == b.keys()
        for key in a:
            assert abs(a[key] - b[key]) <= TOL * max(1.0, abs(a[key])), (a["step"], key, a[key], b[key])
    assert released[2]["round/rm_steps"] == 2 and released[2]["round/gap_mean"] != released[1]["round/gap_mean"]
    assert not (runs / "released" / "online").exists()  # the parked state goes with the run's end

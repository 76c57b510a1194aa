"""Online rounds end to end (tiny models, `rlhf-ray train` as a subprocess): 2 rounds of 2 PPO iterations, a MetaRM
update on a ZeRO-2 RM learner group of 2 at the start of round 2, the RM pushed to the RewardActor and the critic,
the round diagnostics in the rows; then a SIGKILL inside round 2 and a resume that reproduces the straight run."""

import os
import signal
import time

import pytest
import yaml
from subprocess_runs import numeric, samples, tail, train, wait_for_row

from rlhf_ray.metrics import read_metrics
from rlhf_ray.run_dir import load_state

pytest.importorskip("vllm")

TOL = 1e-6  # the resumed run is bit-identical (seeded sampling, RM learner and AdamW states restored)


@pytest.fixture(scope="module")
def online_config(tiny_model_dir, tiny_rm_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("online")
    cfg = {
        "run": {"output_dir": str(tmp / "runs"), "checkpoint_every": 1, "keep_checkpoints": 5},
        "data": {"max_pairs": 64, "max_eval_pairs": 16},
        # fp32: the push check compares the RewardActor's scores with the RM learner's own, batched differently.
        "model": {"policy": str(tiny_model_dir), "reward": str(tiny_rm_dir), "mixed_precision": "none"},
        "cluster": {"num_cpus": 8},
        "rollout": {"num_actors": 1, "max_model_len": 160, "max_new_tokens": 16, "n_samples": 4, "kv_cache_gib": 0.5,
                    "temperature": 1.0, "top_p": 1.0},
        "reward": {"resources": {"num_cpus": 0.5}},
        "learner": {"world_size": 2, "zero_stage": 2, "micro_batch_size": 8, "actor_lr": 1e-2, "critic_lr": 2e-3},
        # Large steps, so that a lost RM or ascent state, or a missed push, shows in the metrics.
        "rm": {"lr": 1e-3, "batch_size": 8, "micro_batch_size": 4, "warmup_steps": 0},
        "metarm": {"k": 3, "meta_batch_prompts": 4, "meta_lr": 1e-3},
        "online": {"rounds": 2, "rm_steps": 2, "gold": str(tiny_rm_dir)},  # the initial RM stands in for a gold RM
        "ppo": {"iterations": 2, "prompts_per_iteration": 8, "kl_coef": 0.05},
    }
    path = tmp / "online.yaml"
    path.write_text(yaml.safe_dump(cfg))
    # The default kill case's run starts beside the straight one: on 2 cores their actors' start-ups overlap.
    started = {"4": start_hanging(path, tmp / "runs", "4")}
    try:
        train(path, "straight")
        yield path, tmp / "runs", started
    finally:  # a hanging run no test took (deselected, or the straight run failed) would wait forever
        for _, _, proc in started.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=60)


def start_hanging(config, runs, hang: str):
    """A run that hangs (until killed) at `hang`: after an iteration's rows, or inside an RM update."""
    name = f"killed_{hang.replace(':', '_')}"
    marker = runs.parent / f"{name}.hanging"
    proc = train(config, name, env={"RLHF_RAY_TEST_HANG_AFTER": hang, "RLHF_RAY_TEST_HANG_FILE": str(marker)},
                 wait=False)
    return name, marker, proc


def test_two_rounds_update_push_and_report_the_rm(online_config):
    _, runs, _ = online_config
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


@pytest.mark.parametrize("hang", ["4", pytest.param("rm_update:2", marks=pytest.mark.long)])
def test_a_kill_inside_round_2_resumes_to_the_straight_run(online_config, hang):
    """4: after iteration 4's rows, before its checkpoint (resume from iteration 3: the updated RM learner, its
    AdamW and ascent states and the pushed RM restored); rm_update:2: inside round 2's RM update (redone from 2)."""
    config, runs, started = online_config
    name, marker, proc = started.pop(hang, None) or start_hanging(config, runs, hang)
    if hang == "4":
        wait_for_row(runs / name / "metrics.jsonl", 4, proc)
    deadline = time.monotonic() + 600
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, tail(proc)
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    last = "iter_000003" if hang == "4" else "iter_000002"
    assert sorted(p.name for p in (runs / name / "checkpoints").iterdir())[-1] == last
    train(config, name, "--resume")

    straight = read_metrics(runs / "straight" / "metrics.jsonl")
    resumed = read_metrics(runs / name / "metrics.jsonl")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    for a, b in zip(straight, resumed):
        a, b = numeric(a), numeric(b)
        assert a.keys() == b.keys()
        for key in a:
            assert abs(a[key] - b[key]) <= TOL * max(1.0, abs(a[key])), (a["step"], key, a[key], b[key])
    assert samples(runs / "straight") == samples(runs / name)


@pytest.mark.long  # a third run of ~1.5 min; the default run covers the round machinery with metarm
def test_labeled_rounds_add_oracle_pairs_to_a_reinitialised_rm(online_config):
    """online.rm_update=labeled with rm_init=sft: the oracle orders two responses per meta prompt, the pairs join a
    fresh RM's data, and the RM that trained on them is the one the RewardActor scores with."""
    config, runs, _ = online_config
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
def test_a_released_rm_learner_continues_as_a_resident_one(online_config):
    """online.rm_learner released stops the RM learner after each update and rebuilds it from its parked state; over
    three rounds (two updates, the second from the parked state) every row equals the resident learner's run."""
    config, runs, _ = online_config
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

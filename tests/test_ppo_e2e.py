"""The whole PPO pipeline on a tiny model: 2 vLLM RolloutActors, RewardActors, a ZeRO-2 learner group of 2."""

import json

import pytest

from launch.driver import run_ppo
from rlhf_ray.metrics import read_metrics
from rlhf_ray.run_dir import load_state, prepare_run_dir

pytest.importorskip("vllm")

FIELDS = ["reward/mean", "reward/std", "kl/mean", "kl/coef", "response/length", "ppo/entropy", "ppo/clip_frac",
          "ppo/value_loss", "ppo/policy_loss", "time/rollout_s", "time/score_s", "time/experience_s", "time/learn_s",
          "time/sync_s", "perf/rollout_tokens_per_s", "perf/learn_tokens_per_s"]


def test_ppo_raises_a_programmatic_reward_with_one_step_off_policy_rollouts(ray_local, ppo_config):
    """Each iteration's responses are generated while the learner trains on the previous ones (one update stale), and
    PPO still learns; the checkpoint carries the responses generated ahead, which a resume needs."""
    targets = list(range(256))  # half the vocabulary: a random policy starts near 0.5
    cfg = ppo_config("learn", "reward.function=rlhf_ray.rewards:target_token_fraction",
                 f"reward.function_kwargs={{target_ids: {targets}}}", "ppo.iterations=8", "learner.actor_lr=1e-2",
                 "learner.critic_lr=2e-3", "ppo.kl_coef=0.0", "ppo.reward_norm=none", "rollout.temperature=1.0",
                 "rollout.top_p=1.0", "rollout.repetition_penalty=1.0", "learner.ppo_epochs=4",
                 "rollout.one_step_off_policy=true", "run.checkpoint_every=4")
    run_dir = prepare_run_dir(cfg)
    history = run_ppo(cfg, run_dir, show_progress=False)
    rewards = [h["reward/mean"] for h in history]
    start, end = sum(rewards[:2]) / 2, sum(rewards[-2:]) / 2
    assert end > start + 0.1, rewards
    # Iterations 1-7 generate the next one during their learn phase; the last has none to generate.
    assert all("time/rollout_wait_s" in h for h in history[:-1]) and "time/rollout_wait_s" not in history[-1]
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").open()]
    assert [s["step"] for s in samples] == [it for it in range(1, 9) for _ in range(32)]  # none lost or repeated
    state = load_state(run_dir / "checkpoints" / "iter_000004" / "driver_state.pt")
    prompts, rollouts = state["ahead"]
    fifth = [s for s in samples if s["step"] == 5]
    assert [prompts[i] for i in rollouts["prompt_index"]] == [s["prompt_index"] for s in fifth]
    assert rollouts["texts"] == [s["response"] for s in fifth]


def test_without_a_reward_the_run_trains_one_then_resume_reuses_it(ray_local, ppo_config, caplog):
    """A run without model.reward trains its RM first; every iteration logs every field; a resume reuses the RM."""
    caplog.set_level("INFO", logger="rlhf_ray")
    rm = ["rm.max_steps=2", "rm.batch_size=4", "rm.micro_batch_size=2", "rm.warmup_steps=0", "data.max_eval_pairs=8",
          "run.checkpoint_every=1"]
    # Collective weight sync, rollout i and reward i on one bundle: the pipeline's GPU-cluster shape.
    shape = ["sync.transport=collective", "cluster.colocate=true"]
    cfg = ppo_config("auto_rm", "ppo.iterations=1", *rm, *shape)
    run_dir = prepare_run_dir(cfg)
    run_ppo(cfg, run_dir, show_progress=False)
    assert (run_dir / "rm" / "reward_model" / "config.json").exists()
    assert (run_dir / "rm" / "metrics.jsonl").exists() and (run_dir / "checkpoints" / "iter_000001").is_dir()
    # The RM phase is never silent: its evals and steps report progress (log lines when no terminal is attached).
    assert "rm eval at step 0: 8/8 pairs" in caplog.text and "rm train: 2/2 steps (100%)" in caplog.text
    assert "model.mixed_precision=auto -> " in caplog.text  # the precision and its reason, logged at start

    cfg = ppo_config("auto_rm", "ppo.iterations=2", *rm, *shape)
    history = run_ppo(cfg, prepare_run_dir(cfg), show_progress=False, resume=True)
    assert len(history) == 1  # iteration 2 only
    assert "reusing the reward model" in caplog.text
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:  # the trained RM scored both iterations, before and after the resume
        missing = [f for f in FIELDS if f not in row]
        assert not missing, f"iteration {row['step']} lacks {missing}"
    # The run folder gets its reward/KL plot (and, with enough prompts per quarter, the rise test).
    assert (run_dir / "reward_kl.png").read_bytes()[:4] == b"\x89PNG"

"""A PPO run with a critic-free estimator (GRPO) on the tiny model: the learner holds no value model, so no value loss
is logged and no critic is checkpointed; the buffer's advantages are normalised within each prompt; the learners load
that checkpoint back. The run takes its old log-probs from the rollout engine (ppo.old_logprobs=rollout), which
equal the learner's own forward. Its prompts come from a prompt-only file (data.prompt_paths), some as chat
messages: a programmatic reward needs no gold answer."""

import json

import pytest
import torch

from launch.trainer import PPOTrainer
from rlhf_ray.ppo.batch import action_values
from rlhf_ray.run_dir import prepare_run_dir

pytest.importorskip("vllm")


# One HF-engine RolloutActor and one learner rank: the estimator is under test, the pipeline in test_ppo_e2e.py.
GRPO = ["ppo.advantage_estimator=grpo", "run.checkpoint_every=1", "reward.function=rlhf_ray.rewards:target_token_fraction",
        f"reward.function_kwargs={{target_ids: {list(range(256))}}}", "rollout.num_actors=1", "rollout.engine=hf",
        "learner.world_size=1", "learner.zero_stage=0", "ppo.prompts_per_iteration=4"]


def test_grpo_runs_without_a_critic(ray_local, ppo_config, tmp_path):
    prompts = [{"prompt": f"Count to {i}."} for i in range(4)] + [
        {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"Name {i} colours."}]}
        for i in range(2, 6)]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts))
    # fp32 learner: its forward is compared with the fp32 engine's log-probs (bf16 autocast moves them by ~3e-3).
    cfg = ppo_config("grpo", "ppo.iterations=1", "ppo.old_logprobs=rollout", "model.mixed_precision=none", *GRPO,
                     f"data.prompt_paths=[{tmp_path / 'prompts.jsonl'}]")
    run_dir = prepare_run_dir(cfg)
    trainer = PPOTrainer(cfg, run_dir, show_progress=False)
    try:
        trainer.start()
        assert trainer.old_logprobs == "rollout"  # both in fp32: the engine's log-probs serve
        rows = trainer.prompt_rows  # the file's prompts, in its order
        assert list(rows["format"]) == ["plain"] * 4 + ["messages"] * 4 and len(trainer.prompts) == 8
        assert list(rows["gold"]) == [None] * 8 and rows["prompt"][0] == "Count to 0."
        # The engine's log-probs of its samples are the learner's: the forward that ppo.old_logprobs=rollout skips.
        rollouts = trainer.generate([0, 1, 2, 3], 0)
        batch = trainer.sequences(rollouts, [0, 1, 2, 3])
        (exp,) = trainer.learner.run("experience", {k: batch[k] for k in ("input_ids", "attention_mask", "action_mask")})
        sampled = action_values(rollouts.response_logprobs, batch["action_mask"])
        assert (exp["old_logprobs"] - sampled).abs().max() < 1e-4
        row = trainer.step(1)
        data = trainer.state.buffer.data
        trainer.state.iteration = 1
        ckpt = trainer.checkpoint()
        assert trainer.learner.run("load_checkpoint", str(ckpt)) == [1]  # the policy's state alone, one update
    finally:
        trainer.close()
    assert "old_values" not in data and not any(k.startswith("ppo/value") for k in row), sorted(row)
    assert data["old_logprobs"][data["action_mask"].bool()].lt(0).all()  # the engine's, on every response token
    assert row["ppo/ppo_steps"] > 0 and "ppo/policy_loss" in row
    assert not (run_dir / "critic_init").exists()
    # GRPO: every response token of a row carries its row's advantage; within a prompt they average to 0.
    adv, act = data["advantages"], data["action_mask"].bool()
    row_adv = torch.stack([a[m][0] for a, m in zip(adv, act)])
    assert all(torch.allclose(a[m], a[m][0].expand(int(m.sum()))) for a, m in zip(adv, act))
    for p in data["prompt_index"].unique():
        assert abs(float(row_adv[data["prompt_index"] == p].mean())) < 1e-5
    assert ckpt == run_dir / "checkpoints" / "iter_000001"
    assert (ckpt / "policy" / "config.json").is_file() and not (ckpt / "critic").exists()
    assert sorted(p.name for p in (ckpt / "deepspeed").iterdir()) == ["policy"]
